import { describe, expect, it } from "vitest";
import { FutureRevisionError, RevisionCompactedError } from "../../src/domain/errors.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coder = { nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 };

function collector(): { events: WorkerEvent[]; listener: (event: WorkerEvent) => void } {
  const events: WorkerEvent[] = [];
  return { events, listener: (event) => events.push(event) };
}

const summary = (events: WorkerEvent[]) => events.map((e) => `${e.revision} ${e.type} ${e.worker.healthStatus}`);

describe("the revisioned event log and watchers", () => {
  it("numbers every change, and health transitions, with strictly increasing revisions", async () => {
    const { registry, clock } = await createTestRegistry();
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    const worker = await registry.registerWorker(coder);
    await registry.updateTaskCount(worker.id, 2);
    await registry.recordTaskCompletion(worker.id, true, 100);
    clock.advance(10 * MINUTE);
    // Nobody reads the worker: the schedule alone announces the transition.
    await registry.tick();
    registry.heartbeat(worker.id);
    await registry.tick();
    await registry.unregisterWorker(worker.id);
    expect(summary(events)).toEqual([
      "1 registered healthy",
      "2 updated healthy",
      "3 updated healthy",
      "4 health_changed degraded",
      "5 health_changed healthy",
      "6 unregistered healthy",
    ]);
    expect(events[1]!.worker.currentTasks).toBe(2);
    expect(events[2]!.worker.metrics.tasksCompleted).toBe(1);
    expect(events[3]!.previousHealth).toBe("healthy");
    expect(registry.getRegistryStats().revision).toBe(6);
  });

  it("a watcher that stops during an event's delivery costs the watchers after it nothing, and hears no more", async () => {
    const { registry } = await createTestRegistry();
    const first: WorkerEvent[] = [];
    let stopFirst = () => {};
    stopFirst = await registry.watch(NO_FILTER, 0, (event) => {
      first.push(event);
      stopFirst();
    });
    const second = collector();
    await registry.watch(NO_FILTER, 0, second.listener);
    const filtered = collector();
    await registry.watch({ ...NO_FILTER, capabilities: ["coder"] }, 0, filtered.listener);
    const worker = await registry.registerWorker(coder);
    await registry.updateTaskCount(worker.id, 1);
    expect(first.map((e) => e.revision)).toEqual([1]);
    expect(second.events.map((e) => e.revision)).toEqual([1, 2]);
    expect(filtered.events.map((e) => e.revision)).toEqual([1, 2]);
  });

  it("a refused change writes no event", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder);
    await expect(registry.updateTaskCount(worker.id, 9)).rejects.toThrow();
    expect(registry.getRegistryStats().revision).toBe(1);
  });

  it("resumes from a revision: the replay and the live events meet without gaps or repeats", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder);
    for (let i = 0; i < 5; i++) await registry.recordTaskCompletion(worker.id, true, 10);
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 3, listener);
    await registry.updateTaskCount(worker.id, 1);
    expect(events.map((e) => e.revision)).toEqual([3, 4, 5, 6, 7]);
    expect(events[0]!.worker.metrics.tasksCompleted).toBe(2);
  });

  it("filters by capability, and by health before or after the event", async () => {
    const { registry, clock } = await createTestRegistry();
    const { events, listener } = collector();
    await registry.watch({ ...NO_FILTER, capabilities: ["coder"], healthStatuses: ["healthy"] }, 0, listener);
    await registry.registerWorker({ ...coder, nodeId: "painter-node", capabilities: ["painter"] });
    const worker = await registry.registerWorker(coder);
    clock.advance(10 * MINUTE);
    await registry.tick();
    clock.advance(6 * MINUTE);
    await registry.tick();
    // healthy -> degraded is seen (it was healthy before); degraded -> unhealthy is not.
    expect(summary(events)).toEqual(["2 registered healthy", "4 health_changed degraded"]);
    expect(events.every((e) => e.worker.id === worker.id)).toBe(true);
  });

  it("answers OUT_OF_RANGE for a revision older than the retention window", async () => {
    const { registry, clock } = await createTestRegistry({ eventTtlMs: MINUTE });
    const worker = await registry.registerWorker(coder);
    await registry.updateTaskCount(worker.id, 1);
    clock.advance(2 * MINUTE);
    await registry.updateTaskCount(worker.id, 1);
    await registry.pruneEventLog();
    await expect(registry.watch(NO_FILTER, 1, () => {})).rejects.toThrow(RevisionCompactedError);
    await expect(registry.watch(NO_FILTER, 2, () => {})).rejects.toThrow(/revision 2 is no longer in the event log \(the oldest kept is 3\)/);
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 3, listener);
    expect(events.map((e) => e.revision)).toEqual([3]);
  });

  it("removal by cleanup is an event too", async () => {
    const { registry, clock } = await createTestRegistry({ maxEvictionShare: 1 });
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 0, listener);
    await registry.registerWorker(coder);
    clock.advance(16 * MINUTE);
    await registry.cleanup();
    // The tick came long after both thresholds: each step is announced all the same, degraded first.
    expect(summary(events)).toEqual(["1 registered healthy", "2 health_changed degraded", "3 health_changed unhealthy", "4 removed unhealthy"]);
  });
});

