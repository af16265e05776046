import { describe, expect, it } from "vitest";
import { Fleet, type LiveWorker } from "../../src/domain/fleet.js";
import type { HealthStatus } from "../../src/domain/health.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import type { WorkerRecord } from "../../src/domain/worker-record.js";
import { seededRandom } from "../support/registry-fixture.js";
import { eventLog, workerRecord } from "../support/worker-records.js";

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 1);
const MONO = 1_000_000;
const options = compileRegistryOptions();

function fleetWith(hearsEveryHeartbeat = true) {
  const changes: Array<{ id: string; from: HealthStatus; to: HealthStatus }> = [];
  const fleet = new Fleet(options, hearsEveryHeartbeat, (worker, from, to) => changes.push({ id: worker.id, from, to }));
  return { fleet, changes, event: eventLog() };
}

const ids = (workers: Iterable<LiveWorker>) => [...workers].map((w) => w.id);

/** The totals recomputed from scratch, to compare with the ones the fleet keeps as it goes. */
function recount(fleet: Fleet) {
  const workers = [...fleet.values()];
  const count = <K extends string>(keys: readonly K[], of: (w: LiveWorker) => K) =>
    Object.fromEntries(keys.map((k) => [k, workers.filter((w) => of(w) === k).length]));
  return {
    workers: workers.length,
    capacity: workers.reduce((s, w) => s + w.maxConcurrentTasks, 0),
    used: workers.reduce((s, w) => s + w.currentTasks, 0),
    completed: workers.reduce((s, w) => s + w.tasksCompleted, 0),
    failed: workers.reduce((s, w) => s + w.tasksFailed, 0),
    byHealth: count(["healthy", "degraded", "unhealthy"], (w) => w.health),
    byState: count(["active", "cordoned", "draining"], (w) => w.state),
  };
}

describe("Fleet: adding and registering", () => {
  it("indexes a worker by id and node_id, ranks it under each capability, and adds it to the totals", () => {
    const { fleet } = fleetWith();
    fleet.add(workerRecord({ id: "a", nodeId: "n1", capabilities: ["coder", "gpu"], maxConcurrentTasks: 4, currentTasks: 1, tasksCompleted: 5, tasksFailed: 2 }), MONO, T0);
    fleet.add(workerRecord({ id: "b", nodeId: "n2", capabilities: ["coder"], maxConcurrentTasks: 6, health: "degraded" }), MONO, T0);
    expect(fleet.size).toBe(2);
    expect(fleet.get("a")?.nodeId).toBe("n1");
    expect(ids(fleet.ofNode("n1"))).toEqual(["a"]);
    expect(ids(fleet.ranked(["gpu"]))).toEqual(["a"]);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["a", "b"]);
    expect(fleet.totals()).toEqual({
      workers: 2,
      capacity: 10,
      used: 1,
      completed: 5,
      failed: 2,
      byHealth: { healthy: 1, degraded: 1, unhealthy: 0 },
      byState: { active: 2, cordoned: 0, draining: 0 },
    });
  });

  it("places the stored heartbeat on the monotonic clock by its age", () => {
    const { fleet } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: T0 - 3 * MINUTE }), MONO, T0);
    expect(worker.lastSeenMono).toBe(MONO - 3 * MINUTE);
  });

  it("a registered event for an id it holds replaces the worker without counting it twice", () => {
    const { fleet, event } = fleetWith();
    const first = fleet.apply(event({ type: "registered", worker: workerRecord({ id: "a", maxConcurrentTasks: 4, currentTasks: 2 }) }), MONO, T0).after!;
    const { before, after } = fleet.apply(event({ type: "registered", worker: workerRecord({ id: "a", maxConcurrentTasks: 8 }) }), MONO, T0);
    expect(before).toBe(first);
    expect(fleet.isLive(first)).toBe(false);
    expect(fleet.isLive(after!)).toBe(true);
    expect(fleet.totals()).toMatchObject({ workers: 1, capacity: 8, used: 0 });
    expect(ids(fleet.ranked(["coder"]))).toEqual(["a"]);
  });
});

