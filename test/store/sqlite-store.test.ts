import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, StoreUnavailableError } from "../../src/domain/errors.js";
import {
  DuplicateWorkerIdError,
  type EventDraft,
  type ReservationRecord,
  type StoredEvent,
} from "../../src/domain/registry-store.js";
import type { WorkerRecord } from "../../src/domain/worker-record.js";
import { latestSchemaVersion, migrations } from "../../src/store/migrations.js";
import { openSqliteStore, SqliteStore, storeSql, type SqliteStoreOptions } from "../../src/store/sqlite-store.js";

let dir: string;
let file: string;
let toClose: Array<() => unknown>;
let draftCount: number;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sqlite-store-test-"));
  file = path.join(dir, "registry.db");
  toClose = [];
  draftCount = 0;
});

afterEach(async () => {
  for (const close of toClose.reverse()) await Promise.resolve(close()).catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

function openStore(options: Partial<SqliteStoreOptions> = {}): SqliteStore {
  const store = openSqliteStore({ path: file, ...options });
  toClose.push(() => store.close());
  return store;
}

/** Adopts a connection the test opened itself (e.g. read-only, or with a page budget). */
function adopt(db: Database.Database): SqliteStore {
  const store = new SqliteStore(db);
  toClose.push(() => store.close());
  return store;
}

/** A second, raw connection to the same file: sees only what was committed. */
function rawConnection(): Database.Database {
  const db = new Database(file);
  toClose.push(() => db.close());
  return db;
}

function worker(id: string, overrides: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id,
    nodeId: `node-of-${id}`,
    capabilities: ["gpu", "cpu"],
    maxConcurrentTasks: 4,
    currentTasks: 0,
    tasksCompleted: 0,
    tasksFailed: 0,
    totalTaskDurationMs: 0,
    registeredAtMs: 1_000,
    lastHeartbeatAtMs: 1_000,
    tokenHash: "",
    registeredBy: null,
    ...overrides,
  };
}

/** A distinct event draft: each call gets its own payload and time. */
function draft(workerId: string, overrides: Partial<EventDraft> = {}): EventDraft {
  draftCount += 1;
  return {
    type: "updated",
    workerId,
    occurredAtMs: 1_000 + draftCount,
    payload: JSON.stringify({ workerId, n: draftCount }),
    ...overrides,
  };
}

function reservation(id: string, workerId: string, overrides: Partial<ReservationRecord> = {}): ReservationRecord {
  return { id, workerId, createdAtMs: 2_000, expiresAtMs: 32_000, ...overrides };
}

function outcome(success: boolean, durationMs: number, atMs = 3_000) {
  return { success, durationMs, atMs };
}

/** Every row of every table, read through a separate connection. */
function snapshot(): unknown {
  const db = rawConnection();
  const tables = ["workers", "registry_meta", "events", "reservations"];
  return Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all()]));
}

/** The committed revision counter (0 if none was ever written). */
/** The revision as the store defines it: the log's last, or the one kept in meta once pruning emptied the log. */
function storedRevision(): number {
  const db = rawConnection();
  const meta = db.prepare("SELECT value FROM registry_meta WHERE key = 'revision'").pluck().get() as number | undefined;
  const last = db.prepare("SELECT max(revision) FROM events").pluck().get() as number | null;
  return Math.max(meta ?? 0, last ?? 0);
}

/** Every committed event, oldest first, as the log keeps it. */
function eventLog(): StoredEvent[] {
  return rawConnection()
    .prepare(
      `SELECT revision, type, worker_id AS workerId, occurred_at_ms AS occurredAtMs, payload FROM events ORDER BY revision`,
    )
    .all() as StoredEvent[];
}

interface WorkerCounts {
  currentTasks: number;
  tasksCompleted: number;
  tasksFailed: number;
  totalTaskDurationMs: number;
}

/** A worker's slot and completion counters as committed. */
function workerRow(id: string): WorkerCounts | undefined {
  return rawConnection()
    .prepare(
      `SELECT current_tasks AS currentTasks, tasks_completed AS tasksCompleted, tasks_failed AS tasksFailed,
        total_task_duration_ms AS totalTaskDurationMs FROM workers WHERE id = ?`,
    )
    .get(id) as WorkerCounts | undefined;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable("expected a rejection"),
    (error: unknown) => error,
  );
}

/**
 * Worker "a" (4 slots) with active reservations r1 and r2, reservation r0
 * released at 1_500, and 5 events; every write of {@link everyWrite} then has
 * something to change.
 */
async function seed(store: SqliteStore): Promise<void> {
  await store.insertWorker(worker("a"), [draft("a", { type: "registered", occurredAtMs: 500 })]);
  await store.acquireSlot(reservation("r0", "a"), [draft("a")]);
  await store.acquireSlot(reservation("r1", "a"), [draft("a")]);
  await store.acquireSlot(reservation("r2", "a"), [draft("a")]);
  await store.releaseReservation("r0", outcome(true, 1, 1_500), [draft("a")]);
}

