import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { WorkerRegistry } from "../../src/domain/worker-registry.js";
import type { RegistryStore } from "../../src/domain/registry-store.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const ALL_HEALTH = ["healthy", "degraded", "unhealthy"] as const;

/** One call a client might make; `pick` chooses among the workers or reservations known so far. */
type Op =
  | { readonly kind: "register"; readonly node: number; readonly max: number }
  | { readonly kind: "acquire" }
  | { readonly kind: "release"; readonly pick: number; readonly success: boolean }
  | { readonly kind: "count"; readonly pick: number; readonly delta: number }
  | { readonly kind: "complete"; readonly pick: number; readonly success: boolean }
  | { readonly kind: "unregister"; readonly pick: number }
  | { readonly kind: "heartbeat"; readonly pick: number }
  | { readonly kind: "cordon" | "uncordon"; readonly pick: number }
  | { readonly kind: "drain"; readonly pick: number; readonly graceMs: number }
  | { readonly kind: "expire-and-clean" };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("register" as const), node: fc.integer({ min: 0, max: 5 }), max: fc.integer({ min: 1, max: 4 }) }),
  fc.constant({ kind: "acquire" as const }),
  fc.constant({ kind: "acquire" as const }),
  fc.record({ kind: fc.constant("release" as const), pick: fc.nat(), success: fc.boolean() }),
  fc.record({ kind: fc.constant("count" as const), pick: fc.nat(), delta: fc.integer({ min: -2, max: 2 }) }),
  fc.record({ kind: fc.constant("complete" as const), pick: fc.nat(), success: fc.boolean() }),
  fc.record({ kind: fc.constant("unregister" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("heartbeat" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constantFrom("cordon" as const, "uncordon" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("drain" as const), pick: fc.nat(), graceMs: fc.constantFrom(1000, 20 * MINUTE) }),
  fc.constant({ kind: "expire-and-clean" as const }),
);

/** Batches of calls; the calls of a batch are all started before any is awaited, as on one channel without waiting. */
const scenario = fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 });

interface Known {
  readonly workers: string[];
  readonly reservations: string[];
}

function start(registry: WorkerRegistry, advance: (ms: number) => void, known: Known, call: Op): Promise<unknown> {
  const worker = (pick: number) => known.workers[pick % Math.max(1, known.workers.length)] ?? "worker-1-none";
  switch (call.kind) {
    case "register":
      return registry.registerWorker({ nodeId: `node-${call.node}`, capabilities: ["coder"], maxConcurrentTasks: call.max }).then((w) => {
        known.workers.push(w.id);
      });
    case "acquire":
      return registry.acquireWorker({ capabilities: ["coder"], healthStatuses: [], minAvailableCapacity: 0 }).then((a) => {
        known.reservations.push(a.reservationId);
      });
    case "release": {
      const id = known.reservations[call.pick % Math.max(1, known.reservations.length)] ?? "rsv-1-none";
      return registry.releaseWorker(id, call.success, 10);
    }
    case "count":
      return registry.updateTaskCount(worker(call.pick), call.delta);
    case "complete":
      return registry.recordTaskCompletion(worker(call.pick), call.success, 25);
    case "unregister":
      return registry.unregisterWorker(worker(call.pick));
    case "heartbeat":
      return Promise.resolve().then(() => registry.heartbeat(worker(call.pick)));
    case "cordon":
      return registry.cordonWorker(worker(call.pick));
    case "uncordon":
      return registry.uncordonWorker(worker(call.pick));
    case "drain":
      return registry.drainWorker(worker(call.pick), call.graceMs);
    case "expire-and-clean":
      // Every worker not heard from in the next 16 minutes is past its TTL, and every drain past its deadline:
      // cleanup and the deadline race the calls in flight.
      advance(16 * MINUTE);
      return registry.cleanup();
  }
}

