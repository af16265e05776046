import { afterEach, describe, expect, it, vi } from "vitest";
import { ChangeFeed } from "../../src/domain/change-feed.js";
import { InvalidArgumentError, TaskCountOutOfRangeError, WorkerNotFoundError } from "../../src/domain/errors.js";
import { Fleet } from "../../src/domain/fleet.js";
import { silentLogger } from "../../src/domain/logger.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import type { RegistryStore } from "../../src/domain/registry-store.js";
import { TaskAccounting } from "../../src/domain/task-accounting.js";
import type { CommittedEvent } from "../../src/domain/worker-events.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { workerRecord } from "../support/worker-records.js";

const A = "worker-1767225600000-a";
const B = "worker-1767225600000-b";
const stores: SqliteStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** TaskAccounting on a real SQLite store; `shared` presents the same store as one other replicas also write. */
async function setup(shared = false) {
  const clock = new FakeClock();
  const options = compileRegistryOptions({ limits: { maxConcurrentTasksLimit: 100, maxTaskDurationMs: 60_000 } });
  const sqlite = openSqliteStore({ path: ":memory:" });
  stores.push(sqlite);
  const store: RegistryStore = shared ? new Proxy(sqlite, { get: (target, key) => (key === "shared" ? true : Reflect.get(target, key, target)) }) : sqlite;
  const fleet = new Fleet(options, !shared);
  const feed = new ChangeFeed(store, (event) => void fleet.apply(event, clock.monotonic(), clock.now()), () => Promise.resolve(0), silentLogger, () => clock.now(), 0);
  const accounting = new TaskAccounting({ store, fleet, feed, clock, options });
  const offer = async (committed: Promise<{ readonly events: readonly CommittedEvent[] }>) => feed.offer((await committed).events);
  await offer(sqlite.registerWorker(workerRecord({ id: A, maxConcurrentTasks: 3 }), clock.now()));
  const stored = async (id: string) => (await sqlite.load()).workers.find((w) => w.id === id);
  return { clock, sqlite, fleet, feed, accounting, offer, stored };
}