/** Every write of the interface, each of which changes something on a {@link seed}ed store and must fail on unwritable storage. */
function everyWrite(store: SqliteStore): Array<[string, () => Promise<unknown>]> {
  return [
    ["insertWorker", () => store.insertWorker(worker("new"), [draft("new", { type: "registered" })])],
    ["deleteWorkers", () => store.deleteWorkers([{ id: "a", event: draft("a", { type: "removed" }) }], [])],
    ["adjustTaskCount", () => store.adjustTaskCount("a", 1, [draft("a")])],
    ["recordCompletion", () => store.recordCompletion("a", true, 5, [draft("a")])],
    ["acquireSlot", () => store.acquireSlot(reservation("r-new", "a"), [draft("a")])],
    ["releaseReservation", () => store.releaseReservation("r1", outcome(true, 5), [draft("a")])],
    ["expireReservations", () => store.expireReservations(["r2"], 9_000, [draft("a")])],
    ["appendEvents", () => store.appendEvents([draft("a", { type: "health_changed" })])],
    ["prune", () => store.prune(1e12, 1e12, 100)],
    ["writeHeartbeats", () => store.writeHeartbeats(new Map([["a", 9_999]]), 10_000)],
  ];
}

async function expectEveryWriteUnavailable(store: SqliteStore, code: RegExp): Promise<void> {
  for (const [name, write] of everyWrite(store)) {
    const error = await rejection(write());
    expect(error, name).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause, name).toMatchObject({ code: expect.stringMatching(code) });
  }
}

