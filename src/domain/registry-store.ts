import type { CompletionCounters, WorkerRecord } from "./worker-record.js";

/** Result of {@link RegistryStore.adjustTaskCount}. */
export type AdjustTaskCountResult =
  | { readonly status: "ok"; readonly currentTasks: number }
  | { readonly status: "not-found" }
  | { readonly status: "out-of-range"; readonly currentTasks: number; readonly maxConcurrentTasks: number };

/** What {@link RegistryStore.recover} found at start-up. */
export interface RecoveredState {
  /** Every worker that survived, ordered by last heartbeat, oldest first. */
  readonly workers: WorkerRecord[];
  /**
   * Workers whose record TTL had already passed when the registry last ran
   * (their last heartbeat was more than `workerTtlMs` before `lastAliveAtMs`);
   * recover() has deleted them.
   */
  readonly expiredIds: string[];
  /** The wall-clock ms at which the registry last wrote heartbeats, or null for a new store. */
  readonly lastAliveAtMs: number | null;
}

/**
 * Durable storage of the registry. Every operation is atomic and semantic
 * (never "read, then write"), so that a backend shared by several registry
 * replicas, such as PostgreSQL with conditional UPDATEs, can implement it
 * without changing the domain or the transport.
 *
 * An operation that resolves is durable. One that cannot write because of the
 * storage itself (read-only, full, locked) rejects with StoreUnavailableError
 * and changes nothing.
 */
export interface RegistryStore {
  /**
   * Called once at start-up: deletes the workers that had already expired when
   * the registry last ran (using the last-heartbeat index) and returns the rest.
   */
  recover(options: { readonly workerTtlMs: number }): Promise<RecoveredState>;

  /** Inserts a new worker. Rejects with DuplicateWorkerIdError if the id exists. */
  insertWorker(worker: WorkerRecord): Promise<void>;

  /** Deletes one worker; resolves false if it did not exist. */
  deleteWorker(id: string): Promise<boolean>;

  /** Deletes several workers in one transaction; resolves to how many existed. */
  deleteWorkers(ids: readonly string[]): Promise<number>;

  /**
   * Adds delta to current_tasks if the result stays within
   * 0..max_concurrent_tasks; otherwise changes nothing and says why.
   */
  adjustTaskCount(id: string, delta: number): Promise<AdjustTaskCountResult>;

  /**
   * Adds one completion to a worker's counters; resolves to the new counters,
   * or undefined if the worker does not exist.
   */
  recordCompletion(id: string, success: boolean, durationMs: number): Promise<CompletionCounters | undefined>;

  /**
   * Writes a batch of heartbeat timestamps (worker id to wall-clock ms) in one
   * transaction, ignoring ids that no longer exist, and records `aliveAtMs`
   * as the moment the registry was last known to be running.
   */
  writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void>;

  /** Closes the store. Further calls reject. */
  close(): Promise<void>;
}

/** insertWorker found the id taken: the caller generates a new id and retries. */
export class DuplicateWorkerIdError extends Error {
  constructor(readonly workerId: string) {
    super(`worker id ${workerId} already exists`);
    this.name = "DuplicateWorkerIdError";
  }
}
