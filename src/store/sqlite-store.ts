import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ConfigError, StoreUnavailableError } from "../domain/errors.js";
import {
  DuplicateWorkerIdError,
  type AcquireSlotResult,
  type AdjustTaskCountResult,
  type EventDraft,
  type RecoveredState,
  type RegistryStore,
  type ReleaseReservationResult,
  type ReservationRecord,
  type StoredEvent,
} from "../domain/registry-store.js";
import type { CompletionCounters, WorkerRecord } from "../domain/worker-record.js";
import type { DatabaseLock } from "./database-lock.js";
import { migrate } from "./migrations.js";
import { startWalCheckpointer, type WalCheckpointer } from "./wal-checkpointer.js";

/** The serving connection's own automatic checkpoint threshold, when a background thread does the work. */
const SAFETY_NET_CHECKPOINT_PAGES = 10_000;

/** How often at most a read-only connection is opened again to see whether the file can be written now. */
const REOPEN_INTERVAL_MS = 1000;

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
   * rejecting with StoreUnavailableError. Default 50: SQLite waits on the
   * serving thread, so a long wait would freeze every call while another
   * process holds the lock; a refused write is answered UNAVAILABLE and
   * retried by the caller, and the registry keeps answering from memory.
   */
  readonly busyTimeoutMs?: number;
  /**
   * Checkpoint the WAL from a background thread every second, so that commits
   * on the serving thread never stop to do it. Default true (for a file).
   */
  readonly backgroundCheckpoints?: boolean;
  /**
   * The database's lock (see {@link DatabaseLock}), which the caller holds and
   * releases. A connection that had to be opened read-only is replaced by a
   * writable one only once this lock is held. Default none: no lock is checked.
   */
  readonly lock?: Pick<DatabaseLock, "held" | "retake">;
}

const workerColumns = `id, node_id AS nodeId, capabilities, max_concurrent_tasks AS maxConcurrentTasks,
  current_tasks AS currentTasks, tasks_completed AS tasksCompleted, tasks_failed AS tasksFailed,
  total_task_duration_ms AS totalTaskDurationMs, registered_at_ms AS registeredAtMs,
  last_heartbeat_at_ms AS lastHeartbeatAtMs, token_hash AS tokenHash, registered_by AS registeredBy`;

