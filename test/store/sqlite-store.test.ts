import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, StoreUnavailableError } from "../../src/domain/errors.js";
import { DuplicateWorkerIdError } from "../../src/domain/registry-store.js";
import type { WorkerRecord } from "../../src/domain/worker-record.js";
import { latestSchemaVersion } from "../../src/store/migrations.js";
import { openSqliteStore, SqliteStore, storeSql, type SqliteStoreOptions } from "../../src/store/sqlite-store.js";

let dir: string;
let file: string;
let toClose: Array<() => unknown>;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sqlite-store-test-"));
  file = path.join(dir, "registry.db");
  toClose = [];
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
    ...overrides,
  };
}

/** Every row of every table, read through a separate connection. */
function snapshot(): unknown {
  const db = rawConnection();
  const tables = ["workers", "worker_capabilities", "registry_meta"];
  return Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all()]));
}

function capabilityRows(): unknown[] {
  return rawConnection().prepare("SELECT capability, worker_id FROM worker_capabilities ORDER BY 2, 1").raw().all();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable("expected a rejection"),
    (error: unknown) => error,
  );
}

/** Every write of the interface, each of which must fail on unwritable storage. */
function everyWrite(store: SqliteStore): Array<[string, () => Promise<unknown>]> {
  return [
    ["insertWorker", () => store.insertWorker(worker("new"))],
    ["deleteWorker", () => store.deleteWorker("a")],
    ["deleteWorkers", () => store.deleteWorkers(["a"])],
    ["adjustTaskCount", () => store.adjustTaskCount("a", 1)],
    ["recordCompletion", () => store.recordCompletion("a", true, 5)],
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
    expect(latestSchemaVersion).toBeGreaterThanOrEqual(1);
    expect(db.pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    const strict = db.prepare("SELECT name FROM pragma_table_list WHERE strict = 1 ORDER BY name").pluck().all();
    expect(strict).toEqual(["registry_meta", "worker_capabilities", "workers"]);
  });

  it("reopens an up-to-date store without migrating again or losing data", async () => {
    const first = openStore();
    await first.insertWorker(worker("a"));
    await first.close();
    const second = openStore();
    expect(rawConnection().pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    expect((await second.recover({ workerTtlMs: 1_000 })).workers.map((w) => w.id)).toEqual(["a"]);
    expect(second.integrityCheck()).toBe("ok");
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
    await store.insertWorker(worker("a"));
    expect((await store.recover({ workerTtlMs: 1 })).workers).toEqual([worker("a")]);
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
    await first.insertWorker(record);
    await first.close();
    const recovered = await openStore().recover({ workerTtlMs: 1_000 });
    expect(recovered).toEqual({ workers: [record], expiredIds: [], lastAliveAtMs: null });
    expect(capabilityRows()).toEqual([
      ["alpha", "a"],
      ["mid", "a"],
      ["zeta", "a"],
    ]);
  });

  it("rejects a duplicate id with DuplicateWorkerIdError and keeps the original", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { capabilities: ["x"] }));
    const before = snapshot();
    const error = await rejection(store.insertWorker(worker("a", { nodeId: "other", capabilities: ["y"] })));
    expect(error).toBeInstanceOf(DuplicateWorkerIdError);
    expect(error).toMatchObject({ workerId: "a" });
    expect(snapshot()).toEqual(before);
  });

  it("adjusts the task count only within 0..max_concurrent_tasks", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { maxConcurrentTasks: 2 }));
    const currentTasks = (): unknown => rawConnection().prepare("SELECT current_tasks FROM workers").pluck().get();

    expect(await store.adjustTaskCount("a", 1)).toEqual({ status: "ok", currentTasks: 1 });
    const outOfRange = (currentTasks: number) => ({ status: "out-of-range", currentTasks, maxConcurrentTasks: 2 });
    expect(await store.adjustTaskCount("a", 2)).toEqual(outOfRange(1));
    expect(await store.adjustTaskCount("a", -2)).toEqual(outOfRange(1));
    expect(currentTasks()).toBe(1);

    expect(await store.adjustTaskCount("a", 1)).toEqual({ status: "ok", currentTasks: 2 });
    expect(await store.adjustTaskCount("a", 1)).toEqual(outOfRange(2));
    expect(await store.adjustTaskCount("a", -2)).toEqual({ status: "ok", currentTasks: 0 });
    expect(await store.adjustTaskCount("a", -1)).toEqual(outOfRange(0));
    expect(currentTasks()).toBe(0);
    expect(await store.adjustTaskCount("ghost", 1)).toEqual({ status: "not-found" });
  });

  it("adds completions to the counters and reports a missing worker as undefined", async () => {
    const store = openStore();
    await store.insertWorker(worker("a"));
    expect(await store.recordCompletion("a", true, 100)).toEqual({
      tasksCompleted: 1,
      tasksFailed: 0,
      totalTaskDurationMs: 100,
    });
    expect(await store.recordCompletion("a", false, 50.5)).toEqual({
      tasksCompleted: 1,
      tasksFailed: 1,
      totalTaskDurationMs: 150.5,
    });
    expect(await store.recordCompletion("ghost", true, 1)).toBeUndefined();
    const [a] = (await store.recover({ workerTtlMs: 1 })).workers;
    expect(a).toMatchObject({ tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 150.5 });
  });

  it("deletes workers together with their capability rows", async () => {
    const store = openStore();
    await store.insertWorker(worker("a", { capabilities: ["x", "y"] }));
    await store.insertWorker(worker("b", { capabilities: ["x"] }));
    await store.insertWorker(worker("c", { capabilities: ["z"] }));

    expect(await store.deleteWorkers(["a", "c", "ghost", "a"])).toBe(2);
    expect(capabilityRows()).toEqual([["x", "b"]]);
    expect(await store.deleteWorkers([])).toBe(0);
    expect(await store.deleteWorker("b")).toBe(true);
    expect(await store.deleteWorker("b")).toBe(false);
    expect(capabilityRows()).toEqual([]);
    expect((await store.recover({ workerTtlMs: 1 })).workers).toEqual([]);
  });
});