describe("opening and migrations", () => {
  it("creates parent directories, enables WAL and migrates to the latest schema with STRICT tables", () => {
    file = path.join(dir, "nested", "deeper", "registry.db");
    openStore();
    const db = rawConnection();
    expect(latestSchemaVersion).toBe(5);
    expect(db.pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    const strict = db.prepare("SELECT name FROM pragma_table_list WHERE strict = 1 ORDER BY name").pluck().all();
    expect(strict).toEqual(["events", "registry_meta", "reservations", "workers"]);
  });

  it("reopens an up-to-date store without migrating again or losing data", async () => {
    const first = openStore();
    await first.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    await first.close();
    const second = openStore();
    expect(rawConnection().pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    const recovered = await second.recover({ workerTtlMs: 1_000 });
    expect(recovered.workers.map((w) => w.id)).toEqual(["a"]);
    expect(recovered.revision).toBe(1);
    expect(second.integrityCheck()).toBe("ok");
  });

  it("migrates a version-1 database to the latest version, keeping its workers (with no token) and starting the log at revision 0", async () => {
    const v1 = new Database(file);
    const [first] = migrations;
    if (first === undefined) throw new Error("no migrations");
    first.up(v1);
    v1.pragma("user_version = 1");
    v1.prepare(
      `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, current_tasks, tasks_completed, tasks_failed,
        total_task_duration_ms, registered_at_ms, last_heartbeat_at_ms)
       VALUES ('old-timer', 'n', '["x"]', 2, 1, 3, 1, 40, 100, 200)`,
    ).run();
    v1.prepare("INSERT INTO worker_capabilities (capability, worker_id) VALUES ('x', 'old-timer')").run();
    v1.close();

    const store = openStore();
    expect(rawConnection().pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    expect(await store.recover({ workerTtlMs: 1_000 })).toEqual({
      workers: [
        worker("old-timer", {
          nodeId: "n",
          capabilities: ["x"],
          maxConcurrentTasks: 2,
          currentTasks: 1,
          tasksCompleted: 3,
          tasksFailed: 1,
          totalTaskDurationMs: 40,
          registeredAtMs: 100,
          lastHeartbeatAtMs: 200,
        }),
      ],
      expired: [],
      reservations: [],
      lastAliveAtMs: null,
      revision: 0,
      compactedRevision: 0,
    });
    expect(await store.acquireSlot(reservation("r1", "old-timer"), [draft("old-timer")])).toEqual({
      status: "ok",
      currentTasks: 2,
      revision: 1,
    });
  });

  it("refuses a database written by a newer schema version and leaves it alone", async () => {
    await openStore().close();
    rawConnection().pragma(`user_version = ${latestSchemaVersion + 1}`);
    expect(() => openStore()).toThrow(/newer than this build supports/);
    expect(rawConnection().pragma("user_version", { simple: true })).toBe(latestSchemaVersion + 1);
  });

  it("rejects invalid options with ConfigError", () => {
    expect(() => openStore({ synchronous: "off" as "full" })).toThrow(ConfigError);
    expect(() => openStore({ busyTimeoutMs: -1 })).toThrow(ConfigError);
    expect(() => openStore({ busyTimeoutMs: 1.5 })).toThrow(ConfigError);
  });

  it("works in memory", async () => {
    const store = openStore({ path: ":memory:", synchronous: "full" });
    expect(await store.insertWorker(worker("a"), [draft("a", { type: "registered" })])).toEqual({ replaced: [], revision: 1 });
    expect(await store.recover({ workerTtlMs: 1 })).toEqual({
      workers: [worker("a")],
      expired: [],
      reservations: [],
      lastAliveAtMs: null,
      revision: 1,
      compactedRevision: 0,
    });
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("workers", () => {
  it("round-trips a worker, keeping its capabilities in registration order", async () => {
    const record = worker("a", {
      capabilities: ["zeta", "alpha", "mid"],
      maxConcurrentTasks: 3,
      currentTasks: 2,
      tasksCompleted: 5,
      tasksFailed: 1,
      totalTaskDurationMs: 123.5,
      registeredAtMs: 1_700_000_000_000,
      lastHeartbeatAtMs: 1_700_000_000_500,
    });
    const first = openStore();
    expect(await first.insertWorker(record, [draft("a", { type: "registered" })])).toEqual({ replaced: [], revision: 1 });
    await first.close();
    const recovered = await openStore().recover({ workerTtlMs: 1_000 });
    expect(recovered).toEqual({
      workers: [record],
      expired: [],
      reservations: [],
      lastAliveAtMs: null,
      revision: 1,
      compactedRevision: 0,
    });
  });

  it("rejects a duplicate id with DuplicateWorkerIdError, keeps the original and rolls back the events", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { capabilities: ["x"] }), [draft("a", { type: "registered" })]);
    const before = snapshot();
    const error = await rejection(
      store.insertWorker(worker("a", { nodeId: "other", capabilities: ["y"] }), [
        draft("a", { type: "registered" }),
        draft("a"),
      ]),
    );
    expect(error).toBeInstanceOf(DuplicateWorkerIdError);
    expect(error).toMatchObject({ workerId: "a" });
    expect(snapshot()).toEqual(before);
    expect(storedRevision()).toBe(1);
    // The refused insert did not use up revisions 2 and 3.
    expect(await store.appendEvents([draft("a", { type: "health_changed" })])).toBe(2);
  });

  it("adjusts the task count only within 0..max_concurrent_tasks, writing events only for a change", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 2 }), [draft("a", { type: "registered" })]);
    const currentTasks = (): unknown => rawConnection().prepare("SELECT current_tasks FROM workers").pluck().get();

    expect(await store.adjustTaskCount("a", 1, [draft("a")])).toEqual({ status: "ok", currentTasks: 1, revision: 2 });
    const outOfRange = (currentTasks: number) => ({ status: "out-of-range", currentTasks, maxConcurrentTasks: 2, reservedTasks: 0, revision: 2 });
    expect(await store.adjustTaskCount("a", 2, [draft("a")])).toEqual(outOfRange(1));
    expect(await store.adjustTaskCount("a", -2, [draft("a")])).toEqual(outOfRange(1));
    expect(currentTasks()).toBe(1);
    expect(storedRevision()).toBe(2);

    expect(await store.adjustTaskCount("a", 1, [draft("a")])).toEqual({ status: "ok", currentTasks: 2, revision: 3 });
    expect(await store.adjustTaskCount("a", 1, [draft("a")])).toEqual({ ...outOfRange(2), revision: 3 });
    expect(await store.adjustTaskCount("a", -2, [draft("a")])).toEqual({ status: "ok", currentTasks: 0, revision: 4 });
    expect(await store.adjustTaskCount("a", -1, [draft("a")])).toEqual({ ...outOfRange(0), revision: 4 });
    expect(currentTasks()).toBe(0);
    expect(await store.adjustTaskCount("ghost", 1, [draft("ghost")])).toEqual({ status: "not-found", revision: 4 });
    expect(eventLog().map((e) => e.revision)).toEqual([1, 2, 3, 4]);
  });

  it("adds completions to the counters and reports a missing worker as undefined", async () => {
    const store = openStore();
    await store.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    expect(await store.recordCompletion("a", true, 100, [draft("a")])).toEqual({
      counters: { tasksCompleted: 1, tasksFailed: 0, totalTaskDurationMs: 100 },
      revision: 2,
    });
    expect(await store.recordCompletion("a", false, 50.5, [draft("a")])).toEqual({
      counters: { tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 150.5 },
      revision: 3,
    });
    expect(await store.recordCompletion("ghost", true, 1, [draft("ghost")])).toEqual({ counters: undefined, revision: 3 });
    expect(eventLog().map((e) => e.workerId)).toEqual(["a", "a", "a"]);
    const [a] = (await store.recover({ workerTtlMs: 1 })).workers;
    expect(a).toMatchObject({ tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 150.5 });
  });

  it("deletes workers together with their capability rows, writing the removal event of each deleted worker only", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { capabilities: ["x", "y"] }), [draft("a", { type: "registered" })]);
    await store.insertWorker(worker("b", { capabilities: ["x"] }), [draft("b", { type: "registered" })]);
    await store.insertWorker(worker("c", { capabilities: ["z"] }), [draft("c", { type: "registered" })]);

    const removedA = draft("a", { type: "removed" });
    const removedC = draft("c", { type: "removed" });
    expect(
      await store.deleteWorkers(
        [
          { id: "a", event: removedA },
          { id: "c", event: removedC },
          { id: "ghost", event: draft("ghost", { type: "removed" }) },
          { id: "a", event: draft("a", { type: "removed" }) },
        ],
        [],
      ),
    ).toEqual({ deleted: ["a", "c"], revision: 5 });
    expect((await store.recover({ workerTtlMs: 1 })).workers.map((w) => w.id)).toEqual(["b"]);
    expect(eventLog().slice(3)).toEqual([
      { ...removedA, revision: 4 },
      { ...removedC, revision: 5 },
    ]);
    expect(await store.deleteWorkers([], [])).toEqual({ deleted: [], revision: 5 });
    const removedB = draft("b", { type: "unregistered" });
    expect(await store.deleteWorkers([{ id: "b", event: removedB }], [])).toEqual({ deleted: ["b"], revision: 6 });
    expect(await store.deleteWorkers([{ id: "b", event: draft("b", { type: "unregistered" }) }], [])).toEqual({
      deleted: [],
      revision: 6,
    });
    expect(eventLog().map((e) => e.revision)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await store.recover({ workerTtlMs: 1 })).workers).toEqual([]);
  });
});

