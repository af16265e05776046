import { describe, expect, it } from "vitest";
import { Fleet, type LiveWorker } from "../../src/domain/fleet.js";
import { HealthSchedule } from "../../src/domain/health-schedule.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import type { HealthChange } from "../../src/domain/registry-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { eventLog, workerRecord } from "../support/worker-records.js";

const MINUTE = 60_000;
// The TTL apart from the degraded threshold, so each of the three deadlines can be seen on its own.
const options = compileRegistryOptions({ healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE, workerTtlMs: 20 * MINUTE, heartbeatIntervalMs: MINUTE });

function setup() {
  const clock = new FakeClock();
  const fleet = new Fleet(options, true);
  const schedule = new HealthSchedule(fleet, options);
  const add = (id: string): LiveWorker => {
    const worker = fleet.add(workerRecord({ id, lastHeartbeatAtMs: clock.now() }), clock.monotonic(), clock.now());
    schedule.track(worker, clock.monotonic());
    return worker;
  };
  /** What the leader does with the schedule's answer: applies the downgrades at once. */
  const due = (): HealthChange[] => {
    const changes = schedule.due(clock.monotonic());
    for (const change of changes) fleet.setHealth(fleet.get(change.workerId)!, change.to);
    return changes;
  };
  /** A heartbeat as liveness records it: the last-seen time moves, and the schedule is told. */
  const heartbeat = (worker: LiveWorker) => {
    worker.lastSeenMono = clock.monotonic();
    worker.lastHeartbeatAtMs = clock.now();
    fleet.setHealth(worker, "healthy");
    schedule.heard(worker, clock.monotonic());
  };
  return { clock, fleet, schedule, add, due, heartbeat };
}

describe("HealthSchedule: transitions at the thresholds", () => {
  it("announces nothing before the healthy threshold, and the degraded step exactly at it", () => {
    const { clock, add, due } = setup();
    const heardAtMs = clock.now();
    add("a");
    clock.advance(10 * MINUTE - 1);
    expect(due()).toEqual([]);
    clock.advance(1);
    expect(due()).toEqual([{ workerId: "a", from: "healthy", to: "degraded", heardUntilMs: heardAtMs }]);
    expect(due()).toEqual([]);
  });

  it("announces unhealthy one millisecond past the degraded threshold, not at it", () => {
    const { clock, add, due } = setup();
    add("a");
    clock.advance(10 * MINUTE);
    due();
    clock.advance(5 * MINUTE);
    expect(due()).toEqual([]);
    clock.advance(1);
    expect(due()).toEqual([expect.objectContaining({ workerId: "a", from: "degraded", to: "unhealthy" })]);
  });

  it("a worker found far past both thresholds gets both steps, degraded first, so no watcher misses one", () => {
    const { clock, add, due } = setup();
    add("a");
    clock.advance(17 * MINUTE);
    expect(due().map(({ from, to }) => [from, to])).toEqual([
      ["healthy", "degraded"],
      ["degraded", "unhealthy"],
    ]);
  });

  it("judges each worker by its own heartbeat, in deadline order", () => {
    const { clock, add, due } = setup();
    add("early");
    clock.advance(3 * MINUTE);
    add("late");
    clock.advance(7 * MINUTE);
    expect(due().map((c) => c.workerId)).toEqual(["early"]);
    clock.advance(3 * MINUTE - 1);
    expect(due()).toEqual([]);
    clock.advance(1);
    expect(due().map((c) => c.workerId)).toEqual(["late"]);
  });

  it("tracking a worker twice gives it one entry, not two announcements", () => {
    const { clock, schedule, add } = setup();
    const worker = add("a");
    schedule.track(worker, clock.monotonic());
    schedule.heard(worker, clock.monotonic());
    clock.advance(10 * MINUTE);
    expect(schedule.due(clock.monotonic())).toHaveLength(1);
  });
});