describe("Fleet: applying updates", () => {
  it("moves the totals by what the update changed and re-ranks by the new score", () => {
    const { fleet, event } = fleetWith();
    fleet.add(workerRecord({ id: "a", currentTasks: 0 }), MONO, T0);
    fleet.add(workerRecord({ id: "b", currentTasks: 1 }), MONO, T0);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["a", "b"]);
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", currentTasks: 3, tasksCompleted: 2, tasksFailed: 1, totalTaskDurationMs: 900 }) }), MONO, T0);
    expect(fleet.totals()).toMatchObject({ used: 4, completed: 2, failed: 1 });
    expect(fleet.get("a")!.score.priority).toBeLessThan(fleet.get("b")!.score.priority);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["b", "a"]);
  });

  it("keeps the later heartbeat: an event carrying an older one does not move the worker back", () => {
    const { fleet, event } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a", lastHeartbeatAtMs: T0 }), MONO, T0);
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", lastHeartbeatAtMs: T0 + MINUTE }) }), MONO + 2 * MINUTE, T0 + 2 * MINUTE);
    expect(worker.lastHeartbeatAtMs).toBe(T0 + MINUTE);
    expect(worker.lastSeenMono).toBe(MONO + MINUTE);
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", lastHeartbeatAtMs: T0 }) }), MONO + 3 * MINUTE, T0 + 3 * MINUTE);
    expect(worker.lastHeartbeatAtMs).toBe(T0 + MINUTE);
    expect(worker.lastSeenMono).toBe(MONO + MINUTE);
  });

  it("changes health only on health_changed events, and reports each change", () => {
    const { fleet, event, changes } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    // An update written before the heal reached the store carries a stale health: it must not undo it.
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", health: "degraded", currentTasks: 1 }) }), MONO, T0);
    expect(worker.health).toBe("healthy");
    expect(changes).toEqual([]);
    fleet.apply(event({ type: "health_changed", previousHealth: "healthy", worker: workerRecord({ id: "a", health: "degraded", currentTasks: 1 }) }), MONO, T0);
    expect(worker.health).toBe("degraded");
    expect(changes).toEqual([{ id: "a", from: "healthy", to: "degraded" }]);
    expect(fleet.totals().byHealth).toEqual({ healthy: 0, degraded: 1, unhealthy: 0 });
    expect(ids(fleet.ranked(["coder"], ["healthy"]))).toEqual([]);
    expect(ids(fleet.ranked(["coder"], ["degraded"]))).toEqual(["a"]);
  });

  it("an event for a worker it does not hold changes nothing", () => {
    const { fleet, event } = fleetWith();
    const result = fleet.apply(event({ type: "updated", worker: workerRecord({ id: "ghost", currentTasks: 3 }) }), MONO, T0);
    expect(result).toEqual({ before: undefined, after: undefined });
    expect(fleet.totals()).toMatchObject({ workers: 0, used: 0 });
  });

  it("counts the slots reservations hold from the events that grant and end them", () => {
    const { fleet, event } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    const reservation = { id: "r1", workerId: "a", createdAtMs: T0, expiresAtMs: T0 + MINUTE };
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", currentTasks: 1 }), reservation: { granted: reservation } }), MONO, T0);
    expect(worker.reservedTasks).toBe(1);
    fleet.apply(event({ type: "updated", worker: workerRecord({ id: "a", currentTasks: 0 }), reservation: { ended: "r1" } }), MONO, T0);
    expect(worker.reservedTasks).toBe(0);
  });
});

