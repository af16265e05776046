import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ConfigError, StoreUnavailableError } from "../domain/errors.js";
import {
  DuplicateWorkerIdError,
  type AdjustTaskCountResult,
  type RecoveredState,
  type RegistryStore,
} from "../domain/registry-store.js";
import type { CompletionCounters, WorkerRecord } from "../domain/worker-record.js";
import { migrate } from "./migrations.js";

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** The database file; missing parent directories are created. `":memory:"` gives a private, non-durable store. */
  readonly path: string;
  /**
   * How hard a commit is pushed to disk. Default `"normal"`: with WAL, a
   * commit survives a crash or kill -9 of the process but its last
   * transactions may be lost on power failure. `"full"` also survives power
   * loss, at the cost of an fsync per commit.
   */
  readonly synchronous?: "normal" | "full";
  /**
   * How long an operation waits for another connection's lock before
   * rejecting with StoreUnavailableError. Default 5000.
   */
  readonly busyTimeoutMs?: number;
}

const workerColumns = `id, node_id AS nodeId, capabilities, max_concurrent_tasks AS maxConcurrentTasks,
  current_tasks AS currentTasks, tasks_completed AS tasksCompleted, tasks_failed AS tasksFailed,
  total_task_duration_ms AS totalTaskDurationMs, registered_at_ms AS registeredAtMs,
  last_heartbeat_at_ms AS lastHeartbeatAtMs`;