/** The invariants every interleaving must keep, read through the registry's public calls and the store's recovery. */
async function checkInvariants(registry: WorkerRegistry, store: RegistryStore): Promise<void> {
  const listed = registry.discoverWorkers(NO_FILTER, 10_000).workers;
  const ranked = registry.getWorkersForLoadBalancing({ ...NO_FILTER, healthStatuses: ALL_HEALTH }, 10_000);
  const listedIds = new Set(listed.map((w) => w.id));
  // The rank index holds the active workers and nothing else: no ghost of a removed worker, none out of rotation.
  for (const { worker } of ranked) expect(listedIds.has(worker.id), `ranked ${worker.id} is not in the fleet`).toBe(true);
  expect(ranked).toHaveLength(listed.filter((w) => w.state === "active").length);
  // A draining worker with nothing left to run has been removed, in the transaction that freed its last slot.
  for (const worker of listed) if (worker.state === "draining") expect(worker.currentTasks, `idle draining ${worker.id}`).toBeGreaterThan(0);
  for (const worker of listed) {
    const fresh = registry.getWorker(worker.id);
    expect(fresh.currentTasks).toBe(worker.currentTasks);
    expect(worker.currentTasks).toBeGreaterThanOrEqual(0);
    expect(worker.currentTasks).toBeLessThanOrEqual(worker.maxConcurrentTasks);
  }
  // Totals are the sums over the fleet.
  const stats = registry.getRegistryStats();
  const sum = (f: (w: (typeof listed)[number]) => number) => listed.reduce((total, w) => total + f(w), 0);
  expect(stats.totalWorkers).toBe(listed.length);
  expect(stats.totalCapacity).toBe(sum((w) => w.maxConcurrentTasks));
  expect(stats.usedCapacity).toBe(sum((w) => w.currentTasks));
  expect(stats.tasksCompleted).toBe(sum((w) => w.metrics.tasksCompleted));
  expect(stats.tasksFailed).toBe(sum((w) => w.metrics.tasksFailedCount));
  expect(stats.healthyWorkers + stats.degradedWorkers + stats.unhealthyWorkers).toBe(listed.length);
  expect([stats.cordonedWorkers, stats.drainingWorkers]).toEqual([
    listed.filter((w) => w.state === "cordoned").length,
    listed.filter((w) => w.state === "draining").length,
  ]);
  // Memory and the store agree on who exists and on every count, and the read model is at the store's revision.
  expect(stats.revision).toBe(await store.headRevision());
  const recovered = await store.load();
  const stored = new Map(recovered.workers.map((w) => [w.id, w]));
  expect([...stored.keys()].sort()).toEqual([...listedIds].sort());
  for (const worker of listed) {
    const row = stored.get(worker.id)!;
    expect([row.currentTasks, row.tasksCompleted, row.tasksFailed, row.state, row.drainDeadlineMs]).toEqual([
      worker.currentTasks,
      worker.metrics.tasksCompleted,
      worker.metrics.tasksFailedCount,
      worker.state,
      worker.drainDeadlineMs,
    ]);
  }
  const activeByWorker = new Map<string, number>();
  for (const r of recovered.reservations) activeByWorker.set(r.workerId, (activeByWorker.get(r.workerId) ?? 0) + 1);
  expect(stats.activeReservations).toBe(recovered.reservations.length);
  for (const [workerId, active] of activeByWorker) expect(stored.get(workerId)!.currentTasks).toBeGreaterThanOrEqual(active);
}

describe("fleet invariants under interleaved acquisitions, releases, task counts and removals", () => {
  // Regression: an acquisition whose worker was removed while it committed put the worker back in the rank index
  // (current_tasks -2, "taken or removed" for every later AcquireWorker) and left the totals off by its slot.
  it("an acquisition racing UnregisterWorker leaves no ghost worker", async () => {
    const { registry, store } = await createTestRegistry({ maxEvictionShare: 1 });
    const { id } = await registry.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 10 });
    const none = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 } as const;
    await registry.acquireWorker(none);
    const calls = [registry.acquireWorker(none), registry.unregisterWorker(id), registry.acquireWorker(none), registry.acquireWorker(none), registry.acquireWorker(none)];
    await Promise.allSettled(calls);
    expect(registry.discoverWorkers(NO_FILTER).workers).toEqual([]);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 0, usedCapacity: 0, totalCapacity: 0 });
    const fresh = await registry.registerWorker({ nodeId: "m", capabilities: ["coder"], maxConcurrentTasks: 1 });
    expect((await registry.acquireWorker(none)).ranked.worker.id).toBe(fresh.id);
    await checkInvariants(registry, store);
  });

  it("holds after every batch of thousands of random interleavings", async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (batches) => {
        const { registry, clock, store } = await createTestRegistry({ maxEvictionShare: 1 });
        const known: Known = { workers: [], reservations: [] };
        try {
          for (const batch of batches) {
            await Promise.allSettled(batch.map((call) => start(registry, (ms) => clock.advance(ms), known, call)));
            await checkInvariants(registry, store);
          }
        } finally {
          await registry.close();
          await store.close();
        }
      }),
      { numRuns: 2000 },
    );
  }, 120_000);
});