describe("Fleet: states and rotation", () => {
  it("takes cordoned and draining workers out of ranking but keeps them as members, and tracks the draining ones", () => {
    const { fleet, event } = fleetWith();
    for (const id of ["a", "b", "c"]) fleet.add(workerRecord({ id }), MONO, T0);
    fleet.apply(event({ type: "state_changed", previousState: "active", worker: workerRecord({ id: "a", state: "cordoned" }) }), MONO, T0);
    fleet.apply(event({ type: "state_changed", previousState: "active", worker: workerRecord({ id: "b", state: "draining", drainDeadlineMs: T0 + MINUTE }) }), MONO, T0);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["c"]);
    expect(ids(fleet.members(["coder"])).sort()).toEqual(["a", "b", "c"]);
    expect(ids(fleet.draining())).toEqual(["b"]);
    expect(fleet.get("b")!.drainDeadlineMs).toBe(T0 + MINUTE);
    expect(fleet.totals().byState).toEqual({ active: 1, cordoned: 1, draining: 1 });
    fleet.apply(event({ type: "state_changed", previousState: "cordoned", worker: workerRecord({ id: "a", state: "active" }) }), MONO, T0);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["a", "c"]);
    expect(fleet.totals().byState).toEqual({ active: 2, cordoned: 0, draining: 1 });
  });

  it("keeps an unconfirmed worker out of ranking until it is confirmed", () => {
    const { fleet } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    fleet.setUnconfirmed(worker, true);
    expect(ids(fleet.ranked(["coder"]))).toEqual([]);
    expect(ids(fleet.members(["coder"]))).toEqual(["a"]);
    fleet.setUnconfirmed(worker, false);
    expect(ids(fleet.ranked(["coder"]))).toEqual(["a"]);
  });

  it("setHealth heals at once, keeps the counts, and leaves a removed worker alone", () => {
    const { fleet, event, changes } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a", health: "unhealthy" }), MONO, T0);
    fleet.setHealth(worker, "healthy");
    expect(changes).toEqual([{ id: "a", from: "unhealthy", to: "healthy" }]);
    expect(fleet.totals().byHealth).toEqual({ healthy: 1, degraded: 0, unhealthy: 0 });
    fleet.apply(event({ type: "removed", reason: "expired", worker: workerRecord({ id: "a" }) }), MONO, T0);
    fleet.setHealth(worker, "degraded");
    expect(changes).toHaveLength(1);
    expect(fleet.totals().byHealth).toEqual({ healthy: 0, degraded: 0, unhealthy: 0 });
  });

  it("ranks by every capability asked for, walking whichever is rarest", () => {
    const { fleet } = fleetWith();
    fleet.add(workerRecord({ id: "a", capabilities: ["coder", "gpu"] }), MONO, T0);
    fleet.add(workerRecord({ id: "b", capabilities: ["coder"] }), MONO, T0);
    fleet.add(workerRecord({ id: "c", capabilities: ["gpu", "coder"], currentTasks: 2 }), MONO, T0);
    expect(ids(fleet.ranked(["coder", "gpu"]))).toEqual(["a", "c"]);
    expect(ids(fleet.ranked(["gpu", "coder"]))).toEqual(["a", "c"]);
    expect(ids(fleet.ranked(["coder", "painter"]))).toEqual([]);
    expect(ids(fleet.ranked([]))).toEqual(["a", "b", "c"]);
  });
});

describe("Fleet: health as callers see it", () => {
  it("where it hears every heartbeat, shows worse health by heartbeat age before the schedule announces it", () => {
    const { fleet } = fleetWith(true);
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    expect(fleet.healthOf(worker, MONO + 10 * MINUTE - 1)).toBe("healthy");
    expect(fleet.healthOf(worker, MONO + 10 * MINUTE)).toBe("degraded");
    expect(fleet.healthOf(worker, MONO + 15 * MINUTE + 1)).toBe("unhealthy");
    expect(fleet.view(worker, MONO + 15 * MINUTE + 1).healthStatus).toBe("unhealthy");
    expect(worker.health).toBe("healthy");
  });

  it("never shows better health than announced", () => {
    const { fleet } = fleetWith(true);
    const worker = fleet.add(workerRecord({ id: "a", health: "unhealthy" }), MONO, T0);
    expect(fleet.healthOf(worker, MONO)).toBe("unhealthy");
  });

  it("a replica shows the announced health whatever the age it knows", () => {
    const { fleet } = fleetWith(false);
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    expect(fleet.healthOf(worker, MONO + 60 * MINUTE)).toBe("healthy");
  });

  it("holds health where it is until the hold ends, and a postponement moves both the heartbeat and the hold", () => {
    const { fleet } = fleetWith(true);
    const worker = fleet.add(workerRecord({ id: "a" }), MONO, T0);
    fleet.holdAll(MONO + 20 * MINUTE);
    expect(fleet.healthOf(worker, MONO + 20 * MINUTE - 1)).toBe("healthy");
    expect(fleet.healthOf(worker, MONO + 20 * MINUTE)).toBe("unhealthy");
    fleet.postponeDeadlines(5 * MINUTE);
    expect(worker.lastSeenMono).toBe(MONO + 5 * MINUTE);
    expect(worker.holdUntilMono).toBe(MONO + 25 * MINUTE);
    expect(fleet.healthOf(worker, MONO + 24 * MINUTE)).toBe("healthy");
  });
});