describe("TaskAccounting.updateTaskCount", () => {
  it("adds the delta, commits it, and answers with the worker as it is now", async () => {
    const { accounting, fleet, stored } = await setup();
    const view = await accounting.updateTaskCount(A, 2);
    expect(view).toMatchObject({ id: A, currentTasks: 2, availableCapacity: 1, healthStatus: "healthy" });
    expect(fleet.totals().used).toBe(2);
    expect(await stored(A)).toMatchObject({ currentTasks: 2 });
    expect(await accounting.updateTaskCount(A, -1)).toMatchObject({ currentTasks: 1 });
  });

  it("refuses a count above max_concurrent_tasks or below zero, and writes nothing", async () => {
    const { accounting, sqlite } = await setup();
    await accounting.updateTaskCount(A, 3);
    const head = await sqlite.headRevision();
    await expect(accounting.updateTaskCount(A, 1)).rejects.toThrow(new TaskCountOutOfRangeError(A, 3, 1, 3));
    await expect(accounting.updateTaskCount(A, -4)).rejects.toThrow(TaskCountOutOfRangeError);
    expect(await sqlite.headRevision()).toBe(head);
  });

  it("refuses to free slots that reservations hold: those are ReleaseWorker's", async () => {
    const { accounting, sqlite, clock, offer, fleet } = await setup();
    await offer(sqlite.acquireSlot({ id: "rsv-1", workerId: A, createdAtMs: clock.now(), expiresAtMs: clock.now() + 60_000 }, clock.now()));
    expect(fleet.get(A)).toMatchObject({ currentTasks: 1, reservedTasks: 1 });
    const writes = vi.spyOn(sqlite, "adjustTaskCount");
    await expect(accounting.updateTaskCount(A, -1)).rejects.toThrow(/outside 1\.\.3 \(1 held by AcquireWorker reservations/);
    // Refused from the read model: an impossible change does not cost a write.
    expect(writes).not.toHaveBeenCalled();
    expect(await accounting.updateTaskCount(A, 2)).toMatchObject({ currentTasks: 3 });
  });

  it("on a store other replicas write, the store's own check refuses what the read model cannot know", async () => {
    const { accounting, sqlite, clock, fleet } = await setup(true);
    // Another replica took two slots; this one has not applied that yet.
    await sqlite.adjustTaskCount(A, 2, clock.now());
    expect(fleet.get(A)!.currentTasks).toBe(0);
    await expect(accounting.updateTaskCount(A, 2)).rejects.toThrow(new TaskCountOutOfRangeError(A, 2, 2, 3));
    expect((await sqlite.load()).workers[0]).toMatchObject({ currentTasks: 2 });
  });

  it("validates the delta and the worker id, naming the field", async () => {
    const { accounting } = await setup();
    await expect(accounting.updateTaskCount(A, 1.5)).rejects.toThrow(new InvalidArgumentError("delta", "must be between -100 and 100, got 1.5"));
    await expect(accounting.updateTaskCount(A, 101)).rejects.toThrow(InvalidArgumentError);
    await expect(accounting.updateTaskCount("nope", 1)).rejects.toThrow(/^worker_id must look like/);
  });

  it("an unknown worker is not found; a removed one is not found with the reason it left", async () => {
    const { accounting, sqlite, clock, offer } = await setup();
    await expect(accounting.updateTaskCount(B, 1)).rejects.toThrow(new WorkerNotFoundError(B));
    await offer(sqlite.unregisterWorker(A, clock.now()));
    await expect(accounting.updateTaskCount(A, 1)).rejects.toThrow(new WorkerNotFoundError(A, "unregistered"));
  });

  it("a draining worker taken to zero tasks is removed, and the answer shows it as its last event did", async () => {
    const { accounting, sqlite, clock, offer, fleet } = await setup();
    await accounting.updateTaskCount(A, 1);
    await offer(sqlite.changeState(A, { to: "draining", deadlineMs: clock.now() + 60_000 }, clock.now()));
    const view = await accounting.updateTaskCount(A, -1);
    expect(view).toMatchObject({ id: A, currentTasks: 0, state: "draining" });
    expect(fleet.get(A)).toBeUndefined();
    expect(fleet.removalOf(A)).toBe("drained");
  });
});

describe("TaskAccounting.recordTaskCompletion", () => {
  it("adds one completion to the metrics, success or failure, and leaves the task count alone", async () => {
    const { accounting, fleet, stored } = await setup();
    await accounting.updateTaskCount(A, 1);
    await accounting.recordTaskCompletion(A, true, 1_000);
    const view = await accounting.recordTaskCompletion(A, false, 3_000);
    expect(view).toMatchObject({ currentTasks: 1, successRate: 0.5, metrics: { tasksCompleted: 1, tasksFailedCount: 1, averageTaskDurationMs: 2_000 } });
    expect(fleet.totals()).toMatchObject({ completed: 1, failed: 1, used: 1 });
    expect(await stored(A)).toMatchObject({ tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 4_000 });
  });

  it("moves the worker in the ranking: a slow, failing worker ranks below a fresh one", async () => {
    const { accounting, sqlite, clock, offer, fleet } = await setup();
    await offer(sqlite.registerWorker(workerRecord({ id: B, maxConcurrentTasks: 3 }), clock.now()));
    expect([...fleet.ranked(["coder"])].map((w) => w.id)).toEqual([A, B]);
    await accounting.recordTaskCompletion(A, false, 50_000);
    expect([...fleet.ranked(["coder"])].map((w) => w.id)).toEqual([B, A]);
  });

  it("refuses a duration that is negative or beyond the limit, and an unknown worker", async () => {
    const { accounting, sqlite } = await setup();
    const head = await sqlite.headRevision();
    await expect(accounting.recordTaskCompletion(A, true, -1)).rejects.toThrow(new InvalidArgumentError("duration_ms", "must be a finite number between 0 and 60000, got -1"));
    await expect(accounting.recordTaskCompletion(A, true, 60_001)).rejects.toThrow(InvalidArgumentError);
    await expect(accounting.recordTaskCompletion(B, true, 1)).rejects.toThrow(WorkerNotFoundError);
    expect(await sqlite.headRevision()).toBe(head);
  });

  it("a worker removed by another writer before the write is not found, not answered stale", async () => {
    const { accounting, sqlite, clock } = await setup(true);
    await sqlite.unregisterWorker(A, clock.now());
    await expect(accounting.recordTaskCompletion(A, true, 1)).rejects.toThrow(WorkerNotFoundError);
  });
});
