/**
 * The PostgreSQL the replica scenario measures: a throwaway cluster (the
 * tests' own, test/support/postgres-cluster.ts: initdb in a temporary
 * directory, a free loopback port) run with durable settings, with
 * pg_stat_statements when Debian's postgresql-contrib provides it, one
 * database user per replica (so pg_stat_statements tells the replicas apart),
 * and the workers the heartbeat streams beat for, seeded with the registry's
 * own schema.
 */
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { migratePostgres } from "../src/store/postgres-schema.js";
import { PostgresCluster, POSTGRES_BIN } from "../test/support/postgres-cluster.js";
import { SEED_MAX_TASKS, seededCapabilities, seededWorkerId } from "./seed.js";

const DATABASE = "registry_bench";
/** PostgreSQL's defaults, written out: every commit is flushed to disk before it is acknowledged. */
const DURABLE = { fsync: "on", synchronous_commit: "on", full_page_writes: "on" } as const;
const SEED_BATCH = 10_000;

/** The database user replica `i` connects as. */
export const replicaRole = (i: number): string => `replica_${i}`;

/** pg_stat_statements' row for one statement of one user, cumulative. */
export interface StatementCount {
  readonly role: string;
  readonly query: string;
  readonly calls: number;
  readonly rows: number;
}

/** pg_stat_database's counters of the bench database, cumulative. */
export type DatabaseCounters = Readonly<Record<"commits" | "rollbacks" | "returned" | "fetched" | "inserted" | "updated" | "deleted", number>>;

export class BenchDatabase {
  private constructor(
    private readonly cluster: PostgresCluster,
    private readonly admin: pg.Client,
    /** Whether pg_stat_statements is there to read; else only pg_stat_database. */
    readonly hasStatements: boolean,
  ) {}

  /** Whether this machine has PostgreSQL's server binaries. */
  static available(): boolean {
    return PostgresCluster.available();
  }

  /** Makes and starts the cluster, the database, its schema and one user per replica. */
  static async start(replicas: number): Promise<BenchDatabase> {
    // Preloading a library that is not installed would stop the server from starting at all.
    const library = fs.existsSync(path.join(POSTGRES_BIN, "..", "lib", "pg_stat_statements.so"));
    const cluster = await PostgresCluster.start({ ...DURABLE, ...(library ? { shared_preload_libraries: "pg_stat_statements" } : {}) });
    let admin: pg.Client | undefined;
    try {
      await cluster.createDatabase(DATABASE);
      admin = new pg.Client({ connectionString: cluster.url(DATABASE) });
      await admin.connect();
      const hasStatements = library && (await admin.query("CREATE EXTENSION pg_stat_statements").then(() => true, () => false));
      // Superusers: the scenario measures the registry's statements, not a permission scheme (the README's deployment shows one).
      for (let i = 0; i < replicas; i++) await admin.query(`CREATE ROLE ${replicaRole(i)} LOGIN SUPERUSER`);
      await migratePostgres(admin);
      return new BenchDatabase(cluster, admin, hasStatements);
    } catch (error) {
      await admin?.end().catch(() => undefined);
      cluster.destroy();
      throw error;
    }
  }

  /** The `--db` of replica `i`. */
  replicaUrl(i: number): string {
    return this.cluster.url(DATABASE).replace("//postgres@", `//${replicaRole(i)}@`);
  }

  /** Inserts workers 0 to count - 1 as bench/seed.ts seeds SQLite (every one heartbeated just now); returns the seconds it took. */
  async seed(count: number): Promise<number> {
    const started = performance.now();
    const now = Date.now();
    for (let from = 0; from < count; from += SEED_BATCH) {
      const ids: string[] = [];
      const nodes: string[] = [];
      const capabilities: string[] = [];
      for (let i = from; i < Math.min(count, from + SEED_BATCH); i++) {
        ids.push(seededWorkerId(i));
        nodes.push(`bench-node-${String(i).padStart(6, "0")}`);
        capabilities.push(JSON.stringify(seededCapabilities(i)));
      }
      await this.admin.query(
        `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, registered_at_ms, last_heartbeat_at_ms, token_hash)
         SELECT id, node, caps::jsonb, $4, $5, $5, '' FROM unnest($1::text[], $2::text[], $3::text[]) AS s(id, node, caps)`,
        [ids, nodes, capabilities, SEED_MAX_TASKS, now],
      );
    }
    return (performance.now() - started) / 1000;
  }

  /** Empties pg_stat_statements (the start of a window). */
  async resetStatements(): Promise<void> {
    if (this.hasStatements) await this.admin.query("SELECT pg_stat_statements_reset()");
  }

  /** pg_stat_statements' rows of the bench database, or [] without the extension. */
  async statements(): Promise<StatementCount[]> {
    if (!this.hasStatements) return [];
    const { rows } = await this.admin.query<{ role: string; query: string; calls: string; rows: string }>(
      `SELECT r.rolname AS role, s.query, s.calls, s.rows FROM pg_stat_statements s
       JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1`,
      [DATABASE],
    );
    return rows.map((row) => ({ role: row.role, query: row.query, calls: Number(row.calls), rows: Number(row.rows) }));
  }

  /** pg_stat_database's counters (each backend adds its own at most once a second, so they trail by up to a second). */
  async counters(): Promise<DatabaseCounters> {
    const { rows } = await this.admin.query<Record<string, string>>(
      `SELECT xact_commit AS commits, xact_rollback AS rollbacks, tup_returned AS returned, tup_fetched AS fetched,
         tup_inserted AS inserted, tup_updated AS updated, tup_deleted AS deleted FROM pg_stat_database WHERE datname = $1`,
      [DATABASE],
    );
    const row = rows[0]!;
    return {
      commits: Number(row.commits),
      rollbacks: Number(row.rollbacks),
      returned: Number(row.returned),
      fetched: Number(row.fetched),
      inserted: Number(row.inserted),
      updated: Number(row.updated),
      deleted: Number(row.deleted),
    };
  }

  /**
   * The replicas' sessions that are not idle now, by state and what they
   * wait for ("CPU" when nothing): "active" runs a statement (waiting on a
   * lock, the WAL, I/O or nothing), "idle in transaction" waits for the
   * registry to send the transaction's next statement.
   */
  async sessionStates(roles: readonly string[]): Promise<Map<string, number>> {
    const { rows } = await this.admin.query<{ state: string; n: number }>(
      `SELECT state || ' · ' || coalesce(wait_event_type || ':' || wait_event, 'CPU') AS state, count(*)::int AS n
       FROM pg_stat_activity WHERE datname = $1 AND usename = ANY($2) AND state <> 'idle' GROUP BY 1`,
      [DATABASE, roles],
    );
    return new Map(rows.map((row) => [row.state, row.n]));
  }

  /** The server's processes: the postmaster and every process it started (backends, writers, the checkpointer). */
  pids(): number[] {
    const postmaster = Number(fs.readFileSync(path.join(this.cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
    const children = fs
      .readdirSync("/proc")
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
          // Field 4 (ppid) comes after the command name, which may hold spaces and parentheses.
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === postmaster;
        } catch {
          return false;
        }
      })
      .map(Number);
    return [postmaster, ...children];
  }

  /** Stops the server and deletes the cluster. */
  async destroy(): Promise<void> {
    await this.admin.end().catch(() => undefined);
    this.cluster.destroy();
  }
}