describe("heartbeats and recovery", () => {
  it("writes heartbeats of existing workers only, durably across close and reopen", async () => {
    const first = openStore();
    await first.insertWorker(worker("a"));
    await first.insertWorker(worker("b"));
    await first.deleteWorker("b");
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
      expiredIds: [],
      lastAliveAtMs: 8_000,
    });
  });

  it("expires nothing on a store that never wrote heartbeats", async () => {
    const store = openStore();
    await store.insertWorker(worker("ancient", { lastHeartbeatAtMs: 0 }));
    expect(await store.recover({ workerTtlMs: 1 })).toEqual({
      workers: [worker("ancient", { lastHeartbeatAtMs: 0 })],
      expiredIds: [],
      lastAliveAtMs: null,
    });
  });

  it("deletes only workers expired relative to the last alive time and returns the rest oldest first", async () => {
    const first = openStore();
    for (const [id, lastHeartbeatAtMs] of [
      ["late", 12_000],
      ["old", 8_999],
      ["edge", 9_000],
      ["recent", 9_500],
    ] as const) {
      await first.insertWorker(worker(id, { lastHeartbeatAtMs, capabilities: [id] }));
    }
    await first.writeHeartbeats(new Map(), 10_000);
    await first.close();

    const second = openStore();
    const recovered = await second.recover({ workerTtlMs: 1_000 });
    expect(recovered.expiredIds).toEqual(["old"]);
    expect(recovered.lastAliveAtMs).toBe(10_000);
    expect(recovered.workers.map((w) => [w.id, w.lastHeartbeatAtMs])).toEqual([
      ["edge", 9_000],
      ["recent", 9_500],
      ["late", 12_000],
    ]);
    expect(capabilityRows()).not.toContainEqual(["old", "old"]);
    expect((await second.recover({ workerTtlMs: 1_000 })).expiredIds).toEqual([]);
  });

  it("finds expired workers through the last-heartbeat index", () => {
    openStore();
    const plan = rawConnection()
      .prepare(`EXPLAIN QUERY PLAN ${storeSql.deleteExpiredWorkers}`)
      .all(0) as Array<{ detail: string }>;
    expect(plan.map((step) => step.detail).join("\n")).toMatch(/USING (COVERING )?INDEX workers_last_heartbeat_idx/);
  });
});