describe("heartbeats and recovery", () => {
  it("writes heartbeats of existing workers only, durably across close and reopen", async () => {
    const first = openStore();
    await first.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    await first.insertWorker(worker("b"), [draft("b", { type: "registered" })]);
    await first.deleteWorkers([{ id: "b", event: draft("b", { type: "unregistered" }) }], []);
    await first.writeHeartbeats(
      new Map([
        ["a", 5_000],
        ["b", 6_000],
        ["ghost", 7_000],
      ]),
      8_000,
    );
    await first.close();

    const recovered = await openStore().recover({ workerTtlMs: 60_000 });
    expect(recovered).toEqual({
      workers: [worker("a", { lastHeartbeatAtMs: 5_000 })],
      expired: [],
      reservations: [],
      lastAliveAtMs: 8_000,
      revision: 3,
      compactedRevision: 0,
    });
  });

  it("expires nothing on a store that never wrote heartbeats", async () => {
    const store = openStore();
    await store.insertWorker(worker("ancient", { lastHeartbeatAtMs: 0 }), [draft("ancient", { type: "registered" })]);
    expect(await store.recover({ workerTtlMs: 1 })).toEqual({
      workers: [worker("ancient", { lastHeartbeatAtMs: 0 })],
      expired: [],
      reservations: [],
      lastAliveAtMs: null,
      revision: 1,
      compactedRevision: 0,
    });
  });

  it("returns workers expired relative to the last alive time in expired, without deleting them, and the rest oldest first", async () => {
    const first = openStore();
    for (const [id, lastHeartbeatAtMs] of [
      ["late", 12_000],
      ["old", 8_999],
      ["edge", 9_000],
      ["older", 4_000],
      ["recent", 9_500],
    ] as const) {
      await first.insertWorker(worker(id, { lastHeartbeatAtMs, capabilities: [id] }), [draft(id, { type: "registered" })]);
    }
    await first.writeHeartbeats(new Map(), 10_000);
    await first.close();

    const second = openStore();
    const before = snapshot();
    const recovered = await second.recover({ workerTtlMs: 1_000 });
    expect(recovered.expired).toEqual([
      worker("older", { lastHeartbeatAtMs: 4_000, capabilities: ["older"] }),
      worker("old", { lastHeartbeatAtMs: 8_999, capabilities: ["old"] }),
    ]);
    expect(recovered.lastAliveAtMs).toBe(10_000);
    expect(recovered.revision).toBe(5);
    expect(recovered.workers.map((w) => [w.id, w.lastHeartbeatAtMs])).toEqual([
      ["edge", 9_000],
      ["recent", 9_500],
      ["late", 12_000],
    ]);
    // Recovery only reads: the expired workers are still there for the caller to remove with events.
    expect(snapshot()).toEqual(before);
    expect((await second.recover({ workerTtlMs: 1_000 })).expired.map((w) => w.id)).toEqual(["older", "old"]);
  });

  it("finds expired workers through the last-heartbeat index", () => {
    openStore();
    const plan = rawConnection()
      .prepare(`EXPLAIN QUERY PLAN ${storeSql.listExpiredWorkers}`)
      .all(0) as Array<{ detail: string }>;
    expect(plan.map((step) => step.detail).join("\n")).toMatch(/USING (COVERING )?INDEX workers_last_heartbeat_idx/);
  });
});

