import { describe, expect, it } from "vitest";
import { NoWorkerAvailableError } from "../../src/domain/errors.js";
import type { AppliedChange } from "../../src/domain/worker-registry.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coder = { nodeId: "node-1", capabilities: ["coder"], maxConcurrentTasks: 2 };

/** What a metrics listener would count from the changes applied. */
function summarise(changes: readonly AppliedChange[]) {
  return changes.map(({ event, completions }) => ({
    type: event.type,
    ...(event.reason === undefined ? {} : { reason: event.reason }),
    ...(completions.succeeded + completions.failed === 0 ? {} : { completions }),
  }));
}

describe("WorkerRegistry.onApplied", () => {
  it("reports every applied event in revision order, with why a worker left and the completions it recorded", async () => {
    const { registry, clock } = await createTestRegistry({ workerTtlMs: 15 * MINUTE, maxEvictionShare: 1 });
    const changes: AppliedChange[] = [];
    registry.onApplied((change) => changes.push(change));

    const first = await registry.registerWorker(coder);
    await registry.recordTaskCompletion(first.id, true, 100);
    await registry.recordTaskCompletion(first.id, false, 100);
    const { reservationId } = await registry.acquireWorker(NO_FILTER);
    await registry.releaseWorker(reservationId, true, 50);
    // The same node registering again replaces its worker.
    const second = await registry.registerWorker(coder);
    const other = await registry.registerWorker({ ...coder, nodeId: "node-2" });
    await registry.unregisterWorker(other.id);
    clock.advance(16 * MINUTE);
    expect(await registry.cleanup()).toBe(1);

    // Cleanup announces the health it judged (degraded, unhealthy) before it removes: not what is counted here.
    expect(summarise(changes.filter((c) => c.event.type !== "health_changed"))).toEqual([
      { type: "registered" },
      { type: "updated", completions: { succeeded: 1, failed: 0 } },
      { type: "updated", completions: { succeeded: 0, failed: 1 } },
      { type: "updated" },
      { type: "updated", completions: { succeeded: 1, failed: 0 } },
      { type: "unregistered", reason: "replaced" },
      { type: "registered" },
      { type: "registered" },
      { type: "unregistered", reason: "unregistered" },
      { type: "removed", reason: "expired" },
    ]);
    const revisions = changes.map((c) => c.event.revision);
    expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
    expect(changes.at(-1)!.event.worker.id).toBe(second.id);
  });

  it("is not a watcher, stops when removed, and survives a listener that throws", async () => {
    const { registry } = await createTestRegistry();
    const seen: number[] = [];
    registry.onApplied(() => {
      throw new Error("a broken listener");
    });
    const stop = registry.onApplied((change) => seen.push(change.event.revision));
    expect(registry.watcherCount).toBe(0);
    await registry.registerWorker(coder);
    stop();
    await registry.registerWorker({ ...coder, nodeId: "node-2" });
    expect(seen).toEqual([1]);
    expect(registry.getRegistryStats().totalWorkers).toBe(2);
  });
});

describe("WorkerRegistry.counters for AcquireWorker", () => {
  it("counts grants, and refusals by why: no worker matched, or every match was full", async () => {
    const { registry } = await createTestRegistry();
    await registry.registerWorker(coder);
    await registry.acquireWorker(NO_FILTER);
    await registry.acquireWorker(NO_FILTER);
    await expect(registry.acquireWorker(NO_FILTER)).rejects.toThrow(NoWorkerAvailableError);
    await expect(registry.acquireWorker({ ...NO_FILTER, capabilities: ["painter"] })).rejects.toThrow(NoWorkerAvailableError);
    await expect(registry.acquireWorker({ ...NO_FILTER, capabilities: ["painter"] })).rejects.toThrow(NoWorkerAvailableError);
    expect(registry.counters).toMatchObject({ acquisitions: 2, acquisitionsNoFreeSlot: 1, acquisitionsNoMatch: 2, acquisitionsContended: 0 });
  });
});
