import { describe, expect, it } from "vitest";
import type { DatabaseCounters } from "../../bench/replica-database.js";
import { statementRates } from "../../bench/statement-rates.js";
import { postgresStatements } from "../../src/store/postgres-operations.js";

const zero: DatabaseCounters = { commits: 0, rollbacks: 0, returned: 0, fetched: 0, inserted: 0, updated: 0, deleted: 0 };

describe("the replica scenario's statement rates", () => {
  it("counts the store's own heartbeat statements per replica, each replica apart, and leaves the suite's readings out", () => {
    const rates = statementRates({
      statements: [
        // The registry's SQL as pg_stat_statements keeps it: the store's text, parameters already $n.
        { role: "replica_0", query: postgresStatements.writeHeartbeats, calls: 40, rows: 40_000 },
        { role: "replica_0", query: postgresStatements.heartbeatsSince, calls: 10, rows: 30_000 },
        { role: "replica_1", query: postgresStatements.writeHeartbeats, calls: 10, rows: 10_000 },
        { role: "replica_1", query: postgresStatements.heartbeatsSince, calls: 10, rows: 30_000 },
        { role: "replica_1", query: "BEGIN", calls: 100, rows: 0 },
        { role: "replica_0", query: "BEGIN", calls: 60, rows: 0 },
        // The suite's own readings, as the cluster's superuser.
        { role: "postgres", query: "SELECT pg_stat_statements_reset()", calls: 1000, rows: 1000 },
      ],
      before: zero,
      after: { ...zero, commits: 300, updated: 500_000 },
      seconds: 10,
      roles: ["replica_0", "replica_1"],
      sessionSamples: [new Map([["active · Lock:transactionid", 2]]), new Map([["idle in transaction · Client:ClientRead", 1]])],
    });
    expect(rates.source).toBe("pg_stat_statements");
    expect(rates.perSecond).toBe(23);
    expect(rates.perReplica).toEqual([
      { replica: "replica_0", perSecond: 11 },
      { replica: "replica_1", perSecond: 12 },
    ]);
    // (40 + 10 + 10 + 10) calls in 10 s over 2 replicas.
    expect(rates.heartbeatPerReplica).toBe(3.5);
    expect(rates.top[0]).toEqual({ statement: "BEGIN", perSecond: 16, rowsPerSecond: 0 });
    expect(rates.top.map((t) => t.statement)).not.toContain("SELECT pg_stat_statements_reset()");
    expect(rates.database.commits).toBe(30);
    expect(rates.sessions).toEqual([
      { state: "active · Lock:transactionid", average: 1 },
      { state: "idle in transaction · Client:ClientRead", average: 0.5 },
    ]);
  });

  it("lists the statements called most, and also those that move the most rows though called rarely", () => {
    const busy = Array.from({ length: 10 }, (_, i) => ({ role: "replica_0", query: `SELECT ${i}`, calls: 100 + i, rows: 100 + i }));
    const rates = statementRates({
      statements: [...busy, { role: "replica_0", query: postgresStatements.heartbeatsSince, calls: 10, rows: 100_000 }],
      before: zero,
      after: zero,
      seconds: 10,
      roles: ["replica_0"],
      sessionSamples: [],
    });
    expect(rates.top.map((t) => t.statement)).toEqual(["SELECT 9", "SELECT 8", "SELECT 7", "SELECT 6", "SELECT 5", "SELECT 4", "SELECT 3", "SELECT 2", expect.stringMatching(/^SELECT id AS "workerId"/)]);
    expect(rates.top.at(-1)).toMatchObject({ perSecond: 1, rowsPerSecond: 10_000 });
  });

  it("without pg_stat_statements, gives transactions per second from pg_stat_database and no per-replica figures", () => {
    const rates = statementRates({
      statements: undefined,
      before: { ...zero, commits: 1000, rollbacks: 10 },
      after: { ...zero, commits: 3000, rollbacks: 30 },
      seconds: 4,
      roles: ["replica_0"],
      sessionSamples: [],
    });
    expect(rates).toMatchObject({ source: "pg_stat_database", perSecond: 505, perReplica: [], heartbeatPerReplica: undefined, top: [] });
  });
});
