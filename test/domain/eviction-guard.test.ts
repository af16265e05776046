import { describe, expect, it } from "vitest";
import { EvictionGuard } from "../../src/domain/eviction-guard.js";
import { silentLogger } from "../../src/domain/logger.js";
import type { WorkerRegistry } from "../../src/domain/worker-registry.js";
import type { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry } from "../support/registry-fixture.js";

const SECOND = 1000;
// Short thresholds keep the arithmetic readable: heartbeats every 10 s, healthy under 30 s, removed after 60 s.
const options = {
  heartbeatIntervalMs: 10 * SECOND,
  healthyThresholdMs: 30 * SECOND,
  degradedThresholdMs: 60 * SECOND,
  workerTtlMs: 60 * SECOND,
  maxEvictionShare: 1,
  stallThresholdMs: 5 * SECOND,
  collapseMinWorkers: 3,
};

async function fleet(size: number, extra: object = {}): Promise<{ registry: WorkerRegistry; clock: FakeClock; ids: string[] }> {
  const { registry, clock } = await createTestRegistry({ ...options, ...extra });
  const ids: string[] = [];
  for (let i = 0; i < size; i++) ids.push((await registry.registerWorker({ nodeId: `n${i}`, capabilities: ["coder"], maxConcurrentTasks: 1 })).id);
  return { registry, clock, ids };
}

/** Runs the registry's one-second tick for `seconds`, with `beating` workers heartbeating every 10 s. */
async function run(registry: WorkerRegistry, clock: FakeClock, seconds: number, beating: readonly string[]): Promise<void> {
  for (let s = 0; s < seconds; s++) {
    clock.advance(SECOND);
    if (s % 10 === 0) beating.forEach((id) => registry.heartbeat(id));
    await registry.tick();
  }
}