describe("a replay read at the reader's pace (openWatch)", () => {
  const revisionsOf = (events: readonly WorkerEvent[] | undefined) => events?.map((e) => e.revision);

  it("a watcher resuming far back reads the log in pages, queues no live event meanwhile, and goes live with no gap or repeat", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder);
    for (let i = 0; i < 24; i++) await registry.updateTaskCount(worker.id, i % 2 === 0 ? 1 : -1);
    const live = collector();
    const watch = registry.openWatch(NO_FILTER, 2, live.listener);
    expect(revisionsOf(await watch.nextPage(10))).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // Events written during the replay are in the log: the replay reads them, nothing is queued for them.
    await registry.updateTaskCount(worker.id, 1);
    await registry.updateTaskCount(worker.id, -1);
    expect(live.events).toEqual([]);
    expect(revisionsOf(await watch.nextPage(10))).toEqual([12, 13, 14, 15, 16, 17, 18, 19, 20, 21]);
    expect(revisionsOf(await watch.nextPage(10))).toEqual([22, 23, 24, 25, 26, 27]);
    expect(live.events).toEqual([]);
    // Caught up: the watch goes live, and the next event is the one after the last replayed.
    expect(await watch.nextPage(10)).toBeUndefined();
    await registry.updateTaskCount(worker.id, 1);
    await registry.recordTaskCompletion(worker.id, true, 5);
    expect(revisionsOf(live.events)).toEqual([28, 29]);
    watch.close();
    await registry.updateTaskCount(worker.id, -1);
    expect(revisionsOf(live.events)).toEqual([28, 29]);
  });

  it("a filtered replay skips what does not match and still meets the live events exactly", async () => {
    const { registry } = await createTestRegistry();
    const coderWorker = await registry.registerWorker(coder);
    const painter = await registry.registerWorker({ ...coder, nodeId: "painter-node", capabilities: ["painter"] });
    for (let i = 0; i < 6; i++) await registry.updateTaskCount(i % 2 === 0 ? coderWorker.id : painter.id, 1);
    const live = collector();
    const watch = registry.openWatch({ ...NO_FILTER, capabilities: ["painter"] }, 1, live.listener);
    const replayed: WorkerEvent[] = [];
    for (let page = await watch.nextPage(3); page !== undefined; page = await watch.nextPage(3)) replayed.push(...page);
    await registry.updateTaskCount(coderWorker.id, -1);
    await registry.updateTaskCount(painter.id, -1);
    expect(revisionsOf(replayed)).toEqual([2, 4, 6, 8]);
    expect(revisionsOf(live.events)).toEqual([10]);
    expect([...replayed, ...live.events].every((e) => e.worker.id === painter.id)).toBe(true);
  });

  it("pruning in the middle of a replay answers OUT_OF_RANGE for the next page, naming the oldest revision kept", async () => {
    const { registry, clock } = await createTestRegistry({ eventTtlMs: MINUTE });
    const worker = await registry.registerWorker(coder);
    for (let i = 0; i < 5; i++) await registry.updateTaskCount(worker.id, i % 2 === 0 ? 1 : -1);
    const live = collector();
    const watch = registry.openWatch(NO_FILTER, 1, live.listener);
    expect(revisionsOf(await watch.nextPage(2))).toEqual([1, 2]);
    clock.advance(2 * MINUTE);
    await registry.updateTaskCount(worker.id, 1);
    await registry.pruneEventLog();
    await expect(watch.nextPage(2)).rejects.toThrow(new RevisionCompactedError(3, 7));
    expect(live.events).toEqual([]);
  });

  it("pruning that empties the rest of the log mid-replay answers OUT_OF_RANGE too, instead of reading empty pages for ever", async () => {
    const { registry, clock } = await createTestRegistry({ eventTtlMs: MINUTE });
    const worker = await registry.registerWorker(coder);
    for (let i = 0; i < 3; i++) await registry.updateTaskCount(worker.id, i % 2 === 0 ? 1 : -1);
    const watch = registry.openWatch(NO_FILTER, 1, () => {});
    expect(revisionsOf(await watch.nextPage(2))).toEqual([1, 2]);
    clock.advance(2 * MINUTE);
    await registry.pruneEventLog();
    await expect(watch.nextPage(2)).rejects.toThrow(RevisionCompactedError);
  });
});

