import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, StoreUnavailableError } from "../../src/domain/errors.js";
import type { Lease, RegistryStore } from "../../src/domain/registry-store.js";
import { latestSchemaVersion, migrations } from "../../src/store/migrations.js";
import { storeSql } from "../../src/store/sqlite-statements.js";
import { openSqliteStore, SqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite-store.js";
import { describeStoreContract, reservation, worker, type StoreHarness } from "./store-contract.js";

describeStoreContract("SQLite", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sqlite-contract-"));
  const file = path.join(dir, "registry.db");
  const opened: SqliteStore[] = [];
  const open = () => {
    const store = openSqliteStore({ path: file, backgroundCheckpoints: false });
    opened.push(store);
    return store;
  };
  const harness: StoreHarness = {
    store: open(),
    async reopen() {
      await opened[0]!.close();
      return open();
    },
    async second() {
      return open();
    },
    async dispose() {
      for (const store of opened) await store.close().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
});

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

/** Every row of every table, read through a separate connection. */
function snapshot(): unknown {
  const db = rawConnection();
  const tables = ["workers", "registry_meta", "events", "reservations", "registry_lease"];
  return Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all()]));
}

/** Workers a and b, a reservation r1 on a (revision 3), and the lease. */
async function seed(store: RegistryStore): Promise<Lease> {
  const lease = await store.lead("seed", 60_000);
  await store.registerWorker(worker("a"), 1_000);
  await store.registerWorker(worker("b"), 1_000);
  await store.acquireSlot(reservation("r1", "a"), 2_000);
  return lease;
}

/** One call of every write, each of which would change something on the seeded store. */
function everyWrite(store: RegistryStore, lease: Lease): Array<readonly [string, () => Promise<unknown>]> {
  return [
    ["registerWorker", () => store.registerWorker(worker("new"), 3_000)],
    ["unregisterWorker", () => store.unregisterWorker("b", 3_000)],
    ["adjustTaskCount", () => store.adjustTaskCount("a", 1, 3_000)],
    ["recordCompletion", () => store.recordCompletion("a", { success: true, durationMs: 5 }, 3_000)],
    ["acquireSlot", () => store.acquireSlot(reservation("r2", "a"), 3_000)],
    ["releaseReservation", () => store.releaseReservation("r1", { success: true, durationMs: 5 }, 3_000)],
    ["expireReservations", () => store.expireReservations(["r1"], 40_000, lease)],
    ["changeHealth", () => store.changeHealth([{ workerId: "a", to: "degraded" }], 3_000)],
    ["removeExpired", () => store.removeExpired([{ workerId: "b", heardUntilMs: 1_000 }], 99_000, lease)],
    ["writeHeartbeats", () => store.writeHeartbeats(new Map([["a", 9_000]]), 9_000)],
    ["prune", () => store.prune(99_000, 99_000, 10, lease)],
  ];
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

async function expectEveryWriteUnavailable(store: RegistryStore, lease: Lease, code: RegExp): Promise<void> {
  for (const [name, call] of everyWrite(store, lease)) {
    const error = await rejection(call());
    expect(error, name).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause, name).toMatchObject({ code: expect.stringMatching(code) });
  }
}

