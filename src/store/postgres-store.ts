import pg from "pg";
import { LeaseLostError, StoreUnavailableError } from "../domain/errors.js";
import type { Logger } from "../domain/logger.js";
import {
  DuplicateWorkerIdError,
  type AdjustTaskCountResult,
  type ChangeStateResult,
  type Committed,
  type HealthChange,
  type Lease,
  type RegistryStore,
  type ReleaseReservationResult,
  type Snapshot,
  type StateTransition,
  type TaskOutcome,
} from "../domain/registry-store.js";
import { decodeEventPayload, type CommittedEvent, type WorkerEventType } from "../domain/worker-events.js";
import type { ReservationRecord, WorkerRecord } from "../domain/worker-record.js";
import { ChangeListener } from "./postgres-listener.js";
import { postgresOperations, postgresStatements } from "./postgres-operations.js";
import { migratePostgres } from "./postgres-schema.js";

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://USER@HOST:PORT/DB` (or `postgresql://`); the usual libpq parameters apply. */
  readonly url: string;
  /** Connections for calls; one more is held for notifications. Default 10. */
  readonly poolSize?: number;
  /** How long a call waits for a connection, or a statement for its answer, before the store counts as unavailable. Default 5000 ms. */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

/** SQLSTATEs of a transaction that lost a race and may simply run again: serialization failure, deadlock. */
const RETRYABLE = new Set(["40001", "40P01"]);
/** SQLSTATE classes and codes that describe the database being unreachable, not the data or the SQL. */
const UNAVAILABLE_CLASSES = ["08", "53", "57"];
const UNAVAILABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
const ATTEMPTS = 3;

/**
 * The {@link RegistryStore} on PostgreSQL, shared by any number of registry
 * replicas. Every operation is one transaction of conditional statements
 * (never "read, then write" on what another replica may change), whose
 * events are numbered from one counter row locked last, so revisions are
 * gap-free in commit order across replicas; a transaction that writes events
 * notifies the others once. A lost race (deadlock, serialization failure) is
 * run again; a database that cannot be reached rejects with
 * StoreUnavailableError, and a notification connection that dies is
 * reopened (the replicas' polling covers the gap).
 */