describe("revisions and the event log", () => {
  it("numbers events with strictly increasing revisions across operations and across close and reopen", async () => {
    const first = openStore();
    const revisions: number[] = [];
    revisions.push((await first.insertWorker(worker("a"), [draft("a", { type: "registered" }), draft("a")])).revision);
    revisions.push((await first.insertWorker(worker("b"), [draft("b", { type: "registered" })])).revision);
    revisions.push((await first.adjustTaskCount("a", 1, [draft("a")])).revision);
    revisions.push((await first.recordCompletion("a", true, 3, [draft("a")])).revision);
    revisions.push((await first.acquireSlot(reservation("r1", "a"), [draft("a")])).revision);
    revisions.push((await first.acquireSlot(reservation("r2", "a"), [draft("a")])).revision);
    revisions.push((await first.releaseReservation("r1", outcome(true, 5), [draft("a")])).revision);
    revisions.push((await first.expireReservations(["r2"], 4_000, [draft("a"), draft("a")])).revision);
    revisions.push(await first.appendEvents([draft("b", { type: "health_changed" })]));
    revisions.push((await first.deleteWorkers([{ id: "b", event: draft("b", { type: "removed" }) }], [])).revision);
    expect(revisions).toEqual([2, 3, 4, 5, 6, 7, 8, 10, 11, 12]);
    // An operation given no events changes its data but not the revision.
    expect(await first.adjustTaskCount("a", 1, [])).toEqual({ status: "ok", currentTasks: 2, revision: 12 });
    expect(await first.appendEvents([])).toBe(12);
    await first.close();

    const second = openStore();
    expect((await second.recover({ workerTtlMs: 1_000 })).revision).toBe(12);
    expect(await second.appendEvents([draft("a", { type: "health_changed" }), draft("a", { type: "health_changed" })])).toBe(14);
    expect((await second.readEvents(1, 100)).map((e) => e.revision)).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
    expect(storedRevision()).toBe(14);
  });

  it("writes no event and keeps the revision for an operation that changes nothing", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 1 }), [draft("a", { type: "registered" })]);
    await store.acquireSlot(reservation("r0", "a"), [draft("a")]);
    await store.releaseReservation("r0", outcome(true, 1), [draft("a")]);
    await store.acquireSlot(reservation("r1", "a"), [draft("a")]);
    const before = snapshot();
    const revision = storedRevision();
    expect(revision).toBe(4);

    expect(await store.adjustTaskCount("a", 1, [draft("a")])).toEqual({
      status: "out-of-range",
      currentTasks: 1,
      maxConcurrentTasks: 1,
      reservedTasks: 1,
      revision,
    });
    // The slot r1 holds is ReleaseWorker's to free, not UpdateTaskCount's.
    expect(await store.adjustTaskCount("a", -1, [draft("a")])).toEqual({
      status: "out-of-range",
      currentTasks: 1,
      maxConcurrentTasks: 1,
      reservedTasks: 1,
      revision,
    });
    expect(await store.adjustTaskCount("ghost", 1, [draft("ghost")])).toEqual({ status: "not-found", revision });
    expect(await store.recordCompletion("ghost", true, 1, [draft("ghost")])).toEqual({ counters: undefined, revision });
    expect(await store.acquireSlot(reservation("r2", "a"), [draft("a")])).toEqual({ status: "full", revision });
    expect(await store.acquireSlot(reservation("r3", "ghost"), [draft("ghost")])).toEqual({ status: "not-found", revision });
    expect(await store.releaseReservation("nope", outcome(true, 1), [draft("a")])).toEqual({ status: "not-found", revision });
    expect(await store.releaseReservation("r0", outcome(true, 1), [draft("a")])).toEqual({
      status: "already-released",
      workerId: "a",
      revision,
    });
    expect(await store.expireReservations(["r0", "nope"], 9_000, [draft("a")])).toEqual({ expired: [], revision });
    expect(await store.deleteWorkers([{ id: "ghost", event: draft("ghost", { type: "removed" }) }], [])).toEqual({
      deleted: [],
      revision,
    });

    expect(snapshot()).toEqual(before);
    expect(await store.appendEvents([draft("a", { type: "health_changed" })])).toBe(revision + 1);
  });

  it("reads events from a revision, in order, with their type, worker id, time and payload, at most limit", async () => {
    const store = openStore();
    const drafts: EventDraft[] = [
      { type: "registered", workerId: "w1", occurredAtMs: 1_700_000_000_000, payload: '{"id":"w1","v":1}' },
      { type: "updated", workerId: "w1", occurredAtMs: 1_700_000_000_100, payload: '{"id":"w1","v":2}' },
      { type: "health_changed", workerId: "w2", occurredAtMs: 1_700_000_000_050, payload: "not json at all" },
      { type: "unregistered", workerId: "w1", occurredAtMs: 1_700_000_000_200, payload: "" },
      { type: "removed", workerId: "w2", occurredAtMs: 1_700_000_000_300, payload: '{"id":"w2","ünï":"✓"}' },
    ];
    expect(await store.appendEvents(drafts.slice(0, 2))).toBe(2);
    expect(await store.appendEvents(drafts.slice(2))).toBe(5);
    const stored = drafts.map((event, i) => ({ ...event, revision: i + 1 }));

    expect(await store.readEvents(1, 100)).toEqual(stored);
    expect(await store.readEvents(0, 100)).toEqual(stored);
    expect(await store.readEvents(3, 100)).toEqual(stored.slice(2));
    expect(await store.readEvents(2, 2)).toEqual(stored.slice(1, 3));
    expect(await store.readEvents(5, 1)).toEqual(stored.slice(4));
    expect(await store.readEvents(6, 100)).toEqual([]);
  });
});