describe("HealthSchedule: lazy deadlines", () => {
  it("a heartbeat costs no entry: the old deadline finds the worker healthy and moves to the real one", () => {
    const { clock, add, due, heartbeat } = setup();
    const worker = add("a");
    clock.advance(6 * MINUTE);
    heartbeat(worker);
    clock.advance(4 * MINUTE);
    expect(due()).toEqual([]);
    expect(worker.scheduled).toBe(true);
    clock.advance(6 * MINUTE - 1);
    expect(due()).toEqual([]);
    clock.advance(1);
    expect(due()).toEqual([expect.objectContaining({ workerId: "a", to: "degraded" })]);
  });

  it("a heartbeat after a downgrade is judged afresh: no unhealthy step at the old deadline", () => {
    const { clock, add, due, heartbeat } = setup();
    const worker = add("a");
    clock.advance(10 * MINUTE);
    due();
    expect(worker.health).toBe("degraded");
    clock.advance(MINUTE);
    heartbeat(worker);
    clock.advance(4 * MINUTE + 1);
    expect(due()).toEqual([]);
    clock.advance(6 * MINUTE - 2);
    expect(due()).toEqual([]);
    clock.advance(1);
    expect(due()).toEqual([expect.objectContaining({ from: "healthy", to: "degraded" })]);
  });

  it("each downgrade carries the heartbeat it was judged by, so a later stored one wins", () => {
    const { clock, add, due, heartbeat } = setup();
    const worker = add("a");
    clock.advance(MINUTE);
    heartbeat(worker);
    const heardAtMs = clock.now();
    clock.advance(10 * MINUTE);
    expect(due()).toEqual([expect.objectContaining({ heardUntilMs: heardAtMs })]);
  });
});

describe("HealthSchedule: expiry", () => {
  it("puts a worker in the expired set one millisecond past its TTL, and not before", () => {
    const { clock, schedule, add, due } = setup();
    const worker = add("a");
    clock.advance(20 * MINUTE);
    due();
    expect(schedule.expired.has(worker)).toBe(false);
    clock.advance(1);
    due();
    expect([...schedule.expired]).toEqual([worker]);
    expect(worker.scheduled).toBe(false);
  });

  it("keeps the expired oldest first", () => {
    const { clock, schedule, add, due } = setup();
    add("a");
    clock.advance(MINUTE);
    add("b");
    clock.advance(30 * MINUTE);
    due();
    expect([...schedule.expired].map((w) => w.id)).toEqual(["a", "b"]);
  });

  it("a worker heard from leaves the expired set and is scheduled again", () => {
    const { clock, schedule, add, due, heartbeat } = setup();
    const worker = add("a");
    clock.advance(21 * MINUTE);
    due();
    heartbeat(worker);
    expect(schedule.expired.size).toBe(0);
    expect(worker.scheduled).toBe(true);
    clock.advance(10 * MINUTE);
    expect(due()).toEqual([expect.objectContaining({ workerId: "a", to: "degraded" })]);
  });

  it("a worker tracked already past its TTL and announced unhealthy goes straight to the expired set", () => {
    const { clock, fleet, schedule } = setup();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: clock.now() - 30 * MINUTE, health: "unhealthy" }), clock.monotonic(), clock.now());
    schedule.track(worker, clock.monotonic());
    expect(schedule.expired.has(worker)).toBe(true);
    expect(worker.scheduled).toBe(false);
  });

  it("forget takes a removed worker out of the expired set, and its heap entry is dropped when due", () => {
    const { clock, fleet, schedule, add, due } = setup();
    const event = eventLog();
    const gone = add("gone");
    const kept = add("kept");
    clock.advance(21 * MINUTE);
    due();
    fleet.apply(event({ type: "removed", reason: "expired", worker: workerRecord({ id: "gone" }) }), clock.monotonic(), clock.now());
    schedule.forget(gone);
    expect([...schedule.expired]).toEqual([kept]);

    const removedEarly = add("removed-early");
    fleet.apply(event({ type: "unregistered", reason: "unregistered", worker: workerRecord({ id: "removed-early" }) }), clock.monotonic(), clock.now());
    schedule.forget(removedEarly);
    clock.advance(30 * MINUTE);
    expect(due()).toEqual([]);
    expect(schedule.expired.has(removedEarly)).toBe(false);
  });
});