/** The SQL of the store's statements, exported so tests can EXPLAIN exactly what runs. */
export const storeSql = {
  insertWorker: `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, current_tasks,
      tasks_completed, tasks_failed, total_task_duration_ms, registered_at_ms, last_heartbeat_at_ms, token_hash, registered_by)
    VALUES (@id, @nodeId, @capabilities, @maxConcurrentTasks, @currentTasks,
      @tasksCompleted, @tasksFailed, @totalTaskDurationMs, @registeredAtMs, @lastHeartbeatAtMs, @tokenHash, @registeredBy)
    ON CONFLICT (id) DO NOTHING`,
  deleteWorker: `DELETE FROM workers WHERE id = ?`,
  // Slots held by active reservations are not the caller's to give back: ReleaseWorker frees them.
  adjustTaskCount: `UPDATE workers SET current_tasks = current_tasks + @delta
    WHERE id = @id AND current_tasks + @delta BETWEEN
      (SELECT count(*) FROM reservations WHERE worker_id = @id AND state = 'active') AND max_concurrent_tasks
    RETURNING current_tasks AS currentTasks`,
  taskCount: `SELECT current_tasks AS currentTasks, max_concurrent_tasks AS maxConcurrentTasks,
      (SELECT count(*) FROM reservations WHERE worker_id = workers.id AND state = 'active') AS reservedTasks
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
  listExpiredWorkers: `SELECT ${workerColumns} FROM workers WHERE last_heartbeat_at_ms < ? ORDER BY last_heartbeat_at_ms, id`,
  listLiveWorkers: `SELECT ${workerColumns} FROM workers WHERE last_heartbeat_at_ms >= ? ORDER BY last_heartbeat_at_ms, id`,
  insertEvent: `INSERT INTO events (revision, type, worker_id, occurred_at_ms, payload)
    VALUES (@revision, @type, @workerId, @occurredAtMs, @payload)`,
  readEvents: `SELECT revision, type, worker_id AS workerId, occurred_at_ms AS occurredAtMs, payload
    FROM events WHERE revision >= ? ORDER BY revision LIMIT ?`,
  // The oldest events, in revision order: pruning stops at the first one young enough to keep, so that
  // "every event up to the compacted revision is gone" holds even if the wall clock stepped back.
  oldestEvents: `SELECT revision, occurred_at_ms AS occurredAtMs FROM events ORDER BY revision LIMIT ?`,
  pruneEventsThrough: `DELETE FROM events WHERE revision <= ?`,
  // The revision is the log's last one; the meta row keeps it only for when pruning has emptied the log,
  // so that an append costs no extra write.
  currentRevision: `SELECT max(coalesce((SELECT value FROM registry_meta WHERE key = 'revision'), 0),
      coalesce((SELECT max(revision) FROM events), 0)) AS value`,
  pruneReservations: `DELETE FROM reservations WHERE ended_at_ms < ?`,
  takeSlot: `UPDATE workers SET current_tasks = current_tasks + 1
    WHERE id = ? AND current_tasks < max_concurrent_tasks RETURNING current_tasks AS currentTasks`,
  workerExists: `SELECT 1 AS found FROM workers WHERE id = ?`,
  insertReservation: `INSERT INTO reservations (id, worker_id, created_at_ms, expires_at_ms, state)
    VALUES (@id, @workerId, @createdAtMs, @expiresAtMs, 'active')`,
  endReservation: `UPDATE reservations SET state = @state, ended_at_ms = @atMs
    WHERE id = @id AND state = 'active' RETURNING worker_id AS workerId`,
  reservationState: `SELECT worker_id AS workerId, state FROM reservations WHERE id = ?`,
  markExpiredReleased: `UPDATE reservations SET state = 'released' WHERE id = ? AND state = 'expired'`,
  freeSlot: `UPDATE workers SET current_tasks = current_tasks - 1
    WHERE id = ? AND current_tasks > 0 RETURNING current_tasks AS currentTasks`,
  listReservations: `SELECT id, worker_id AS workerId, created_at_ms AS createdAtMs, expires_at_ms AS expiresAtMs
    FROM reservations WHERE state = 'active' ORDER BY expires_at_ms`,
} as const;

const lastAliveKey = "last_alive_at_ms";
const revisionKey = "revision";
const compactedKey = "compacted_revision";

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
 *
 * SQLite opens a file it cannot write (a read-only file system) read-only,
 * and such a connection stays read-only. When a write fails on one, the store
 * opens the file again (at most once a second) and, if the new connection can
 * write, serves from it and retries the write: a file system made writable
 * again needs no restart.
 */
export class SqliteStore implements RegistryStore {
  private closed = false;
  private pendingWrites: PendingWrite[] = [];
  private checkpointer: WalCheckpointer | undefined;
  /** The file a background thread checkpoints, once the connection can write (see {@link checkpointInBackground}). */
  private checkpointFile: string | undefined;
  private statements!: Statements;
  private transactions!: Transactions;
  private readonly synchronous: "normal" | "full";
  private readonly busyTimeoutMs: number;
  private readonly lock: SqliteStoreOptions["lock"];
  /**
   * SQLite opened the file read-only although read-write was asked for (the
   * file system is read-only), or the connection is kept from writing until
   * the database's lock is held. `db.readonly` tells only what was asked for.
   */
  private readOnlyFallback: boolean;
  private nextReopenAtMs = 0;

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
    private db: Database.Database,
    options: Omit<SqliteStoreOptions, "path"> = {},
  ) {
    const { synchronous = "normal", busyTimeoutMs = 50 } = options;
    if (synchronous !== "normal" && synchronous !== "full") {
      throw new ConfigError(`synchronous must be "normal" or "full", not ${String(synchronous)}`);
    }
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 2 ** 31 - 1) {
      throw new ConfigError(`busyTimeoutMs must be an integer in 0..${2 ** 31 - 1}, not ${busyTimeoutMs}`);
    }
    this.synchronous = synchronous;
    this.busyTimeoutMs = busyTimeoutMs;
    this.lock = options.lock;
    this.adopt(db);
    const writable = canWrite(db);
    // A lock that could not be taken (its file is read-only) keeps a connection that could write from doing so.
    if (writable && this.lock !== undefined && !this.lock.held) db.pragma("query_only = ON");
    this.readOnlyFallback = !db.readonly && !db.memory && (!writable || (this.lock !== undefined && !this.lock.held));
  }

  /** Configures a connection (WAL, synchronous, foreign keys, busy timeout), migrates it and prepares every statement on it. */
  private adopt(db: Database.Database): void {
    // Before the journal switch, which itself needs a lock another process may hold.
    db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
    const journalMode = db.pragma("journal_mode = WAL", { simple: true });
    // The durability promised for synchronous=NORMAL holds only in WAL mode.
    if (journalMode !== "wal" && !db.memory) {
      throw new Error(`could not enable WAL: journal_mode is ${String(journalMode)}`);
    }
    db.pragma(`synchronous = ${this.synchronous.toUpperCase()}`);
    db.pragma("foreign_keys = ON");
    migrate(db);

    const statements = prepareStatements(db);
    this.transactions = prepareTransactions(db, statements);
    this.statements = statements;
    this.db = db;
  }

  /** See {@link RegistryStore.recover}. */
  recover(options: { readonly workerTtlMs: number }): Promise<RecoveredState> {
    return this.run("recover the registry", () => this.transactions.recover.immediate(options.workerTtlMs));
  }

  /** See {@link RegistryStore.insertWorker}. */
  insertWorker(
    worker: WorkerRecord,
    events: readonly EventDraft[],
    replacing: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }> = [],
  ): Promise<{ replaced: string[]; revision: number }> {
    return this.write("register a worker", () => this.transactions.insertWorker.immediate(worker, events, replacing));
  }

  /** See {@link RegistryStore.deleteWorkers}. */
  deleteWorkers(
    deletions: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }>,
    events: readonly EventDraft[],
  ): Promise<{ deleted: string[]; revision: number }> {
    return this.write("delete workers", () => this.transactions.deleteWorkers.immediate(deletions, events));
  }

  /** See {@link RegistryStore.adjustTaskCount}. */
  adjustTaskCount(id: string, delta: number, events: readonly EventDraft[]): Promise<AdjustTaskCountResult & { revision: number }> {
    return this.write("update a task count", () => this.transactions.adjustTaskCount.immediate(id, delta, events));
  }

  /** See {@link RegistryStore.recordCompletion}. */
  recordCompletion(
    id: string,
    success: boolean,
    durationMs: number,
    events: readonly EventDraft[],
  ): Promise<{ counters: CompletionCounters | undefined; revision: number }> {
    return this.write("record a task completion", () => this.transactions.recordCompletion.immediate(id, success, durationMs, events));
  }

  /** See {@link RegistryStore.acquireSlot}. */
  acquireSlot(reservation: ReservationRecord, events: readonly EventDraft[]): Promise<AcquireSlotResult & { revision: number }> {
    return this.write("reserve a slot", () => this.transactions.acquireSlot.immediate(reservation, events));
  }

  /** See {@link RegistryStore.releaseReservation}. */
  releaseReservation(
    reservationId: string,
    outcome: { readonly success: boolean; readonly durationMs: number; readonly atMs: number },
    events: readonly EventDraft[],
  ): Promise<ReleaseReservationResult & { revision: number }> {
    return this.write("release a reservation", () => this.transactions.releaseReservation.immediate(reservationId, outcome, events));
  }

  /** See {@link RegistryStore.expireReservations}. */
  expireReservations(ids: readonly string[], atMs: number, events: readonly EventDraft[]): Promise<{ expired: string[]; revision: number }> {
    return this.write("expire reservations", () => this.transactions.expireReservations.immediate(ids, atMs, events));
  }

  /** See {@link RegistryStore.appendEvents}. */
  appendEvents(events: readonly EventDraft[]): Promise<number> {
    return this.write("append events", () => this.transactions.appendEvents.immediate(events));
  }

  /** See {@link RegistryStore.readEvents}. */
  readEvents(fromRevision: number, limit: number): Promise<StoredEvent[]> {
    return this.run("read events", () => this.statements.readEvents.all(fromRevision, limit));
  }

  /** See {@link RegistryStore.prune}. */
  prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number): Promise<number> {
    return this.write("prune the event log", () => this.transactions.prune.immediate(eventsBeforeMs, reservationsEndedBeforeMs, limit));
  }

  /** See {@link RegistryStore.findReservation}. */
  findReservation(id: string): Promise<{ workerId: string; state: "active" | "released" | "expired" } | undefined> {
    return this.run("read a reservation", () => this.statements.reservationState.get(id));
  }

  /** See {@link RegistryStore.writeHeartbeats}. */
  writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void> {
    return this.write("write heartbeats", () => this.transactions.writeHeartbeats.immediate(heartbeats, aliveAtMs));
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
  /**
   * Hands WAL checkpoints to a background thread; this connection's automatic
   * checkpoint stays as a safety net, at a threshold ten times the default.
   */
  checkpointInBackground(file: string): void {
    this.db.pragma(`wal_autocheckpoint = ${SAFETY_NET_CHECKPOINT_PAGES}`);
    this.checkpointFile = file;
    // On a file it cannot write, the thread would only hold SQLite's shared-memory index read-only (see reopen()).
    if (!this.readOnlyFallback) this.checkpointer ??= startWalCheckpointer(file, 1000);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.commitPendingWrites();
    this.closed = true;
    await this.checkpointer?.stop();
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

  /**
   * Opens the file again when SQLite had to open it read-only and a write was
   * refused for it, at most once per {@link REOPEN_INTERVAL_MS}: a file system
   * made writable again needs no restart. The old connection closes first:
   * SQLite shares a file's shared-memory index among the connections of a
   * process, and while one that found it read-only is open, every new one is
   * read-only too. The new connection writes only once the database's lock is
   * held (taking it if need be: another server may have taken it while nobody
   * could write). Returns whether the store can write now.
   */
  private reopen(): boolean {
    if (!this.readOnlyFallback) return false;
    const now = performance.now();
    if (now < this.nextReopenAtMs) return false;
    this.nextReopenAtMs = now + REOPEN_INTERVAL_MS;
    const file = this.db.name;
    this.db.close();
    const fresh = new Database(file, { timeout: this.busyTimeoutMs });
    let writable = canWrite(fresh);
    try {
      if (writable && this.lock !== undefined) writable = this.lock.retake();
    } catch {
      writable = false;
    }
    // Kept from writing until the lock is held; a write then fails with SQLITE_READONLY and tries again.
    if (!writable) fresh.pragma("query_only = ON");
    this.adopt(fresh);
    this.readOnlyFallback = !writable;
    if (writable && this.checkpointFile !== undefined) this.checkpointInBackground(this.checkpointFile);
    return writable;
  }

  private async run<T>(operation: string, body: () => T): Promise<T> {
    this.assertOpen();
    try {
      return body();
    } catch (error) {
      throw asStoreError(operation, error);
    }
  }

  /**
   * Group commit: writes that arrive in the same turn of the event loop run
   * one after another, each in its own savepoint, inside one transaction, and
   * every caller is answered once that transaction has committed. Durability
   * and order are those of one transaction per write; the commit, which is
   * most of a write's cost, is paid once per group. A write that fails rolls
   * back its savepoint alone; a failure to begin or commit fails the group.
   */
  private write<T>(operation: string, body: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error("store is closed"));
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ operation, body, resolve: resolve as (value: unknown) => void, reject });
      if (this.pendingWrites.length === 1) setImmediate(() => this.commitPendingWrites());
    });
  }

  private commitPendingWrites(): void {
    const group = this.pendingWrites;
    this.pendingWrites = [];
    if (group.length === 0) return;
    if (this.closed) {
      for (const write of group) write.reject(new Error("store is closed"));
      return;
    }
    let outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>;
    try {
      outcomes = this.transactions.group.immediate(group);
    } catch (error) {
      try {
        // The bodies read this.transactions when they run: a retry runs on the new connection.
        if (isReadOnlyFault(error) && this.reopen()) outcomes = this.transactions.group.immediate(group);
        else throw error;
      } catch (failure) {
        for (const write of group) write.reject(asStoreError(write.operation, failure));
        return;
      }
    }
    outcomes.forEach((outcome, i) => {
      const write = group[i]!;
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(asStoreError(write.operation, outcome.error));
    });
  }
}

interface PendingWrite {
  readonly operation: string;
  readonly body: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
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
    const store = new SqliteStore(db, options);
    if (!db.memory && (options.backgroundCheckpoints ?? true)) store.checkpointInBackground(path.resolve(options.path));
    return store;
  } catch (error) {
    db?.close();
    throw asStoreError(`open the database ${options.path} (${error instanceof Error ? error.message : String(error)})`, error);
  }
}

type Statements = ReturnType<typeof prepareStatements>;
type Transactions = ReturnType<typeof prepareTransactions>;

function prepareStatements(db: Database.Database) {
  return {
    insertWorker: db.prepare<WorkerRow>(storeSql.insertWorker),
    deleteWorker: db.prepare<[string]>(storeSql.deleteWorker),
    adjustTaskCount: db.prepare<{ id: string; delta: number }, { currentTasks: number }>(storeSql.adjustTaskCount),
    taskCount: db.prepare<[string], { currentTasks: number; maxConcurrentTasks: number; reservedTasks: number }>(storeSql.taskCount),
    recordCompletion: db.prepare<
      { id: string; succeeded: number; failed: number; durationMs: number },
      CompletionCounters
    >(storeSql.recordCompletion),
    writeHeartbeat: db.prepare<[number, string]>(storeSql.writeHeartbeat),
    readMeta: db.prepare<[string], { value: number }>(storeSql.readMeta),
    writeMeta: db.prepare<[string, number]>(storeSql.writeMeta),
    listExpiredWorkers: db.prepare<[number], WorkerRow>(storeSql.listExpiredWorkers),
    listLiveWorkers: db.prepare<[number], WorkerRow>(storeSql.listLiveWorkers),
    insertEvent: db.prepare<StoredEvent>(storeSql.insertEvent),
    readEvents: db.prepare<[number, number], StoredEvent>(storeSql.readEvents),
    oldestEvents: db.prepare<[number], { revision: number; occurredAtMs: number }>(storeSql.oldestEvents),
    pruneEventsThrough: db.prepare<[number]>(storeSql.pruneEventsThrough),
    currentRevision: db.prepare<[], { value: number }>(storeSql.currentRevision),
    pruneReservations: db.prepare<[number]>(storeSql.pruneReservations),
    takeSlot: db.prepare<[string], { currentTasks: number }>(storeSql.takeSlot),
    workerExists: db.prepare<[string], { found: number }>(storeSql.workerExists),
    insertReservation: db.prepare<ReservationRecord>(storeSql.insertReservation),
    endReservation: db.prepare<{ id: string; state: "released" | "expired"; atMs: number }, { workerId: string }>(storeSql.endReservation),
    reservationState: db.prepare<[string], { workerId: string; state: "active" | "released" | "expired" }>(storeSql.reservationState),
    markExpiredReleased: db.prepare<[string]>(storeSql.markExpiredReleased),
    freeSlot: db.prepare<[string], { currentTasks: number }>(storeSql.freeSlot),
    listReservations: db.prepare<[], ReservationRecord>(storeSql.listReservations),
  };
}

function prepareTransactions(db: Database.Database, s: Statements) {
  /** Numbers and appends events inside the caller's transaction; returns the last revision. */
  const writeEvents = (events: readonly EventDraft[]): number => {
    let revision = s.currentRevision.get()!.value;
    for (const event of events) s.insertEvent.run({ ...event, revision: ++revision });
    return revision;
  };
  const record = (id: string, success: boolean, durationMs: number) =>
    s.recordCompletion.get({ id, succeeded: success ? 1 : 0, failed: success ? 0 : 1, durationMs });

  return {
    // Each write's own transaction becomes a savepoint inside this one (better-sqlite3 nests them so).
    group: db.transaction((writes: readonly PendingWrite[]) =>
      writes.map((write): { ok: true; value: unknown } | { ok: false; error: unknown } => {
        try {
          return { ok: true, value: write.body() };
        } catch (error) {
          // A fault of the storage (SQLite may even have rolled the whole transaction back) fails the group:
          // nothing of it is committed, so no write of it may be acknowledged.
          if (isStorageFault(error) || !db.inTransaction) throw error;
          return { ok: false, error };
        }
      }),
    ),
    insertWorker: db.transaction(
      (worker: WorkerRecord, events: readonly EventDraft[], replacing: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }>) => {
        if (s.insertWorker.run({ ...worker, capabilities: JSON.stringify(worker.capabilities) }).changes === 0) {
          throw new DuplicateWorkerIdError(worker.id);
        }
        const replaced = replacing.filter(({ id }) => id !== worker.id && s.deleteWorker.run(id).changes > 0);
        const revision = writeEvents([...replaced.map(({ event }) => event), ...events]);
        return { replaced: replaced.map(({ id }) => id), revision };
      },
    ),
    deleteWorkers: db.transaction(
      (deletions: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }>, events: readonly EventDraft[]) => {
        const deleted = deletions.filter(({ id }) => s.deleteWorker.run(id).changes > 0);
        const revision = writeEvents(deleted.length === 0 ? [] : [...events, ...deleted.map(({ event }) => event)]);
        return { deleted: deleted.map(({ id }) => id), revision };
      },
    ),
    // One transaction so the reported counts are the ones that refused the change.
    adjustTaskCount: db.transaction((id: string, delta: number, events: readonly EventDraft[]) => {
      const updated = s.adjustTaskCount.get({ id, delta });
      if (updated) return { status: "ok" as const, currentTasks: updated.currentTasks, revision: writeEvents(events) };
      const current = s.taskCount.get(id);
      const revision = writeEvents([]);
      return current ? { status: "out-of-range" as const, ...current, revision } : { status: "not-found" as const, revision };
    }),
    recordCompletion: db.transaction((id: string, success: boolean, durationMs: number, events: readonly EventDraft[]) => {
      const counters = record(id, success, durationMs);
      return { counters, revision: writeEvents(counters ? events : []) };
    }),
    acquireSlot: db.transaction((reservation: ReservationRecord, events: readonly EventDraft[]) => {
      const taken = s.takeSlot.get(reservation.workerId);
      if (!taken) {
        const status = s.workerExists.get(reservation.workerId) ? ("full" as const) : ("not-found" as const);
        return { status, revision: writeEvents([]) };
      }
      s.insertReservation.run(reservation);
      return { status: "ok" as const, currentTasks: taken.currentTasks, revision: writeEvents(events) };
    }),
    releaseReservation: db.transaction(
      (
        id: string,
        outcome: { readonly success: boolean; readonly durationMs: number; readonly atMs: number },
        events: readonly EventDraft[],
      ): ReleaseReservationResult & { revision: number } => {
        const ended = s.endReservation.get({ id, state: "released", atMs: outcome.atMs });
        if (ended) {
          const freed = s.freeSlot.get(ended.workerId);
          const counters = record(ended.workerId, outcome.success, outcome.durationMs);
          if (!freed || !counters) throw new Error(`reservation ${id} held a slot its worker ${ended.workerId} does not count`);
          return { status: "released", workerId: ended.workerId, currentTasks: freed.currentTasks, counters, revision: writeEvents(events) };
        }
        const existing = s.reservationState.get(id);
        if (existing?.state === "expired") {
          s.markExpiredReleased.run(id);
          const counters = record(existing.workerId, outcome.success, outcome.durationMs);
          if (!counters) throw new Error(`reservation ${id} outlived its worker ${existing.workerId}`);
          return { status: "expired", workerId: existing.workerId, counters, revision: writeEvents(events) };
        }
        const revision = writeEvents([]);
        return existing ? { status: "already-released", workerId: existing.workerId, revision } : { status: "not-found", revision };
      },
    ),
    expireReservations: db.transaction((ids: readonly string[], atMs: number, events: readonly EventDraft[]) => {
      const expired: string[] = [];
      for (const id of ids) {
        const ended = s.endReservation.get({ id, state: "expired", atMs });
        if (!ended) continue;
        s.freeSlot.get(ended.workerId);
        expired.push(id);
      }
      return { expired, revision: writeEvents(expired.length > 0 ? events : []) };
    }),
    appendEvents: db.transaction((events: readonly EventDraft[]) => writeEvents(events)),
    prune: db.transaction((eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number) => {
      s.pruneReservations.run(reservationsEndedBeforeMs);
      let through: number | undefined;
      for (const event of s.oldestEvents.all(limit)) {
        if (event.occurredAtMs >= eventsBeforeMs) break;
        through = event.revision;
      }
      const compacted = s.readMeta.get(compactedKey)?.value ?? 0;
      if (through === undefined) return compacted;
      s.writeMeta.run(revisionKey, s.currentRevision.get()!.value);
      s.pruneEventsThrough.run(through);
      s.writeMeta.run(compactedKey, Math.max(compacted, through));
      return Math.max(compacted, through);
    }),
    writeHeartbeats: db.transaction((heartbeats: ReadonlyMap<string, number>, aliveAtMs: number) => {
      for (const [id, atMs] of heartbeats) s.writeHeartbeat.run(atMs, id);
      s.writeMeta.run(lastAliveKey, aliveAtMs);
    }),
    recover: db.transaction((workerTtlMs: number): RecoveredState => {
      const lastAliveAtMs = s.readMeta.get(lastAliveKey)?.value ?? null;
      // A new store has no expired workers: the cut-off is -Infinity.
      const cutoff = lastAliveAtMs === null ? Number.MIN_SAFE_INTEGER : lastAliveAtMs - workerTtlMs;
      return {
        workers: s.listLiveWorkers.all(cutoff).map(toWorkerRecord),
        expired: s.listExpiredWorkers.all(cutoff).map(toWorkerRecord),
        reservations: s.listReservations.all(),
        lastAliveAtMs,
        revision: s.currentRevision.get()!.value,
        compactedRevision: s.readMeta.get(compactedKey)?.value ?? 0,
      };
    }),
  };
}

function toWorkerRecord(row: WorkerRow): WorkerRecord {
  return { ...row, capabilities: JSON.parse(row.capabilities) as string[] };
}

function isStorageFault(error: unknown): boolean {
  return error instanceof Database.SqliteError && storageFaultCode.test(error.code);
}

function isReadOnlyFault(error: unknown): boolean {
  return error instanceof Database.SqliteError && error.code.startsWith("SQLITE_READONLY");
}

/**
 * Whether SQLite lets the connection write: a write in a transaction that is
 * rolled back. Only SQLITE_READONLY says no; a lock held elsewhere says
 * nothing about the file, so it counts as yes.
 */
function canWrite(db: Database.Database): boolean {
  try {
    db.exec("BEGIN IMMEDIATE");
    db.prepare(storeSql.writeMeta).run("writable_probe", 0);
    return true;
  } catch (error) {
    return !isReadOnlyFault(error);
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
  }
}

/** Wraps a storage fault in StoreUnavailableError; returns any other error unchanged. */
function asStoreError(operation: string, error: unknown): unknown {
  return isStorageFault(error) ? new StoreUnavailableError(operation, error) : error;
}