describe("reservations", () => {
  it("takes a slot per reservation up to max_concurrent_tasks, then reports full; an unknown worker is not-found", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 2 }), [draft("a", { type: "registered" })]);

    expect(await store.acquireSlot(reservation("r1", "a"), [draft("a")])).toEqual({ status: "ok", currentTasks: 1, revision: 2 });
    expect(await store.acquireSlot(reservation("r2", "a"), [draft("a")])).toEqual({ status: "ok", currentTasks: 2, revision: 3 });
    expect(await store.acquireSlot(reservation("r3", "a"), [draft("a")])).toEqual({ status: "full", revision: 3 });
    expect(await store.acquireSlot(reservation("r4", "ghost"), [draft("ghost")])).toEqual({ status: "not-found", revision: 3 });
    expect(workerRow("a")?.currentTasks).toBe(2);

    expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "active" });
    expect(await store.findReservation("r2")).toEqual({ workerId: "a", state: "active" });
    expect(await store.findReservation("r3")).toBeUndefined();
    expect(await store.findReservation("r4")).toBeUndefined();
  });

  it("releases a reservation once: frees its slot and records the outcome; a second release changes nothing", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 2 }), [draft("a", { type: "registered" })]);
    await store.acquireSlot(reservation("r1", "a"), [draft("a")]);
    await store.acquireSlot(reservation("r2", "a"), [draft("a")]);

    expect(await store.releaseReservation("r1", outcome(true, 100), [draft("a")])).toEqual({
      status: "released",
      workerId: "a",
      currentTasks: 1,
      counters: { tasksCompleted: 1, tasksFailed: 0, totalTaskDurationMs: 100 },
      revision: 4,
    });
    expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "released" });
    const before = snapshot();
    expect(await store.releaseReservation("r1", outcome(false, 7), [draft("a")])).toEqual({
      status: "already-released",
      workerId: "a",
      revision: 4,
    });
    expect(snapshot()).toEqual(before);

    expect(await store.releaseReservation("r2", outcome(false, 20.5), [draft("a")])).toEqual({
      status: "released",
      workerId: "a",
      currentTasks: 0,
      counters: { tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 120.5 },
      revision: 5,
    });
    // The freed slot can be taken again.
    expect(await store.acquireSlot(reservation("r3", "a"), [draft("a")])).toMatchObject({ status: "ok", currentTasks: 1 });
  });

  it("expires reservations, freeing their slots; a late release records the outcome without freeing another slot", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 2 }), [draft("a", { type: "registered" })]);
    await store.acquireSlot(reservation("r1", "a"), [draft("a")]);
    await store.acquireSlot(reservation("r2", "a"), [draft("a")]);

    expect(await store.expireReservations(["r1", "ghost", "r1"], 40_000, [draft("a")])).toEqual({ expired: ["r1"], revision: 4 });
    expect(workerRow("a")?.currentTasks).toBe(1);
    expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "expired" });
    expect(await store.findReservation("r2")).toEqual({ workerId: "a", state: "active" });
    expect(await store.expireReservations(["r1"], 41_000, [draft("a")])).toEqual({ expired: [], revision: 4 });
    expect(workerRow("a")?.currentTasks).toBe(1);

    expect(await store.releaseReservation("r1", outcome(true, 30_000), [draft("a")])).toEqual({
      status: "expired",
      workerId: "a",
      counters: { tasksCompleted: 1, tasksFailed: 0, totalTaskDurationMs: 30_000 },
      revision: 5,
    });
    // r2 still holds its slot.
    expect(workerRow("a")).toEqual({ currentTasks: 1, tasksCompleted: 1, tasksFailed: 0, totalTaskDurationMs: 30_000 });

    const before = snapshot();
    expect(await store.releaseReservation("r1", outcome(false, 1), [draft("a")])).toEqual({
      status: "already-released",
      workerId: "a",
      revision: 5,
    });
    expect(snapshot()).toEqual(before);
  });

  it("deletes a worker's reservations with the worker", async () => {
    const store = openStore();
    await store.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    await store.insertWorker(worker("b"), [draft("b", { type: "registered" })]);
    await store.acquireSlot(reservation("r1", "a"), [draft("a")]);
    await store.acquireSlot(reservation("r2", "a"), [draft("a")]);
    await store.releaseReservation("r2", outcome(true, 1), [draft("a")]);
    await store.acquireSlot(reservation("r3", "b"), [draft("b")]);

    await store.deleteWorkers([{ id: "a", event: draft("a", { type: "removed" }) }], []);
    expect(await store.findReservation("r1")).toBeUndefined();
    expect(await store.findReservation("r2")).toBeUndefined();
    expect(await store.findReservation("r3")).toEqual({ workerId: "b", state: "active" });
    expect(rawConnection().prepare("SELECT id FROM reservations").pluck().all()).toEqual(["r3"]);
    const revision = storedRevision();
    expect(await store.releaseReservation("r1", outcome(true, 1), [draft("a")])).toEqual({ status: "not-found", revision });
    expect(await store.expireReservations(["r1"], 50_000, [draft("a")])).toEqual({ expired: [], revision });
  });

  it("recovers only the active reservations, durably across close and reopen", async () => {
    const first = openStore();
    await first.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    await first.insertWorker(worker("b"), [draft("b", { type: "registered" })]);
    const r1 = reservation("r1", "a", { createdAtMs: 2_000, expiresAtMs: 30_000 });
    const r4 = reservation("r4", "b", { createdAtMs: 2_500, expiresAtMs: 20_000 });
    await first.acquireSlot(r1, [draft("a")]);
    await first.acquireSlot(reservation("r2", "a"), [draft("a")]);
    await first.acquireSlot(reservation("r3", "a"), [draft("a")]);
    await first.acquireSlot(r4, [draft("b")]);
    await first.releaseReservation("r2", outcome(true, 1), [draft("a")]);
    await first.expireReservations(["r3"], 33_000, [draft("a")]);
    await first.close();

    const recovered = await openStore().recover({ workerTtlMs: 60_000 });
    expect([...recovered.reservations].sort((x, y) => x.id.localeCompare(y.id))).toEqual([r1, r4]);
    expect(recovered.workers.map((w) => [w.id, w.currentTasks])).toEqual([
      ["a", 1],
      ["b", 1],
    ]);
  });
});