export class PostgresStore implements RegistryStore {
  readonly kind = "postgres";
  readonly shared = true;
  /** One statement per flush, whatever the fleet: the batch is one array parameter, and nothing here waits on it. */
  readonly heartbeatBatchRows = Number.POSITIVE_INFINITY;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly listener: ChangeListener,
  ) {}

  /** Connects, migrates the schema (safe when several replicas start at once) and starts listening. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const config: pg.PoolConfig = {
      connectionString: options.url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs * 2,
      keepAlive: true,
      application_name: "worker-registry",
      types: { getTypeParser: (oid: number, format?: string) => (oid === pg.types.builtins.INT8 ? Number : pg.types.getTypeParser(oid, format as "text")) } as pg.CustomTypesConfig,
    };
    const pool = new pg.Pool(config);
    // An idle connection that dies (database restarted) must not crash the process: the pool replaces it.
    pool.on("error", (error) => options.log.warn({ err: error }, "an idle database connection failed; it will be replaced"));
    // A connection that dies while checked out (PostgreSQL restarted mid-transaction) emits 'error' on its client,
    // where the pool has no listener: the query in flight fails with the same error, and the transaction discards the
    // connection. Without this listener the event would end the process.
    pool.on("connect", (client) => client.on("error", (error) => options.log.warn({ err: error }, "a database connection in use failed; it will be discarded")));
    let client: pg.PoolClient | undefined;
    try {
      client = await pool.connect();
      await migratePostgres(client);
    } catch (error) {
      client?.release(true);
      await pool.end().catch(() => undefined);
      throw asStoreError(`open the database at ${redact(options.url)}`, error);
    }
    client.release();
    const listener = new ChangeListener(config, options.log);
    await listener.start();
    return new PostgresStore(pool, listener);
  }

  /** See {@link RegistryStore.subscribe}. */
  subscribe(onChange: (revision: number) => void): () => void {
    return this.listener.subscribe(onChange);
  }

  load(): Promise<Snapshot> {
    return this.transaction("load the registry", (c) => postgresOperations.load(c), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }

  async readEvents(fromRevision: number, limit: number): Promise<CommittedEvent[]> {
    const rows = await this.query<{ revision: number; type: WorkerEventType; occurredAtMs: number; payload: string }>("read events", postgresStatements.readEvents, [fromRevision, limit]);
    return rows.map((row) => ({ revision: row.revision, type: row.type, occurredAtMs: row.occurredAtMs, ...decodeEventPayload(row.payload) }));
  }

  async headRevision(): Promise<number> {
    const [row] = await this.query<{ value: number }>("read the revision", postgresStatements.headRevision);
    return row?.value ?? 0;
  }

  registerWorker(worker: WorkerRecord, atMs: number): Promise<Committed> {
    return this.transaction("register a worker", (c) => postgresOperations.registerWorker(c, worker, atMs));
  }

  unregisterWorker(workerId: string, atMs: number): Promise<Committed> {
    return this.transaction("unregister a worker", (c) => postgresOperations.unregisterWorker(c, workerId, atMs));
  }

  adjustTaskCount(workerId: string, delta: number, atMs: number): Promise<Committed & { result: AdjustTaskCountResult }> {
    return this.transaction("update a task count", (c) => postgresOperations.adjustTaskCount(c, workerId, delta, atMs));
  }

  recordCompletion(workerId: string, outcome: TaskOutcome, atMs: number): Promise<Committed> {
    return this.transaction("record a task completion", (c) => postgresOperations.recordCompletion(c, workerId, outcome, atMs));
  }

  acquireSlot(reservation: ReservationRecord, atMs: number): Promise<Committed & { status: "ok" | "full" | "not-found" }> {
    return this.transaction("reserve a slot", (c) => postgresOperations.acquireSlot(c, reservation, atMs));
  }

  releaseReservation(reservationId: string, outcome: TaskOutcome, atMs: number): Promise<Committed & { result: ReleaseReservationResult }> {
    return this.transaction("release a reservation", (c) => postgresOperations.releaseReservation(c, reservationId, outcome, atMs));
  }

  async findReservation(reservationId: string): Promise<{ workerId: string; state: "active" | "released" | "expired" } | undefined> {
    const [row] = await this.query<{ workerId: string; state: "active" | "released" | "expired" }>("read a reservation", postgresStatements.findReservation, [reservationId]);
    return row;
  }

  changeHealth(changes: readonly HealthChange[], atMs: number, lease?: Lease): Promise<Committed> {
    return this.transaction("change worker health", (c) => postgresOperations.changeHealth(c, changes, atMs, lease));
  }

  changeState(workerId: string, transition: StateTransition, atMs: number): Promise<Committed & { result: ChangeStateResult }> {
    return this.transaction("change a worker's state", (c) => postgresOperations.changeState(c, workerId, transition, atMs));
  }

  removeOverdueDrains(workerIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    return this.transaction("remove workers past their drain deadline", (c) => postgresOperations.removeOverdueDrains(c, workerIds, atMs, lease));
  }

  removeExpired(candidates: ReadonlyArray<{ readonly workerId: string; readonly heardUntilMs: number }>, atMs: number, lease: Lease): Promise<Committed> {
    return this.transaction("remove expired workers", (c) => postgresOperations.removeExpired(c, candidates, atMs, lease));
  }

  expireReservations(reservationIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    return this.transaction("expire reservations", (c) => postgresOperations.expireReservations(c, reservationIds, atMs, lease));
  }

  async writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void> {
    await this.query("write heartbeats", postgresStatements.writeHeartbeats, [[...heartbeats.keys()], [...heartbeats.values()], aliveAtMs]);
  }

  readHeartbeatsSince(sinceMs: number): Promise<Array<{ workerId: string; lastHeartbeatAtMs: number }>> {
    return this.query("read heartbeats", postgresStatements.heartbeatsSince, [sinceMs]);
  }

  prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number, lease: Lease): Promise<number> {
    return this.transaction("prune the event log", (c) => postgresOperations.prune(c, eventsBeforeMs, reservationsEndedBeforeMs, limit, lease));
  }

  async lead(owner: string, ttlMs: number): Promise<Lease> {
    const [row] = await this.query<Lease>("take the lease", postgresStatements.lead, [owner, ttlMs]);
    return row!;
  }

  async resign(owner: string): Promise<void> {
    await this.query("give the lease up", postgresStatements.resign, [owner]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener.stop();
    await this.pool.end();
  }

  private async query<T>(operation: string, sql: string, values: unknown[] = []): Promise<T[]> {
    this.assertOpen();
    try {
      return (await this.pool.query(sql, values)).rows as T[];
    } catch (error) {
      throw asStoreError(operation, error);
    }
  }

  /** Runs `body` in a transaction, again after a lost race; a broken connection is not returned to the pool. */
  private async transaction<T>(operation: string, body: (client: pg.PoolClient) => Promise<T>, begin = "BEGIN"): Promise<T> {
    this.assertOpen();
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw asStoreError(operation, error);
      }
      let broken = false;
      try {
        await client.query(begin);
        const result = await body(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        if (RETRYABLE.has(sqlState(error)) && attempt < ATTEMPTS) continue;
        throw asStoreError(operation, error);
      } finally {
        client.release(broken);
      }
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("store is closed");
  }
}

/** Opens the PostgreSQL store. @throws StoreUnavailableError when the database cannot be reached. */
export function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  return PostgresStore.open(options);
}

function sqlState(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : "";
}

/** Wraps a failure to reach the database in StoreUnavailableError; returns the registry's own errors and bugs unchanged. */
function asStoreError(operation: string, error: unknown): unknown {
  if (error instanceof DuplicateWorkerIdError || error instanceof LeaseLostError) return error;
  const code = sqlState(error);
  const message = error instanceof Error ? error.message : "";
  const unreachable =
    UNAVAILABLE_CODES.has(code) ||
    UNAVAILABLE_CLASSES.some((prefix) => code.startsWith(prefix)) ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error/i.test(message);
  return unreachable ? new StoreUnavailableError(operation, error) : error;
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@");
}