describe("a start revision in the future", () => {
  it("a start_revision beyond the current revision + 1 answers OUT_OF_RANGE naming the current revision, instead of waiting silently", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder);
    await registry.updateTaskCount(worker.id, 1);
    await expect(registry.watch(NO_FILTER, 4, () => {})).rejects.toThrow(FutureRevisionError);
    expect(() => registry.openWatch(NO_FILTER, 1_000_000, () => {})).toThrow(
      "start_revision 1000000 is beyond the current revision 2: watch from at most 3 (the next event), or from 0 for new events only",
    );
    // The next revision itself is the usual resume point after a listing: accepted, and live at once.
    const { events, listener } = collector();
    await registry.watch(NO_FILTER, 3, listener);
    await registry.updateTaskCount(worker.id, 1);
    expect(events.map((e) => e.revision)).toEqual([3]);
  });
});

describe("instant failure detection", () => {
  it("a failed last stream degrades the worker at once, with an event; its next heartbeat heals it", async () => {
    const { registry, clock } = await createTestRegistry();
    const { events, listener } = collector();
    const worker = await registry.registerWorker(coder);
    await registry.watch(NO_FILTER, 0, listener);
    registry.heartbeatAck(worker.id);
    registry.streamBound(worker.id);
    registry.streamBound(worker.id);
    registry.streamEnded(worker.id, true);
    expect(registry.getWorker(worker.id).healthStatus).toBe("healthy");
    registry.streamEnded(worker.id, true);
    expect(registry.getWorker(worker.id).healthStatus).toBe("degraded");
    await registry.tick();
    expect(summary(events)).toEqual(["2 health_changed degraded"]);
    // The thresholds still decide the rest: unhealthy 15 minutes after the last heartbeat, not sooner.
    clock.advance(15 * MINUTE);
    expect(registry.getWorker(worker.id).healthStatus).toBe("degraded");
    clock.advance(1);
    expect(registry.getWorker(worker.id).healthStatus).toBe("unhealthy");
    registry.heartbeatAck(worker.id);
    expect(registry.getWorker(worker.id).healthStatus).toBe("healthy");
  });

  it("a clean end of a stream is not a failure", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder);
    registry.streamBound(worker.id);
    registry.streamEnded(worker.id, false);
    expect(registry.getWorker(worker.id).healthStatus).toBe("healthy");
  });
});
