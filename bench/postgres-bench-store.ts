/**
 * A PostgreSQL store for one registry process to be measured against the
 * same registry on SQLite: a throwaway cluster (the tests' own,
 * test/support/postgres-cluster.ts) with PostgreSQL's default durability,
 * the registry's schema, and the workers bench/seed.ts seeds into SQLite.
 * Its server processes are found from the postmaster's pid, so their CPU
 * counts as the store's.
 */
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { migratePostgres } from "../src/store/postgres-schema.js";
import { PostgresCluster } from "../test/support/postgres-cluster.js";
import { SEED_MAX_TASKS, seededCapabilities, seededWorkerId } from "./seed.js";

const DATABASE = "registry_bench";
const SEED_BATCH = 10_000;

export class PostgresBenchStore {
  private constructor(private readonly cluster: PostgresCluster) {}

  /** Whether this machine has PostgreSQL's server binaries. */
  static available(): boolean {
    return PostgresCluster.available();
  }

  /** A fresh cluster and database with the registry's schema and workers 0 to `workers` - 1 (every one heartbeated just now). */
  static async start(workers: number): Promise<PostgresBenchStore> {
    const cluster = await PostgresCluster.start();
    try {
      await cluster.createDatabase(DATABASE);
      const client = new pg.Client({ connectionString: cluster.url(DATABASE) });
      await client.connect();
      try {
        await migratePostgres(client);
        const now = Date.now();
        for (let from = 0; from < workers; from += SEED_BATCH) {
          const ids: string[] = [];
          const nodes: string[] = [];
          const capabilities: string[] = [];
          for (let i = from; i < Math.min(workers, from + SEED_BATCH); i++) {
            ids.push(seededWorkerId(i));
            nodes.push(`bench-node-${String(i).padStart(6, "0")}`);
            capabilities.push(JSON.stringify(seededCapabilities(i)));
          }
          await client.query(
            `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, registered_at_ms, last_heartbeat_at_ms, token_hash)
             SELECT id, node, caps::jsonb, $4, $5, $5, '' FROM unnest($1::text[], $2::text[], $3::text[]) AS s(id, node, caps)`,
            [ids, nodes, capabilities, SEED_MAX_TASKS, now],
          );
        }
        await client.query("VACUUM ANALYZE workers");
      } finally {
        await client.end();
      }
      return new PostgresBenchStore(cluster);
    } catch (error) {
      cluster.destroy();
      throw error;
    }
  }

  /** The registry's `--db`. */
  get url(): string {
    return this.cluster.url(DATABASE);
  }

  /** The postmaster and every process it started (backends, WAL writer, checkpointer...), now. */
  pids(): number[] {
    const postmaster = Number(fs.readFileSync(path.join(this.cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
    const pids = [postmaster];
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
        // Fields after the command name (which may hold spaces): state, ppid, ...
        if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === postmaster) pids.push(Number(entry));
      } catch {
        // the process ended meanwhile
      }
    }
    return pids;
  }

  destroy(): void {
    this.cluster.destroy();
  }
}