describe("Fleet: removal", () => {
  it("takes the worker out of every index and the totals, and remembers why it left", () => {
    const { fleet, event } = fleetWith();
    const worker = fleet.add(workerRecord({ id: "a", nodeId: "n1", capabilities: ["coder", "gpu"], state: "draining", drainDeadlineMs: T0, currentTasks: 2, tasksCompleted: 3, tasksFailed: 1 }), MONO, T0);
    fleet.add(workerRecord({ id: "b", nodeId: "n2" }), MONO, T0);
    const { before, after } = fleet.apply(event({ type: "unregistered", reason: "drain_deadline", worker: workerRecord({ id: "a", nodeId: "n1" }) }), MONO, T0);
    expect(before).toBe(worker);
    expect(after).toBeUndefined();
    expect(fleet.get("a")).toBeUndefined();
    expect(fleet.isLive(worker)).toBe(false);
    expect(fleet.ofNode("n1")).toEqual([]);
    expect(ids(fleet.members(["gpu"]))).toEqual([]);
    expect(ids(fleet.members(["coder"]))).toEqual(["b"]);
    expect(ids(fleet.draining())).toEqual([]);
    expect(worker.rankedAs).toBeUndefined();
    expect(fleet.totals()).toEqual(recount(fleet));
    expect(fleet.totals()).toMatchObject({ workers: 1, capacity: 4, used: 0, completed: 0, failed: 0 });
    expect(fleet.removalOf("a")).toBe("drain_deadline");
    expect(fleet.notFound("a").message).toMatch(/^worker a not found: ./);
    expect(fleet.notFound("never-here").message).toBe("worker never-here not found");
  });

  it("clear empties the fleet and every total", () => {
    const { fleet } = fleetWith();
    for (const id of ["a", "b"]) fleet.add(workerRecord({ id, currentTasks: 1, tasksCompleted: 2 }), MONO, T0);
    fleet.clear();
    expect(fleet.size).toBe(0);
    expect(ids(fleet.members([]))).toEqual([]);
    expect(fleet.totals()).toEqual(recount(fleet));
  });
});

describe("Fleet: totals stay the sums of the workers", () => {
  it("after a long random mix of events, every total equals a recount and the rank index holds exactly the active workers", () => {
    const random = seededRandom(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const { fleet, event } = fleetWith();
    const records = new Map<string, WorkerRecord>();
    const healths: HealthStatus[] = ["healthy", "degraded", "unhealthy"];
    for (let step = 0; step < 2_000; step++) {
      const id = `w${Math.floor(random() * 30)}`;
      const current = records.get(id);
      if (current === undefined) {
        const max = 1 + Math.floor(random() * 8);
        const record = workerRecord({ id, nodeId: `n${Math.floor(random() * 20)}`, maxConcurrentTasks: max, capabilities: random() < 0.5 ? ["coder"] : ["coder", "gpu"] });
        // A new registration of a node replaces its workers, as the store does.
        for (const other of fleet.ofNode(record.nodeId)) {
          fleet.apply(event({ type: "unregistered", reason: "replaced", worker: records.get(other.id)! }), MONO, T0);
          records.delete(other.id);
        }
        fleet.apply(event({ type: "registered", worker: record }), MONO, T0);
        records.set(id, record);
        continue;
      }
      const roll = random();
      let next: WorkerRecord;
      if (roll < 0.1) {
        fleet.apply(event({ type: "removed", reason: "expired", worker: current }), MONO, T0);
        records.delete(id);
        continue;
      } else if (roll < 0.5) {
        next = { ...current, currentTasks: Math.floor(random() * (current.maxConcurrentTasks + 1)), tasksCompleted: current.tasksCompleted + (random() < 0.5 ? 1 : 0), tasksFailed: current.tasksFailed + (random() < 0.2 ? 1 : 0) };
        fleet.apply(event({ type: "updated", worker: next }), MONO, T0);
      } else if (roll < 0.8) {
        next = { ...current, health: pick(healths) };
        fleet.apply(event({ type: "health_changed", previousHealth: current.health, worker: next }), MONO, T0);
      } else {
        const state = pick(["active", "cordoned", "draining"] as const);
        next = { ...current, state, drainDeadlineMs: state === "draining" ? T0 + MINUTE : null };
        fleet.apply(event({ type: "state_changed", previousState: current.state, worker: next }), MONO, T0);
      }
      records.set(id, next);
    }
    expect(fleet.size).toBe(records.size);
    expect(fleet.totals()).toEqual(recount(fleet));
    const active = [...records.values()].filter((r) => r.state === "active").map((r) => r.id).sort();
    expect(ids(fleet.ranked([])).sort()).toEqual(active);
    expect(ids(fleet.members([])).sort()).toEqual([...records.keys()].sort());
    expect(ids(fleet.draining()).sort()).toEqual([...records.values()].filter((r) => r.state === "draining").map((r) => r.id).sort());
    for (const record of records.values()) {
      expect(fleet.get(record.id)).toMatchObject({ currentTasks: record.currentTasks, health: record.health, state: record.state });
    }
  });
});