describe("pruning", () => {
  it("deletes at most limit events older than the cut-off and returns the compacted revision, kept across reopen", async () => {
    const first = openStore();
    expect(await first.prune(1e12, 1e12, 100)).toBe(0);
    const times = [100, 200, 300, 400, 500];
    await first.appendEvents(times.map((occurredAtMs) => draft("a", { type: "health_changed", occurredAtMs })));

    expect(await first.prune(350, 0, 2)).toBe(2);
    expect((await first.readEvents(0, 100)).map((e) => e.revision)).toEqual([3, 4, 5]);
    expect(await first.prune(350, 0, 100)).toBe(3);
    expect((await first.readEvents(0, 100)).map((e) => [e.revision, e.occurredAtMs])).toEqual([
      [4, 400],
      [5, 500],
    ]);
    // Nothing older is left: the compacted revision stays.
    expect(await first.prune(350, 0, 100)).toBe(3);
    // A cut-off at an event's own time keeps it.
    expect(await first.prune(400, 0, 100)).toBe(3);
    expect((await first.readEvents(0, 100)).map((e) => e.revision)).toEqual([4, 5]);
    await first.close();

    const second = openStore();
    expect(await second.recover({ workerTtlMs: 1_000 })).toMatchObject({ revision: 5, compactedRevision: 3 });
    // Pruning never hands a revision out again.
    expect(await second.appendEvents([draft("a", { type: "health_changed", occurredAtMs: 50 })])).toBe(6);
    expect(await second.prune(1e12, 0, 100)).toBe(6);
    expect(await second.readEvents(0, 100)).toEqual([]);
    expect(await second.recover({ workerTtlMs: 1_000 })).toMatchObject({ revision: 6, compactedRevision: 6 });
    // Not even once the log is empty.
    expect(await second.appendEvents([draft("a", { type: "health_changed" })])).toBe(7);
    expect((await second.readEvents(0, 100)).map((e) => e.revision)).toEqual([7]);
  });

  it("deletes reservations that ended before the second cut-off and keeps active ones", async () => {
    const store = openStore();
    await store.insertWorker(worker("a"), [draft("a", { type: "registered", occurredAtMs: 10 })]);
    for (const id of ["r1", "r2", "r3", "r4"]) {
      await store.acquireSlot(reservation(id, "a", { createdAtMs: 0 }), [draft("a", { occurredAtMs: 10 })]);
    }
    await store.releaseReservation("r1", outcome(true, 1, 1_000), [draft("a", { occurredAtMs: 10 })]);
    await store.expireReservations(["r2"], 2_000, [draft("a", { occurredAtMs: 10 })]);
    await store.releaseReservation("r3", outcome(true, 1, 3_000), [draft("a", { occurredAtMs: 10 })]);
    const events = eventLog();

    expect(await store.prune(0, 2_500, 100)).toBe(0);
    expect(await store.findReservation("r1")).toBeUndefined();
    expect(await store.findReservation("r2")).toBeUndefined();
    expect(await store.findReservation("r3")).toEqual({ workerId: "a", state: "released" });
    expect(await store.findReservation("r4")).toEqual({ workerId: "a", state: "active" });
    // Events are pruned by their own cut-off only.
    expect(eventLog()).toEqual(events);

    expect(await store.prune(0, 1e12, 100)).toBe(0);
    expect(await store.findReservation("r3")).toBeUndefined();
    expect(await store.findReservation("r4")).toEqual({ workerId: "a", state: "active" });
    expect(workerRow("a")?.currentTasks).toBe(1);
    // A pruned reservation is unknown: releasing it neither frees a slot nor records an outcome.
    expect(await store.releaseReservation("r1", outcome(true, 1), [draft("a")])).toMatchObject({ status: "not-found" });
    expect(workerRow("a")).toMatchObject({ currentTasks: 1, tasksCompleted: 2 });
    expect(await store.releaseReservation("r4", outcome(true, 1), [draft("a")])).toMatchObject({ status: "released", currentTasks: 0 });
  });
});