/** The SQL of the store's statements, exported so tests can EXPLAIN exactly what runs. */
export const storeSql = {
  insertWorker: `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, current_tasks,
      tasks_completed, tasks_failed, total_task_duration_ms, registered_at_ms, last_heartbeat_at_ms)
    VALUES (@id, @nodeId, @capabilities, @maxConcurrentTasks, @currentTasks,
      @tasksCompleted, @tasksFailed, @totalTaskDurationMs, @registeredAtMs, @lastHeartbeatAtMs)
    ON CONFLICT (id) DO NOTHING`,
  insertCapability: `INSERT INTO worker_capabilities (capability, worker_id) VALUES (?, ?)`,
  deleteWorker: `DELETE FROM workers WHERE id = ?`,
  adjustTaskCount: `UPDATE workers SET current_tasks = current_tasks + @delta
    WHERE id = @id AND current_tasks + @delta BETWEEN 0 AND max_concurrent_tasks
    RETURNING current_tasks AS currentTasks`,
  taskCount: `SELECT current_tasks AS currentTasks, max_concurrent_tasks AS maxConcurrentTasks
    FROM workers WHERE id = ?`,
  recordCompletion: `UPDATE workers SET tasks_completed = tasks_completed + @succeeded,
      tasks_failed = tasks_failed + @failed, total_task_duration_ms = total_task_duration_ms + @durationMs
    WHERE id = @id
    RETURNING tasks_completed AS tasksCompleted, tasks_failed AS tasksFailed,
      total_task_duration_ms AS totalTaskDurationMs`,
  writeHeartbeat: `UPDATE workers SET last_heartbeat_at_ms = ? WHERE id = ?`,
  readMeta: `SELECT value FROM registry_meta WHERE key = ?`,
  writeMeta: `INSERT INTO registry_meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
  deleteExpiredWorkers: `DELETE FROM workers WHERE last_heartbeat_at_ms < ? RETURNING id`,
  listWorkers: `SELECT ${workerColumns} FROM workers ORDER BY last_heartbeat_at_ms, id`,
} as const;

const lastAliveKey = "last_alive_at_ms";

/** Error codes (primary, or extended via the suffix) that describe the storage, not the data or the SQL. */
const storageFaultCode = /^SQLITE_(READONLY|FULL|BUSY|LOCKED|IOERR|CANTOPEN)(_|$)/;

type WorkerRow = Omit<WorkerRecord, "capabilities"> & { capabilities: string };

/**
 * The {@link RegistryStore} on one SQLite file, for a single registry process.
 * Every method runs synchronously on the calling thread and returns a settled
 * promise. A write resolves once committed (durable per
 * {@link SqliteStoreOptions.synchronous}); a storage fault (read-only, full,
 * busy, locked, I/O error) rejects with StoreUnavailableError after rolling
 * back, other SQLite errors (e.g. SQLITE_CORRUPT, constraint violations
 * from invalid records) reject as they are. After close(), every method
 * rejects with Error("store is closed").
 */
export class SqliteStore implements RegistryStore {
  private closed = false;
  private readonly statements: Statements;
  private readonly transactions: Transactions;

  /**
   * Adopts an open connection: configures it (WAL, synchronous, foreign keys,
   * busy timeout), migrates its schema and prepares every statement. The store
   * owns the connection from then on; close() closes it. Prefer
   * {@link openSqliteStore}, which also opens the file.
   *
   * @throws ConfigError for invalid options; Error if the schema is newer than
   *   this build or WAL cannot be enabled; SQLite errors as they are.
   */
  constructor(
    private readonly db: Database.Database,
    options: Omit<SqliteStoreOptions, "path"> = {},
  ) {
    const { synchronous = "normal", busyTimeoutMs = 5000 } = options;
    if (synchronous !== "normal" && synchronous !== "full") {
      throw new ConfigError(`synchronous must be "normal" or "full", not ${String(synchronous)}`);
    }
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 2 ** 31 - 1) {
      throw new ConfigError(`busyTimeoutMs must be an integer in 0..${2 ** 31 - 1}, not ${busyTimeoutMs}`);
    }
    // Before the journal switch, which itself needs a lock another process may hold.
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    const journalMode = db.pragma("journal_mode = WAL", { simple: true });
    // The durability promised for synchronous=NORMAL holds only in WAL mode.
    if (journalMode !== "wal" && !db.memory) {
      throw new Error(`could not enable WAL: journal_mode is ${String(journalMode)}`);
    }
    db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
    db.pragma("foreign_keys = ON");
    migrate(db);

    this.statements = prepareStatements(db);
    this.transactions = prepareTransactions(db, this.statements);
  }

  /** See {@link RegistryStore.recover}. */
  recover(options: { readonly workerTtlMs: number }): Promise<RecoveredState> {
    return this.run("recover the registry", () => this.transactions.recover.immediate(options.workerTtlMs));
  }

  /** See {@link RegistryStore.insertWorker}. */
  insertWorker(worker: WorkerRecord): Promise<void> {
    return this.run("register a worker", () => this.transactions.insertWorker.immediate(worker));
  }

  /** See {@link RegistryStore.deleteWorker}. */
  deleteWorker(id: string): Promise<boolean> {
    return this.run("delete a worker", () => this.statements.deleteWorker.run(id).changes > 0);
  }

  /** See {@link RegistryStore.deleteWorkers}. An empty list resolves 0 without touching the file. */
  deleteWorkers(ids: readonly string[]): Promise<number> {
    return this.run("delete workers", () => (ids.length === 0 ? 0 : this.transactions.deleteWorkers.immediate(ids)));
  }

  /** See {@link RegistryStore.adjustTaskCount}. */
  adjustTaskCount(id: string, delta: number): Promise<AdjustTaskCountResult> {
    return this.run("update a task count", () => this.transactions.adjustTaskCount.immediate(id, delta));
  }

  /** See {@link RegistryStore.recordCompletion}. */
  recordCompletion(id: string, success: boolean, durationMs: number): Promise<CompletionCounters | undefined> {
    return this.run("record a task completion", () =>
      this.statements.recordCompletion.get({ id, succeeded: success ? 1 : 0, failed: success ? 0 : 1, durationMs }),
    );
  }

  /** See {@link RegistryStore.writeHeartbeats}. */
  writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void> {
    return this.run("write heartbeats", () => this.transactions.writeHeartbeats.immediate(heartbeats, aliveAtMs));
  }

  /**
   * Runs `PRAGMA integrity_check` and returns its first row: `"ok"` for a sound file.
   *
   * @throws Error("store is closed") after close(); StoreUnavailableError on a storage fault.
   */
  integrityCheck(): string {
    this.assertOpen();
    try {
      return String(this.db.pragma("integrity_check", { simple: true }));
    } catch (error) {
      throw asStoreError("check integrity", error);
    }
  }

  /**
   * Checkpoints the WAL into the main file, so the file is complete on its own,
   * then closes the connection. A second call resolves and does nothing.
   * Rejects with StoreUnavailableError if the checkpoint hits a storage fault;
   * the store is closed all the same and no committed write is lost, since the
   * WAL is replayed at the next open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.db.pragma("wal_checkpoint(TRUNCATE)");
    } catch (error) {
      throw asStoreError("checkpoint the store", error);
    } finally {
      this.db.close();
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("store is closed");
  }

  private async run<T>(operation: string, body: () => T): Promise<T> {
    this.assertOpen();
    try {
      return body();
    } catch (error) {
      throw asStoreError(operation, error);
    }
  }
}

/**
 * Opens (creating if needed) the store at `options.path`, migrating its schema.
 *
 * @throws StoreUnavailableError if the file cannot be opened or configured
 *   because of the storage (e.g. SQLITE_CANTOPEN, SQLITE_BUSY); ConfigError
 *   for invalid options; Error for a schema newer than this build; the error
 *   of `fs.mkdirSync` if a parent directory cannot be created.
 */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  if (options.path !== ":memory:") fs.mkdirSync(path.dirname(path.resolve(options.path)), { recursive: true });
  let db: Database.Database | undefined;
  try {
    db = new Database(options.path);
    return new SqliteStore(db, options);
  } catch (error) {
    db?.close();
    throw asStoreError("open the store", error);
  }
}

type Statements = ReturnType<typeof prepareStatements>;
type Transactions = ReturnType<typeof prepareTransactions>;

function prepareStatements(db: Database.Database) {
  return {
    insertWorker: db.prepare<WorkerRow>(storeSql.insertWorker),
    insertCapability: db.prepare<[string, string]>(storeSql.insertCapability),
    deleteWorker: db.prepare<[string]>(storeSql.deleteWorker),
    adjustTaskCount: db.prepare<{ id: string; delta: number }, { currentTasks: number }>(storeSql.adjustTaskCount),
    taskCount: db.prepare<[string], { currentTasks: number; maxConcurrentTasks: number }>(storeSql.taskCount),
    recordCompletion: db.prepare<
      { id: string; succeeded: number; failed: number; durationMs: number },
      CompletionCounters
    >(storeSql.recordCompletion),
    writeHeartbeat: db.prepare<[number, string]>(storeSql.writeHeartbeat),
    readMeta: db.prepare<[string], { value: number }>(storeSql.readMeta),
    writeMeta: db.prepare<[string, number]>(storeSql.writeMeta),
    deleteExpiredWorkers: db.prepare<[number], { id: string }>(storeSql.deleteExpiredWorkers),
    listWorkers: db.prepare<[], WorkerRow>(storeSql.listWorkers),
  };
}

function prepareTransactions(db: Database.Database, s: Statements) {
  return {
    insertWorker: db.transaction((worker: WorkerRecord) => {
      if (s.insertWorker.run({ ...worker, capabilities: JSON.stringify(worker.capabilities) }).changes === 0) {
        throw new DuplicateWorkerIdError(worker.id);
      }
      for (const capability of worker.capabilities) s.insertCapability.run(capability, worker.id);
    }),
    deleteWorkers: db.transaction((ids: readonly string[]) =>
      ids.reduce((deleted, id) => deleted + s.deleteWorker.run(id).changes, 0),
    ),
    // One transaction so the reported counts are the ones that refused the change.
    adjustTaskCount: db.transaction((id: string, delta: number): AdjustTaskCountResult => {
      const updated = s.adjustTaskCount.get({ id, delta });
      if (updated) return { status: "ok", currentTasks: updated.currentTasks };
      const current = s.taskCount.get(id);
      return current ? { status: "out-of-range", ...current } : { status: "not-found" };
    }),
    writeHeartbeats: db.transaction((heartbeats: ReadonlyMap<string, number>, aliveAtMs: number) => {
      for (const [id, atMs] of heartbeats) s.writeHeartbeat.run(atMs, id);
      s.writeMeta.run(lastAliveKey, aliveAtMs);
    }),
    recover: db.transaction((workerTtlMs: number): RecoveredState => {
      const lastAliveAtMs = s.readMeta.get(lastAliveKey)?.value ?? null;
      const expiredIds =
        lastAliveAtMs === null ? [] : s.deleteExpiredWorkers.all(lastAliveAtMs - workerTtlMs).map((row) => row.id);
      const workers = s.listWorkers
        .all()
        .map((row): WorkerRecord => ({ ...row, capabilities: JSON.parse(row.capabilities) as string[] }));
      return { workers, expiredIds, lastAliveAtMs };
    }),
  };
}

/** Wraps a storage fault in StoreUnavailableError; returns any other error unchanged. */
function asStoreError(operation: string, error: unknown): unknown {
  return error instanceof Database.SqliteError && storageFaultCode.test(error.code)
    ? new StoreUnavailableError(operation, error)
    : error;
}
