import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/domain/errors.js";
import { DEFAULT_LIMITS } from "../../src/domain/registry-options.js";
import { validateDuration, validateFilter, validateRegistration, validateWorkerId } from "../../src/domain/validation.js";

const good = { nodeId: "node-1", capabilities: ["coder", "gpu:a100"], maxConcurrentTasks: 5 };

function fieldOf(action: () => void): string {
  try {
    action();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return `${error.field}: ${error.message}`;
    throw error;
  }
  throw new Error("expected an InvalidArgumentError");
}

describe("validateRegistration", () => {
  it("accepts a good registration", () => {
    expect(() => validateRegistration(good, DEFAULT_LIMITS)).not.toThrow();
  });

  it.each([
    ["empty node_id", { nodeId: "" }, /^node_id: node_id must not be empty/],
    ["oversized node_id", { nodeId: "n".repeat(254) }, /^node_id: .*at most 253 characters, got 254/],
    ["control character in node_id", { nodeId: "node\u0000one" }, /^node_id: .*control characters, got "node\\u0000one"/],
    ["no capabilities", { capabilities: [] }, /^capabilities: .*at least one/],
    ["too many capabilities", { capabilities: Array.from({ length: 65 }, (_, i) => `c${i}`) }, /^capabilities: .*at most 64 entries, got 65/],
    ["empty capability", { capabilities: ["coder", ""] }, /^capabilities\[1\]: .*must not be empty/],
    ["oversized capability", { capabilities: ["c".repeat(65)] }, /^capabilities\[0\]: .*at most 64 characters/],
    ["duplicate capability", { capabilities: ["coder", "tester", "coder"] }, /^capabilities\[2\]: .*repeats "coder"/],
    ["capability with a space", { capabilities: ["code review"] }, /^capabilities\[0\]: .*white space/],
    ["capability with a newline", { capabilities: ["coder\n"] }, /^capabilities\[0\]: .*white space or control/],
    ["zero max_concurrent_tasks", { maxConcurrentTasks: 0 }, /^max_concurrent_tasks: max_concurrent_tasks must be between 1 and 10000, got 0$/],
    ["negative max_concurrent_tasks", { maxConcurrentTasks: -3 }, /^max_concurrent_tasks: .*got -3$/],
    ["absurd max_concurrent_tasks", { maxConcurrentTasks: 10_001 }, /^max_concurrent_tasks: .*got 10001$/],
  ])("refuses %s", (_name, change, expected) => {
    expect(fieldOf(() => validateRegistration({ ...good, ...change }, DEFAULT_LIMITS))).toMatch(expected);
  });
});

describe("validateWorkerId", () => {
  it("accepts the guide's form and refuses anything else", () => {
    expect(() => validateWorkerId("worker-1730345678-abc123xyz")).not.toThrow();
    expect(fieldOf(() => validateWorkerId(""))).toBe("worker_id: worker_id is required");
    expect(fieldOf(() => validateWorkerId("worker-1730345678-ABC"))).toMatch(/^worker_id: .*worker-<timestamp>-<random>/);
    expect(fieldOf(() => validateWorkerId("'; DROP TABLE workers; --"))).toMatch(/^worker_id:/);
  });
});

describe("validateDuration", () => {
  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, DEFAULT_LIMITS.maxTaskDurationMs + 1])("refuses %d", (value) => {
    expect(fieldOf(() => validateDuration(value, DEFAULT_LIMITS))).toMatch(/^duration_ms: .*got/);
  });

  it("accepts zero and fractional milliseconds", () => {
    expect(() => validateDuration(0, DEFAULT_LIMITS)).not.toThrow();
    expect(() => validateDuration(12.5, DEFAULT_LIMITS)).not.toThrow();
  });
});

describe("validateFilter", () => {
  it("names the bad filter field", () => {
    const filter = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };
    expect(fieldOf(() => validateFilter({ ...filter, minAvailableCapacity: -1 }, DEFAULT_LIMITS))).toMatch(/^filter\.min_available_capacity: /);
    expect(fieldOf(() => validateFilter({ ...filter, capabilities: ["ok", "not ok"] }, DEFAULT_LIMITS))).toMatch(/^filter\.capabilities\[1\]: /);
  });
});
