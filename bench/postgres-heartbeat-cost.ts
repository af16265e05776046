/**
 * What a heartbeat flush costs PostgreSQL itself: the registry's own flush
 * statement (src/store/postgres-operations.ts, one statement for the whole
 * batch) over a freshly seeded fleet in a throwaway cluster, once a second
 * as a paced fleet's flush, every worker beating. Prints the CPU of every
 * PostgreSQL process (the backend, and the WAL writer, checkpointer and
 * autovacuum behind it) per row written, and how many of the row updates
 * were HOT (heap-only: no new index entries). Then the same with the index
 * on last_heartbeat_at_ms dropped, to show what that index costs.
 *
 *   npm run build && node dist/bench/postgres-heartbeat-cost.js [workers=10000] [rounds=10]
 */
import fs from "node:fs";
import pg from "pg";
import { postgresStatements } from "../src/store/postgres-operations.js";
import { PostgresBenchStore } from "./postgres-bench-store.js";
import { sleep } from "./proc.js";
import { seededWorkerId } from "./seed.js";

const workers = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 10);
const TICK_MS = 1000 / 100; // USER_HZ

/** CPU milliseconds (user + system) of `pids` so far; a process that ended meanwhile counts nothing. */
function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // ended
    }
  }
  return ticks * TICK_MS;
}

const store = await PostgresBenchStore.start(workers);
const client = new pg.Client({ connectionString: store.url });
await client.connect();
try {
  const ids = Array.from({ length: workers }, (_, i) => seededWorkerId(i));
  const indexes = (await client.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'workers' ORDER BY 1")).rows.map((r) => r.indexname);

  async function measure(label: string): Promise<void> {
    await client.query("SELECT pg_stat_reset()");
    await sleep(600); // the statistics collector's flush
    const pids = store.pids();
    const before = cpuMs(pids);
    let statementMs = 0;
    for (let round = 0; round < rounds; round++) {
      const at = Date.now();
      const started = performance.now();
      await client.query(postgresStatements.writeHeartbeats, [ids, ids.map(() => at), at]);
      statementMs += performance.now() - started;
      await sleep(1000 - Math.min(999, performance.now() - started));
    }
    await sleep(1000); // the WAL writer and autovacuum's share of the last rounds
    const cpu = cpuMs(store.pids()) - before;
    const stats = (
      await client.query<{ upd: string; hot: string }>("SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'workers'")
    ).rows[0]!;
    const rows = workers * rounds;
    console.log(
      `${label}: ${((cpu * 1000) / rows).toFixed(1)} µs of PostgreSQL CPU per row (every process, ${rounds} flushes of ${workers.toLocaleString("en-US")} rows, one a second); ` +
        `the statement ${(statementMs / rounds).toFixed(1)} ms a flush; HOT updates ${stats.hot} of ${stats.upd}`,
    );
  }

  console.log(`workers' indexes: ${indexes.join(", ")}`);
  await measure("with every index (as the registry runs)");
  await client.query("DROP INDEX workers_last_heartbeat_idx");
  await client.query("VACUUM workers");
  await measure("without workers_last_heartbeat_idx");
} finally {
  await client.end();
  store.destroy();
}
