import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ConfigError, StoreUnavailableError } from "../domain/errors.js";
import type {
  AdjustTaskCountResult,
  ChangeStateResult,
  Committed,
  HealthChange,
  Lease,
  RegistryStore,
  ReleaseReservationResult,
  Snapshot,
  StateTransition,
  TaskOutcome,
} from "../domain/registry-store.js";
import { decodeEventPayload, type CommittedEvent } from "../domain/worker-events.js";
import type { ReservationRecord, WorkerRecord } from "../domain/worker-record.js";
import type { DatabaseLock } from "./database-lock.js";
import { migrate } from "./migrations.js";
import { prepareOperations, type Operations } from "./sqlite-operations.js";
import { prepareStatements, storeSql, type Statements } from "./sqlite-statements.js";
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

/** Error codes (primary, or extended via the suffix) that describe the storage, not the data or the SQL. */
const storageFaultCode = /^SQLITE_(READONLY|FULL|BUSY|LOCKED|IOERR|CANTOPEN)(_|$)/;

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
  readonly kind = "sqlite";
  readonly shared = false;
  /** Batched UPDATEs run at roughly 750k rows/s here, so 100 hold the event loop for a fraction of a millisecond, a paced fleet's flush included. */
  readonly heartbeatBatchRows = 100;
  private closed = false;
  private pendingWrites: PendingWrite[] = [];
  /** A commit of the pending writes is scheduled: at the end of this turn's microtasks, or at the end of the turn. */
  private commitSoon = false;
  private commitAtTurnEnd = false;
  private checkpointer: WalCheckpointer | undefined;
  /** The file a background thread checkpoints, once the connection can write (see {@link checkpointInBackground}). */
  private checkpointFile: string | undefined;
  private statements!: Statements;
  private operations!: Operations;
  /** Each write's own transaction becomes a savepoint inside this one (better-sqlite3 nests them so). */
  private group!: Database.Transaction<(writes: readonly PendingWrite[]) => Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>>;
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
    private readonly clock: { now(): number } = Date,
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

    this.statements = prepareStatements(db);
    this.operations = prepareOperations(db, this.statements);
    this.group = db.transaction((writes: readonly PendingWrite[]) =>
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
    );
    this.db = db;
  }

  /** See {@link RegistryStore.load}. */
  load(): Promise<Snapshot> {
    return this.run("load the registry", () => this.operations.load.deferred());
  }

  /** See {@link RegistryStore.readEvents}. */
  readEvents(fromRevision: number, limit: number): Promise<CommittedEvent[]> {
    return this.run("read events", () =>
      this.statements.readEvents.all(fromRevision, limit).map((row) => ({ revision: row.revision, type: row.type, occurredAtMs: row.occurredAtMs, ...decodeEventPayload(row.payload) })),
    );
  }

  /** See {@link RegistryStore.headRevision}. */
  headRevision(): Promise<number> {
    return this.run("read the revision", () => this.statements.currentRevision.get()!.value);
  }

  /** See {@link RegistryStore.registerWorker}. */
  registerWorker(worker: WorkerRecord, atMs: number): Promise<Committed> {
    return this.write("register a worker", () => this.operations.registerWorker.immediate(worker, atMs));
  }

  /** See {@link RegistryStore.unregisterWorker}. */
  unregisterWorker(workerId: string, atMs: number): Promise<Committed> {
    return this.write("unregister a worker", () => this.operations.unregisterWorker.immediate(workerId, atMs));
  }

  /** See {@link RegistryStore.changeState}. */
  changeState(workerId: string, transition: StateTransition, atMs: number): Promise<Committed & { result: ChangeStateResult }> {
    return this.write("change a worker's state", () => this.operations.changeState.immediate(workerId, transition, atMs));
  }

  /** See {@link RegistryStore.removeOverdueDrains}. */
  removeOverdueDrains(workerIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    return this.write("remove workers past their drain deadline", () => this.operations.removeOverdueDrains.immediate(workerIds, atMs, lease));
  }

  /** See {@link RegistryStore.adjustTaskCount}. */
  adjustTaskCount(workerId: string, delta: number, atMs: number): Promise<Committed & { result: AdjustTaskCountResult }> {
    return this.write("update a task count", () => this.operations.adjustTaskCount.immediate(workerId, delta, atMs));
  }

  /** See {@link RegistryStore.recordCompletion}. */
  recordCompletion(workerId: string, outcome: TaskOutcome, atMs: number): Promise<Committed> {
    return this.write("record a task completion", () => this.operations.recordCompletion.immediate(workerId, outcome, atMs));
  }

  /** See {@link RegistryStore.acquireSlot}. */
  acquireSlot(reservation: ReservationRecord, atMs: number): Promise<Committed & { status: "ok" | "full" | "not-found" }> {
    return this.write("reserve a slot", () => this.operations.acquireSlot.immediate(reservation, atMs), "soon");
  }

  /** See {@link RegistryStore.releaseReservation}. */
  releaseReservation(reservationId: string, outcome: TaskOutcome, atMs: number): Promise<Committed & { result: ReleaseReservationResult }> {
    return this.write("release a reservation", () => this.operations.releaseReservation.immediate(reservationId, outcome, atMs), "soon");
  }

  /** See {@link RegistryStore.findReservation}. */
  findReservation(id: string): Promise<{ workerId: string; state: "active" | "released" | "expired" } | undefined> {
    return this.run("read a reservation", () => this.statements.reservationState.get(id));
  }

  /** See {@link RegistryStore.changeHealth}. */
  changeHealth(changes: readonly HealthChange[], atMs: number, lease?: Lease): Promise<Committed> {
    return this.write("change worker health", () => this.operations.changeHealth.immediate(changes, atMs, lease));
  }

  /** See {@link RegistryStore.removeExpired}. */
  removeExpired(candidates: ReadonlyArray<{ readonly workerId: string; readonly heardUntilMs: number }>, atMs: number, lease: Lease): Promise<Committed> {
    return this.write("remove expired workers", () => this.operations.removeExpired.immediate(candidates, atMs, lease));
  }

  /** See {@link RegistryStore.expireReservations}. */
  expireReservations(reservationIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    return this.write("expire reservations", () => this.operations.expireReservations.immediate(reservationIds, atMs, lease));
  }

  /**
   * See {@link RegistryStore.writeHeartbeats}. A chunk can hold the thread for
   * a millisecond, so it waits for the end of this turn and commits in a turn
   * of its own ("soon"): this turn's writes commit before it, and no later
   * reservation waits for it. Nothing depends on that order: only a heartbeat
   * sets a row's last_heartbeat_at_ms, and the writes fenced on it
   * (removeExpired, changeHealth) are decided by this process, which knew of
   * the heartbeat first.
   */
  async writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.write("write heartbeats", () => this.operations.writeHeartbeats.immediate(heartbeats, aliveAtMs), "soon");
  }

  /** See {@link RegistryStore.readHeartbeatsSince}. */
  readHeartbeatsSince(sinceMs: number): Promise<Array<{ workerId: string; lastHeartbeatAtMs: number }>> {
    return this.run("read heartbeats", () => this.statements.heartbeatsSince.all(sinceMs));
  }

  /** See {@link RegistryStore.prune}. */
  prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number, lease: Lease): Promise<number> {
    return this.write("prune the event log", () => this.operations.prune.immediate(eventsBeforeMs, reservationsEndedBeforeMs, limit, lease));
  }

  /** See {@link RegistryStore.lead}: a database this process holds alone, so the lease is granted at once. */
  lead(owner: string, ttlMs: number): Promise<Lease> {
    return this.write("take the lease", () => this.operations.lead.immediate(owner, ttlMs, this.clock.now()));
  }

  /** See {@link RegistryStore.resign}. */
  resign(owner: string): Promise<void> {
    return this.write("give the lease up", () => void this.statements.resign.run(owner));
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
   * Hands WAL checkpoints to a background thread; this connection's automatic
   * checkpoint stays as a safety net, at a threshold ten times the default.
   */
  checkpointInBackground(file: string): void {
    this.db.pragma(`wal_autocheckpoint = ${SAFETY_NET_CHECKPOINT_PAGES}`);
    this.checkpointFile = file;
    // On a file it cannot write, the thread would only hold SQLite's shared-memory index read-only (see reopen()).
    if (!this.readOnlyFallback) this.checkpointer ??= startWalCheckpointer(file, 1000);
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
   * Group commit: the writes pending when a commit is due run one after
   * another, in the order they were made, each in its own savepoint, inside
   * one transaction, and every caller is answered once that transaction has
   * committed. Durability and order are those of one transaction per write;
   * the commit, which is most of a write's cost (about 100 µs of CPU here:
   * docs/benchmarks.md), is paid once per group.
   *
   * A write is due at the end of the turn of the event loop that made it
   * (`setImmediate`), with every other write of that turn. A write made
   * `"soon"` is due at the end of its turn's microtasks, and takes the writes
   * pending before it along: AcquireWorker and ReleaseWorker, which an
   * orchestrator waits on to dispatch a task, would otherwise wait for
   * everything else a busy turn runs (AcquireWorker's server-side p99 under
   * the benchmark's load: about 9 ms before, about 1 ms after), at the price
   * of a commit each (at 16 calls in flight and no other load, about 30% fewer
   * of them a second). A write that fails rolls back its savepoint alone; a
   * failure to begin or commit fails the group.
   */
  private write<T>(operation: string, body: () => T, due: "soon" | "turn end" = "turn end"): Promise<T> {
    if (this.closed) return Promise.reject(new Error("store is closed"));
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ operation, body, resolve: resolve as (value: unknown) => void, reject });
      if (due === "soon" && !this.commitSoon) {
        this.commitSoon = true;
        queueMicrotask(() => {
          this.commitSoon = false;
          this.commitPendingWrites();
        });
      } else if (due === "turn end" && !this.commitAtTurnEnd && !this.commitSoon) {
        this.commitAtTurnEnd = true;
        setImmediate(() => {
          this.commitAtTurnEnd = false;
          this.commitPendingWrites();
        });
      }
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
      outcomes = this.group.immediate(group);
    } catch (error) {
      try {
        // The bodies read this.operations when they run: a retry runs on the new connection.
        if (isReadOnlyFault(error) && this.reopen()) outcomes = this.group.immediate(group);
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

function isStorageFault(error: unknown): boolean {
  return error instanceof Database.SqliteError && storageFaultCode.test(error.code);
}

/** Wraps a storage fault in StoreUnavailableError; returns any other error unchanged. */
function asStoreError(operation: string, error: unknown): unknown {
  return isStorageFault(error) ? new StoreUnavailableError(operation, error) : error;
}