describe("opening and migrations", () => {
  it("creates parent directories, enables WAL and migrates to the latest schema with STRICT tables", () => {
    file = path.join(dir, "nested", "deeper", "registry.db");
    openStore();
    const db = rawConnection();
    expect(latestSchemaVersion).toBe(7);
    expect(db.pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    const strict = db.prepare("SELECT name FROM pragma_table_list WHERE strict = 1 ORDER BY name").pluck().all();
    expect(strict).toEqual(["events", "registry_lease", "registry_meta", "reservations", "workers"]);
  });

  it("migrates a version-1 database to the latest version: its workers healthy, with no token, the log at revision 0", async () => {
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
    expect(await store.load()).toEqual({
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
          tokenHash: "",
        }),
      ],
      reservations: [],
      lastAliveAtMs: null,
      revision: 0,
      compactedRevision: 0,
    });
    expect(await store.acquireSlot(reservation("r1", "old-timer"), 300)).toMatchObject({ status: "ok", events: [{ revision: 1, worker: { currentTasks: 2 } }] });
  });

  it("reads events written before payloads held the record (version 1) as records", async () => {
    const store = openStore();
    const view = { id: "w", nodeId: "n", capabilities: ["x"], maxConcurrentTasks: 4, currentTasks: 1, availableCapacity: 3, successRate: 0.5, healthStatus: "degraded", registeredAtMs: 10, lastHeartbeatAtMs: 20, metrics: { tasksCompleted: 1, tasksFailedCount: 1, averageTaskDurationMs: 30 } };
    rawConnection()
      .prepare("INSERT INTO events (revision, type, worker_id, occurred_at_ms, payload) VALUES (1, 'health_changed', 'w', 50, ?)")
      .run(JSON.stringify({ worker: view, previousHealth: "healthy" }));
    expect(await store.readEvents(1, 10)).toEqual([
      {
        revision: 1,
        type: "health_changed",
        occurredAtMs: 50,
        previousHealth: "healthy",
        worker: worker("w", { nodeId: "n", capabilities: ["x"], currentTasks: 1, tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 60, registeredAtMs: 10, lastHeartbeatAtMs: 20, health: "degraded", tokenHash: "" }),
      },
    ]);
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
    expect((await store.registerWorker(worker("a"), 1_000)).events).toHaveLength(1);
    expect((await store.load()).workers).toEqual([worker("a")]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("indexes", () => {
  it("reads recent heartbeats through the last-heartbeat index", () => {
    openStore();
    const plan = rawConnection().prepare(`EXPLAIN QUERY PLAN ${storeSql.heartbeatsSince}`).all(0) as Array<{ detail: string }>;
    expect(plan.map((step) => step.detail).join("\n")).toMatch(/USING (COVERING )?INDEX workers_last_heartbeat_idx/);
  });

  it("finds a node's workers through the node_id index", () => {
    openStore();
    const plan = rawConnection().prepare(`EXPLAIN QUERY PLAN ${storeSql.workersOfNode}`).all("n", "x") as Array<{ detail: string }>;
    expect(plan.map((step) => step.detail).join("\n")).toMatch(/USING (COVERING )?INDEX workers_node_idx/);
  });
});

describe("storage faults", () => {
  it("rejects every write with StoreUnavailableError while another connection holds the write lock", async () => {
    const store = openStore({ busyTimeoutMs: 20 });
    const lease = await seed(store);
    const before = snapshot();
    const locker = rawConnection();
    locker.exec("BEGIN IMMEDIATE");
    await expectEveryWriteUnavailable(store, lease, /^SQLITE_BUSY/);
    locker.exec("ROLLBACK");
    expect(snapshot()).toEqual(before);
    expect(await store.acquireSlot(reservation("r-new", "a"), 3_000)).toMatchObject({ status: "ok", events: [{ revision: 4 }] });
  });

  it("rejects every write with StoreUnavailableError on a query_only connection and changes nothing", async () => {
    await openStore().close();
    const db = new Database(file);
    const store = adopt(db);
    const lease = await seed(store);
    const before = snapshot();
    // What SQLite reports when the file or its file system turns read-only under a running store.
    db.pragma("query_only = ON");
    await expectEveryWriteUnavailable(store, lease, /^SQLITE_READONLY/);
    expect(snapshot()).toEqual(before);
    db.pragma("query_only = OFF");
    expect(await store.acquireSlot(reservation("r-new", "a"), 3_000)).toMatchObject({ status: "ok", events: [{ revision: 4 }] });
  });

  it("rejects every write on a read-only connection to the file, changes nothing and still serves reads", async () => {
    const first = openStore();
    const lease = await seed(first);
    await first.close();
    const before = snapshot();
    // SQLite opens a file it cannot write (mode 0444, read-only mount) exactly as SQLITE_OPEN_READONLY,
    // which better-sqlite3's readonly option requests; unlike a chmod, it also holds for root.
    const store = adopt(new Database(file, { readonly: true }));
    await expectEveryWriteUnavailable(store, lease, /^SQLITE_READONLY/);
    expect(snapshot()).toEqual(before);
    expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "active" });
    expect((await store.readEvents(1, 100)).map((e) => e.revision)).toEqual([1, 2, 3]);
    expect(store.integrityCheck()).toBe("ok");
  });

  it("rolls back a transaction that runs out of space half-way", async () => {
    const db = new Database(file);
    const store = adopt(db);
    await store.registerWorker(worker("a"), 1_000);
    const pageCount = db.pragma("page_count", { simple: true }) as number;
    db.pragma(`max_page_count = ${pageCount + 18}`);
    const before = snapshot();
    // The budget holds the 40 kB worker row with its index entries, not its event, which carries the record again.
    const big = worker("big", { nodeId: "n".repeat(20_000), capabilities: Array.from({ length: 400 }, (_, i) => `capability-${i}-`.padEnd(50, "c")) });
    const error = await rejection(store.registerWorker(big, 2_000));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).cause).toMatchObject({ code: "SQLITE_FULL" });
    expect(snapshot()).toEqual(before);
    db.pragma("max_page_count = 1000000");
    expect((await store.registerWorker(big, 2_000)).events).toHaveLength(1);
    expect((await store.load()).workers.find((w) => w.id === "big")).toEqual(big);
  });

  it("rejects every call with a plain Error after close", async () => {
    const store = openStore();
    const lease = await store.lead("x", 1_000);
    await store.close();
    await store.close();
    for (const [name, call] of [
      ...everyWrite(store, lease),
      ["load", () => store.load()] as const,
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

describe("group commit", () => {
  it("writes arriving in one turn share a transaction, yet a refusal rolls back only its own", async () => {
    const store = openStore();
    await store.registerWorker(worker("a", { maxConcurrentTasks: 1 }), 1_000);
    const results = await Promise.all([
      store.adjustTaskCount("a", 1, 2_000),
      store.registerWorker(worker("a"), 2_000).catch((error: unknown) => error),
      store.adjustTaskCount("a", 1, 2_000),
      store.recordCompletion("a", { success: true, durationMs: 1 }, 2_000),
    ]);
    expect(results[0]).toMatchObject({ result: { status: "ok" } });
    expect(results[1]).toBeInstanceOf(Error);
    expect(results[2]).toMatchObject({ events: [], result: { status: "out-of-range" } });
    expect((await store.readEvents(1, 10)).map((e) => e.revision)).toEqual([1, 2, 3]);
  });

  /** Whether `write` was answered before the end of the turn it was made in. */
  async function answeredWithinTheTurn(write: () => Promise<unknown>): Promise<boolean> {
    let turnEnded = false;
    setImmediate(() => (turnEnded = true));
    await write();
    return !turnEnded;
  }

  it("answers a reservation before its turn ends, taking the writes pending before it along; other writes at the turn's end", async () => {
    const store = openStore();
    await store.registerWorker(worker("a", { maxConcurrentTasks: 5 }), 1_000);
    expect(await answeredWithinTheTurn(() => store.adjustTaskCount("a", 1, 2_000))).toBe(false);
    expect(await answeredWithinTheTurn(() => store.acquireSlot(reservation("r1", "a"), 2_000))).toBe(true);
    expect(await answeredWithinTheTurn(() => store.releaseReservation("r1", { success: true, durationMs: 5 }, 2_000))).toBe(true);
    const answered: string[] = [];
    let turnEnded = false;
    setImmediate(() => (turnEnded = true));
    const writes = [
      store.adjustTaskCount("a", 1, 3_000).then(() => answered.push(`task count, turn ended: ${turnEnded}`)),
      store.acquireSlot(reservation("r2", "a"), 3_000).then(() => answered.push(`reservation, turn ended: ${turnEnded}`)),
    ];
    await Promise.all(writes);
    expect(answered).toEqual(["task count, turn ended: false", "reservation, turn ended: false"]);
    // Committed in the order they were made: +1, acquire, release, +1, acquire.
    expect((await store.readEvents(1, 10)).map((e) => e.worker.currentTasks)).toEqual([0, 1, 2, 1, 2, 3]);
  });

  it("writes a heartbeat chunk in a turn of its own, after the writes its turn made", async () => {
    const store = openStore();
    await store.registerWorker(worker("a", { maxConcurrentTasks: 2 }), 1_000);
    const order: string[] = [];
    let turnEnded = false;
    setImmediate(() => (turnEnded = true));
    const heartbeats = store.writeHeartbeats(new Map([["a", 5_000]]), 5_000).then(() => order.push(`heartbeats, turn ended: ${turnEnded}`));
    const count = store.adjustTaskCount("a", 1, 2_000).then(() => order.push("task count"));
    await Promise.all([heartbeats, count]);
    expect(order).toEqual(["task count", "heartbeats, turn ended: true"]);
    expect(rawConnection().prepare("SELECT last_heartbeat_at_ms, current_tasks FROM workers WHERE id = 'a'").get()).toEqual({
      last_heartbeat_at_ms: 5_000,
      current_tasks: 1,
    });
  });
});