describe("storage faults", () => {
  it("rejects every write with StoreUnavailableError while another connection holds the write lock", async () => {
    const store = openStore({ busyTimeoutMs: 20 });
    await store.insertWorker(worker("a"));
    const before = snapshot();
    const locker = rawConnection();
    locker.exec("BEGIN IMMEDIATE");

    await expectEveryWriteUnavailable(store, /^SQLITE_BUSY/);
    expect(await rejection(store.recover({ workerTtlMs: 1 }))).toBeInstanceOf(StoreUnavailableError);

    locker.exec("ROLLBACK");
    expect(snapshot()).toEqual(before);
    expect(await store.adjustTaskCount("a", 1)).toEqual({ status: "ok", currentTasks: 1 });
  });

  it("rejects every write with StoreUnavailableError on a read-only connection and changes nothing", async () => {
    await openStore().close();
    const db = new Database(file);
    const store = new SqliteStore(db);
    toClose.push(() => store.close());
    await store.insertWorker(worker("a"));
    const before = snapshot();

    // What SQLite reports when the file or its file system turns read-only under a running store.
    db.pragma("query_only = ON");
    await expectEveryWriteUnavailable(store, /^SQLITE_READONLY/);
    expect(snapshot()).toEqual(before);

    db.pragma("query_only = OFF");
    expect(await store.deleteWorker("a")).toBe(true);
  });

  it("rolls back a transaction that runs out of space half-way", async () => {
    const db = new Database(file);
    const store = new SqliteStore(db);
    toClose.push(() => store.close());
    await store.insertWorker(worker("a"));
    const pageCount = db.pragma("page_count", { simple: true }) as number;
    db.pragma(`max_page_count = ${pageCount + 15}`);
    // The budget holds a 40 kB worker row: the worker row below fits, its capability rows do not.
    const bigRow = worker("big-row", { nodeId: "n".repeat(40_000), capabilities: [] });
    await store.insertWorker(bigRow);
    await store.deleteWorker(bigRow.id);
    const before = snapshot();

    const capabilities = Array.from({ length: 800 }, (_, i) => `capability-${i}-`.padEnd(50, "c"));
    const error = await rejection(store.insertWorker(worker("big-capabilities", { capabilities })));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause).toMatchObject({ code: "SQLITE_FULL" });
    expect(snapshot()).toEqual(before);

    db.pragma("max_page_count = 1000000");
    await store.insertWorker(worker("big-capabilities", { capabilities }));
    expect(capabilityRows()).toHaveLength(800 + 2);
  });

  it.skipIf(process.getuid?.() === 0)(
    "rejects writes to a file made read-only (0444) and changes nothing (skipped as root, which ignores file modes)",
    async () => {
      const first = openStore();
      await first.insertWorker(worker("a"));
      await first.close();
      fs.chmodSync(file, 0o444);
      toClose.push(() => fs.chmodSync(file, 0o644));
      const before = snapshot();

      await expectEveryWriteUnavailable(openStore(), /^SQLITE_READONLY/);
      expect(snapshot()).toEqual(before);
    },
  );

  it("rejects every call with a plain Error after close", async () => {
    const store = openStore();
    await store.close();
    await store.close();
    for (const [name, call] of [
      ...everyWrite(store),
      ["recover", () => store.recover({ workerTtlMs: 1 })] as const,
    ]) {
      const error = await rejection(call());
      expect(error, name).not.toBeInstanceOf(StoreUnavailableError);
      expect(error, name).toMatchObject({ message: "store is closed" });
    }
    expect(() => store.integrityCheck()).toThrow("store is closed");
  });
});
