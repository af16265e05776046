import { randomBytes } from "node:crypto";
import { describe, expect, inject, it } from "vitest";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import { silentLogger } from "../../src/domain/logger.js";
import { openPostgresStore, type PostgresStore } from "../../src/store/postgres-store.js";
import { latestPostgresSchemaVersion } from "../../src/store/postgres-schema.js";
import pg from "pg";
import { describeStoreContract, worker, type StoreHarness } from "./store-contract.js";

const base = inject("postgresUrl");

/** A new database in the run's throwaway cluster. */
async function newDatabase(): Promise<string> {
  const name = `registry_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return base.replace(/\/[^/]*$/, `/${name}`);
}

describe.skipIf(base === "")("PostgreSQL store", () => {
  describeStoreContract("PostgreSQL", async () => {
    const url = await newDatabase();
    const opened: PostgresStore[] = [];
    const open = async () => {
      const store = await openPostgresStore({ url, log: silentLogger, poolSize: 8 });
      opened.push(store);
      return store;
    };
    const harness: StoreHarness = {
      store: await open(),
      async reopen() {
        await opened[0]!.close();
        return open();
      },
      second: open,
      async dispose() {
        for (const store of opened) await store.close().catch(() => undefined);
      },
    };
    return harness;
  });

  it("migrates once when several replicas open a new database at the same moment", async () => {
    const url = await newDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore({ url, log: silentLogger, poolSize: 2 })));
    try {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const versions = (await client.query("SELECT version FROM registry_schema ORDER BY version")).rows.map((r) => r.version);
      await client.end();
      expect(versions).toEqual(Array.from({ length: latestPostgresSchemaVersion }, (_, i) => i + 1));
      await stores[0]!.registerWorker(worker("a"), 1_000);
      expect((await stores[3]!.load()).workers.map((w) => w.id)).toEqual(["a"]);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it("notifies every replica of each committed change, with the revision", async () => {
    const url = await newDatabase();
    const [a, b] = await Promise.all([openPostgresStore({ url, log: silentLogger }), openPostgresStore({ url, log: silentLogger })]);
    try {
      const heard: number[] = [];
      b.subscribe((revision) => heard.push(revision));
      await a.registerWorker(worker("a"), 1_000);
      await a.adjustTaskCount("a", 1, 1_100);
      const deadline = Date.now() + 3000;
      while (!heard.includes(2) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(heard.filter((r) => r > 0)).toEqual([1, 2]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("a connection PostgreSQL ends mid-transaction answers StoreUnavailableError and does not crash the replica", async () => {
    const url = await newDatabase();
    const store = await openPostgresStore({ url, log: silentLogger, poolSize: 2 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const crashes: unknown[] = [];
    const onUncaught = (error: unknown) => crashes.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      // Hold the workers table so the store's registration waits inside its transaction, then end its backend
      // as a PostgreSQL restart does (57P01, then the socket closes).
      await admin.query("BEGIN");
      await admin.query("LOCK TABLE workers IN ACCESS EXCLUSIVE MODE");
      const pending = store.registerWorker(worker("a"), 1_000).then(
        () => "committed",
        (error: unknown) => error,
      );
      let waiting = 0;
      for (let i = 0; i < 200 && waiting === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        const rows = await admin.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'worker-registry' AND wait_event_type = 'Lock'");
        waiting = rows.rowCount ?? 0;
      }
      expect(waiting).toBe(1);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'worker-registry' AND wait_event_type = 'Lock'");
      await admin.query("ROLLBACK");
      const outcome = await pending;
      expect(outcome).toBeInstanceOf(StoreUnavailableError);
      // Let the closed socket's 'end' and 'error' events arrive.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(crashes).toEqual([]);
      // The pool replaced the connection: the store works again.
      await store.registerWorker(worker("b"), 2_000);
      expect((await store.load()).workers.map((w) => w.id)).toEqual(["b"]);
    } finally {
      process.off("uncaughtException", onUncaught);
      await admin.end().catch(() => undefined);
      await store.close();
    }
  });

  it("answers StoreUnavailableError, naming the operation, when the database cannot be reached", async () => {
    const error = await openPostgresStore({ url: "postgres://postgres@127.0.0.1:1/nothing", log: silentLogger, timeoutMs: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/open the database at postgres:\/\/postgres@127\.0\.0\.1:1\/nothing/);
  });
});