describe("safe eviction", () => {
  it("a registry paused past the TTL does not evict its live fleet when it resumes", async () => {
    const { registry, clock, ids } = await fleet(20);
    await run(registry, clock, 40, ids);
    clock.advance(5 * 60 * SECOND); // SIGSTOP: no tick, no heartbeat for five minutes
    await registry.tick();
    expect(registry.getRegistryStats()).toMatchObject({ healthyWorkers: 20, eviction: { paused: true, pausesTotal: 1 } });
    expect(registry.getRegistryStats().eviction.reason).toMatch(/paused or starved for 300s/);
    expect(await registry.cleanup()).toBe(0);
    await run(registry, clock, 30, ids);
    expect(await registry.cleanup()).toBe(0);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 20, healthyWorkers: 20, eviction: { paused: false } });
  });

  it("pauses while intake collapses across the fleet, holds one window after it recovers, then evicts the dead", async () => {
    // A cut-off of five TTLs, within a pause bound of ten.
    const { registry, clock, ids } = await fleet(20, { evictionMaxPauseMs: 600 * SECOND });
    const live = ids.slice(0, 18);
    await run(registry, clock, 60, ids);
    // The registry is cut off for far longer than the TTL: nothing arrives, though its own ticks keep running.
    await run(registry, clock, 300, []);
    expect(registry.getRegistryStats().eviction).toMatchObject({ paused: true, lastWindowIntake: 0, expectedIntake: 20 });
    expect(registry.getRegistryStats().unhealthyWorkers).toBe(20);
    expect(await registry.cleanup()).toBe(0);
    // Reconnected: 18 come back, two are really gone. Eviction stays held until a full window after intake recovered.
    let heldFor = 0;
    for (; registry.getRegistryStats().eviction.paused && heldFor < 60; heldFor++) {
      await run(registry, clock, 1, heldFor % 10 === 0 ? live : []);
      if (registry.getRegistryStats().eviction.paused) expect(await registry.cleanup()).toBe(0);
    }
    expect(heldFor).toBeGreaterThanOrEqual(options.heartbeatIntervalMs / SECOND);
    expect(heldFor).toBeLessThan(3 * (options.heartbeatIntervalMs / SECOND));
    expect(await registry.cleanup()).toBe(2);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 18, healthyWorkers: 18 });
  });

  it("a fleet that really shrank becomes the new normal: eviction is never stuck", async () => {
    const { registry, clock, ids } = await fleet(20);
    const survivors = ids.slice(0, 5);
    await run(registry, clock, 60, ids);
    // Three quarters of the fleet dies at once: that looks like a collapse at first.
    await run(registry, clock, 20, survivors);
    expect(registry.getRegistryStats().eviction.paused).toBe(true);
    // Once the history holds only the smaller fleet, the level is recomputed and the dead are evicted.
    let removed = 0;
    for (let minute = 0; minute < 3 && removed < 15; minute++) {
      await run(registry, clock, 60, survivors);
      removed += await registry.cleanup();
    }
    expect(removed).toBe(15);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 5, eviction: { paused: false } });
  });

  it("does not judge a fleet too small to tell a collapse from deaths: its silent workers are removed", async () => {
    const { registry, clock, ids } = await fleet(2);
    await run(registry, clock, 60, ids);
    await run(registry, clock, 70, []);
    expect(registry.getRegistryStats().eviction.paused).toBe(false);
    expect(await registry.cleanup()).toBe(2);
  });

  it("removes at most the configured share of the fleet per cleanup pass", async () => {
    const { registry, clock, ids } = await fleet(20, { maxEvictionShare: 0.1 });
    await run(registry, clock, 60, ids);
    await run(registry, clock, 70, ids.slice(0, 12));
    expect(registry.getRegistryStats().eviction.paused).toBe(false);
    expect(await registry.cleanup()).toBe(2);
    expect(await registry.cleanup()).toBe(2);
    expect(await registry.cleanup()).toBe(2);
    expect(await registry.cleanup()).toBe(2);
    expect(await registry.cleanup()).toBe(0);
  });

  it("a whole fleet that dies at once is removed once the pause bound passes: the brake is not a lock", async () => {
    const { registry, clock, ids } = await fleet(5, { evictionMaxPauseMs: 180 * SECOND, maxEvictionShare: 0.5 });
    await run(registry, clock, 60, ids);
    // Every worker stops at once: intake collapses to nothing, which looks like the registry being cut off.
    await run(registry, clock, 90, []);
    const paused = registry.getRegistryStats().eviction;
    expect(paused).toMatchObject({ paused: true, lastWindowIntake: 0, expectedIntake: 5 });
    expect(paused.resumesAtMs).toBe(paused.pausedSinceMs! + 180 * SECOND);
    expect(await registry.cleanup()).toBe(0);
    // Still silent when the bound passes: the silence is believed, and eviction resumes at its per-pass limit.
    await run(registry, clock, 180, []);
    expect(registry.getRegistryStats().eviction).toMatchObject({ paused: false, resumesAtMs: undefined, pausesTotal: 1 });
    expect(await registry.cleanup()).toBe(3);
    expect(await registry.cleanup()).toBe(1);
    expect(await registry.cleanup()).toBe(1);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 0, eviction: { paused: false } });
  });

  it("an admin can resume eviction before the bound; the silence is then the level", async () => {
    const { registry, clock, ids } = await fleet(5);
    await run(registry, clock, 60, ids);
    await run(registry, clock, 90, []);
    expect(registry.getRegistryStats().eviction.paused).toBe(true);
    expect(registry.resumeEviction()).toMatchObject({ wasPaused: true, eviction: { paused: false } });
    expect(await registry.cleanup()).toBe(5);
    // Resuming when nothing is paused says so and changes nothing.
    expect(registry.resumeEviction()).toMatchObject({ wasPaused: false, eviction: { paused: false, pausesTotal: 1 } });
  });

  // Regression: with a fractional monotonic clock (performance.now()), resumes_at had a fraction of a millisecond
  // and GetRegistryStats failed with INTERNAL "Error serializing response" while eviction was paused.
  it("reports when a pause ends in whole milliseconds, whatever fractions the monotonic clock has", () => {
    let mono = 1000.375;
    const clock = { now: () => 1_767_225_600_000, monotonic: () => mono };
    const guard = new EvictionGuard(clock, silentLogger, {
      intakeWindowMs: 1000,
      collapseRatio: 0.5,
      collapseMinWorkers: 1,
      historyWindows: 3,
      stallThresholdMs: 3000,
      maxEvictionShare: 1,
      maxPauseMs: 60_000,
    });
    mono += 5000.25;
    guard.tick(1);
    mono += 0.125;
    const { paused, resumesAtMs } = guard.status();
    expect(paused).toBe(true);
    expect(Number.isInteger(resumesAtMs)).toBe(true);
  });
});