describe("HealthSchedule: holds, retries, resets", () => {
  it("a worker held by recovery is neither downgraded nor expired until the hold ends", () => {
    const { clock, fleet, schedule, due } = setup();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: clock.now() - 12 * MINUTE, health: "degraded" }), clock.monotonic(), clock.now());
    worker.holdUntilMono = clock.monotonic() + 30 * MINUTE;
    schedule.track(worker, clock.monotonic());
    clock.advance(30 * MINUTE - 1);
    expect(due()).toEqual([]);
    expect(schedule.expired.size).toBe(0);
    clock.advance(1);
    expect(due()).toEqual([expect.objectContaining({ from: "degraded", to: "unhealthy" })]);
    expect(schedule.expired.has(worker)).toBe(true);
  });

  it("a retry during a hold announces nothing either", () => {
    const { clock, fleet, schedule } = setup();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: clock.now() - 12 * MINUTE }), clock.monotonic(), clock.now());
    worker.holdUntilMono = clock.monotonic() + MINUTE;
    schedule.retry(["a"], clock.monotonic());
    expect(schedule.due(clock.monotonic())).toEqual([]);
    clock.advance(MINUTE);
    expect(schedule.due(clock.monotonic())).toEqual([expect.objectContaining({ from: "healthy", to: "degraded" })]);
  });

  it("retry judges a worker again at the next call, whatever its deadline", () => {
    const { clock, fleet, schedule, add } = setup();
    const worker = add("a");
    clock.advance(10 * MINUTE);
    expect(schedule.due(clock.monotonic())).toHaveLength(1);
    // The downgrade could not be written: the fleet still shows it healthy.
    schedule.retry(["a", "unknown"], clock.monotonic());
    expect(schedule.due(clock.monotonic())).toEqual([expect.objectContaining({ workerId: "a", to: "degraded" })]);
    expect(worker.health).toBe("healthy");
    expect(fleet.get("unknown")).toBeUndefined();
  });

  it("clear forgets every entry and the expired; trackAll schedules every worker of the fleet", () => {
    const { clock, fleet, schedule, add, due } = setup();
    add("a");
    clock.advance(21 * MINUTE);
    due();
    add("b");
    schedule.clear();
    for (const worker of fleet.values()) worker.scheduled = false;
    expect(schedule.expired.size).toBe(0);
    clock.advance(9 * MINUTE);
    expect(schedule.due(clock.monotonic())).toEqual([]);
    schedule.trackAll(clock.monotonic());
    expect([...schedule.expired].map((w) => w.id)).toEqual(["a"]);
    clock.advance(MINUTE);
    expect(schedule.due(clock.monotonic())).toEqual([expect.objectContaining({ workerId: "b", to: "degraded" })]);
  });
});

describe("HealthSchedule: a worker tracked afresh with its health announced behind its age", () => {
  // A leader that reloads its read model (it fell behind the log's retention) clears its schedule and tracks
  // every worker again; a downgrade it had not written yet is still owed.
  it("is due at once, not at the next threshold: a reload must not delay the degraded step", () => {
    const { clock, fleet, schedule } = setup();
    fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: clock.now() - 12 * MINUTE }), clock.monotonic(), clock.now());
    schedule.trackAll(clock.monotonic());
    expect(schedule.due(clock.monotonic())).toEqual([expect.objectContaining({ workerId: "a", from: "healthy", to: "degraded" })]);
  });

  it("past its TTL, it is announced down the tiers before it is expired, so watchers see it go", () => {
    const { clock, fleet, schedule } = setup();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: clock.now() - 30 * MINUTE }), clock.monotonic(), clock.now());
    schedule.track(worker, clock.monotonic());
    expect(schedule.expired.size).toBe(0);
    const changes = schedule.due(clock.monotonic());
    expect(changes.map(({ from, to }) => [from, to])).toEqual([
      ["healthy", "degraded"],
      ["degraded", "unhealthy"],
    ]);
    for (const change of changes) fleet.setHealth(worker, change.to);
    clock.advance(1);
    expect(schedule.due(clock.monotonic())).toEqual([]);
    expect([...schedule.expired]).toEqual([worker]);
  });
});
