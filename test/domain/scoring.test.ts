import { describe, expect, it } from "vitest";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import { scoreWorker } from "../../src/domain/scoring.js";

describe("scoreWorker", () => {
  // The usage guide's worked example.
  const workerA = { maxConcurrentTasks: 10, currentTasks: 2, tasksCompleted: 45, tasksFailed: 5, totalTaskDurationMs: 50 * 5000 };
  const workerB = { maxConcurrentTasks: 5, currentTasks: 1, tasksCompleted: 10, tasksFailed: 0, totalTaskDurationMs: 10 * 3000 };

  it("reproduces the guide's example: A scores 0.71, B 0.77", () => {
    const a = scoreWorker(workerA, DEFAULT_SCORING);
    const b = scoreWorker(workerB, DEFAULT_SCORING);
    expect(a).toMatchObject({ capacityScore: 0.8, successScore: 0.9, speedScore: 0.2 });
    expect(a.priority).toBeCloseTo(0.71, 10);
    expect(b.capacityScore).toBe(0.8);
    expect(b.successScore).toBe(1);
    expect(b.speedScore).toBeCloseTo(1 / 3, 10);
    expect(b.priority.toFixed(2)).toBe("0.77");
    expect(b.priority).toBeGreaterThan(a.priority);
  });

  it("gives a worker with no completions the neutral priors", () => {
    const score = scoreWorker({ maxConcurrentTasks: 4, currentTasks: 0, tasksCompleted: 0, tasksFailed: 0, totalTaskDurationMs: 0 }, DEFAULT_SCORING);
    expect(score).toEqual({ priority: 0.5 + 0.3 * 0.5 + 0.2 * 0.5, capacityScore: 1, successScore: 0.5, speedScore: 0.5 });
  });

  it("caps the speed score at 1 for tasks faster than the reference", () => {
    const score = scoreWorker({ maxConcurrentTasks: 1, currentTasks: 1, tasksCompleted: 2, tasksFailed: 0, totalTaskDurationMs: 400 }, DEFAULT_SCORING);
    expect(score.speedScore).toBe(1);
    expect(score.capacityScore).toBe(0);
  });

  it("uses the configured weights", () => {
    const score = scoreWorker(workerA, { ...DEFAULT_SCORING, capacityWeight: 1, successWeight: 0, speedWeight: 0 });
    expect(score.priority).toBeCloseTo(0.8, 10);
  });
});