describe("storage faults", () => {
  it("rejects every write with StoreUnavailableError while another connection holds the write lock", async () => {
    const store = openStore({ busyTimeoutMs: 20 });
    await seed(store);
    const before = snapshot();
    const locker = rawConnection();
    locker.exec("BEGIN IMMEDIATE");

    await expectEveryWriteUnavailable(store, /^SQLITE_BUSY/);
    expect(await rejection(store.recover({ workerTtlMs: 1 }))).toBeInstanceOf(StoreUnavailableError);

    locker.exec("ROLLBACK");
    expect(snapshot()).toEqual(before);
    expect(await store.acquireSlot(reservation("r-new", "a"), [draft("a")])).toEqual({ status: "ok", currentTasks: 3, revision: 6 });
  });

  it("rejects every write with StoreUnavailableError on a query_only connection and changes nothing", async () => {
    await openStore().close();
    const db = new Database(file);
    const store = adopt(db);
    await seed(store);
    const before = snapshot();

    // What SQLite reports when the file or its file system turns read-only under a running store.
    db.pragma("query_only = ON");
    await expectEveryWriteUnavailable(store, /^SQLITE_READONLY/);
    expect(snapshot()).toEqual(before);

    db.pragma("query_only = OFF");
    expect(await store.acquireSlot(reservation("r-new", "a"), [draft("a")])).toEqual({ status: "ok", currentTasks: 3, revision: 6 });
    expect(await store.deleteWorkers([{ id: "a", event: draft("a", { type: "removed" }) }], [])).toEqual({ deleted: ["a"], revision: 7 });
  });

  it("rejects every write on a read-only connection to the file, changes nothing and still serves reads", async () => {
    const first = openStore();
    await seed(first);
    await first.close();
    const before = snapshot();

    // SQLite opens a file it cannot write (mode 0444, read-only mount) exactly as SQLITE_OPEN_READONLY,
    // which better-sqlite3's readonly option requests; unlike a chmod, it also holds for root.
    const store = adopt(new Database(file, { readonly: true }));
    await expectEveryWriteUnavailable(store, /^SQLITE_READONLY/);
    expect(snapshot()).toEqual(before);
    expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "active" });
    expect((await store.readEvents(1, 100)).map((e) => e.revision)).toEqual([1, 2, 3, 4, 5]);
    expect(store.integrityCheck()).toBe("ok");
  });

  it("rolls back a transaction that runs out of space half-way", async () => {
    const db = new Database(file);
    const store = adopt(db);
    await store.insertWorker(worker("a"), [draft("a", { type: "registered" })]);
    const pageCount = db.pragma("page_count", { simple: true }) as number;
    db.pragma(`max_page_count = ${pageCount + 25}`);
    // The budget holds a 40 kB row with its index entry: the worker row below fits, its 100 kB event does not.
    const bigRow = worker("big-row", { nodeId: "n".repeat(40_000), capabilities: [] });
    await store.insertWorker(bigRow, []);
    await store.deleteWorkers([{ id: bigRow.id, event: draft(bigRow.id, { type: "removed" }) }], []);
    const before = snapshot();

    const capabilities = Array.from({ length: 800 }, (_, i) => `capability-${i}-`.padEnd(50, "c"));
    const bigEvent = () => draft("big-capabilities", { type: "registered", payload: "p".repeat(100_000) });
    const error = await rejection(store.insertWorker(worker("big-capabilities", { capabilities }), [bigEvent()]));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause).toMatchObject({ code: "SQLITE_FULL" });
    expect(snapshot()).toEqual(before);

    db.pragma("max_page_count = 1000000");
    expect(await store.insertWorker(worker("big-capabilities", { capabilities }), [bigEvent()])).toEqual({ replaced: [], revision: 3 });
    expect((await store.recover({ workerTtlMs: 1 })).workers.find((w) => w.id === "big-capabilities")?.capabilities).toEqual(capabilities);
  });

  it("rolls back a batch of events that runs out of space half-way, keeping the revision", async () => {
    const db = new Database(file);
    const store = adopt(db);
    await seed(store);
    const pageCount = db.pragma("page_count", { simple: true }) as number;
    // Room for the small event, not for all four 40 kB ones after it.
    db.pragma(`max_page_count = ${pageCount + 15}`);
    const before = snapshot();

    const batch = [
      draft("a", { type: "health_changed", payload: "small" }),
      ...Array.from({ length: 4 }, () => draft("a", { type: "health_changed", payload: "p".repeat(100_000) })),
    ];
    const error = await rejection(store.appendEvents(batch));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause).toMatchObject({ code: "SQLITE_FULL" });
    expect(snapshot()).toEqual(before);

    db.pragma("max_page_count = 1000000");
    expect(await store.appendEvents(batch)).toBe(5 + batch.length);
  });

  it("rejects every call with a plain Error after close", async () => {
    const store = openStore();
    await store.close();
    await store.close();
    for (const [name, call] of [
      ...everyWrite(store),
      ["recover", () => store.recover({ workerTtlMs: 1 })] as const,
      ["readEvents", () => store.readEvents(1, 10)] as const,
      ["findReservation", () => store.findReservation("r1")] as const,
    ]) {
      const error = await rejection(call());
      expect(error, name).not.toBeInstanceOf(StoreUnavailableError);
      expect(error, name).toMatchObject({ message: "store is closed" });
    }
    expect(() => store.integrityCheck()).toThrow("store is closed");
  });
});

describe("regressions", () => {
  it("recover returns every active reservation, also of a worker that looked overdue (the registry keeps it)", async () => {
    const store = openStore();
    await store.insertWorker(worker("old", { lastHeartbeatAtMs: 1_000 }), []);
    await store.insertWorker(worker("live", { lastHeartbeatAtMs: 9_500 }), []);
    await store.acquireSlot(reservation("r-old", "old"), []);
    await store.acquireSlot(reservation("r-live", "live"), []);
    await store.writeHeartbeats(new Map(), 10_000);
    const recovered = await store.recover({ workerTtlMs: 1_000 });
    expect(recovered.expired.map((w) => w.id)).toEqual(["old"]);
    expect(recovered.reservations.map((r) => r.id).sort()).toEqual(["r-live", "r-old"]);
  });

  it("prune never reports a compacted revision while an earlier event is still kept, even after a wall-clock step back", async () => {
    const store = openStore();
    await store.appendEvents([draft("a", { occurredAtMs: 100 }), draft("a", { occurredAtMs: 500 }), draft("a", { occurredAtMs: 200 })]);
    expect(await store.prune(300, 0, 10)).toBe(1);
    expect((await store.readEvents(0, 10)).map((e) => e.revision)).toEqual([2, 3]);
  });

  it("deleteWorkers that deletes nothing writes none of its events", async () => {
    const store = openStore();
    expect(await store.deleteWorkers([{ id: "ghost", event: draft("ghost") }], [draft("extra")])).toEqual({ deleted: [], revision: 0 });
    expect(storedRevision()).toBe(0);
  });
});
