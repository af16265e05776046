import type { CompletionCounters, WorkerRecord } from "./worker-record.js";

/** What happened to a worker; the type of a revisioned event. */
export type WorkerEventType = "registered" | "updated" | "health_changed" | "unregistered" | "removed";

/** An event before the store numbers it. The payload is opaque to the store. */
export interface EventDraft {
  readonly type: WorkerEventType;
  readonly workerId: string;
  /** Wall-clock ms. */
  readonly occurredAtMs: number;
  /** The domain's serialised snapshot of the worker right after the event. */
  readonly payload: string;
}

/** An event as the log keeps it. */
export interface StoredEvent extends EventDraft {
  /** Strictly increasing across the whole registry and across restarts. */
  readonly revision: number;
}

/** A slot taken by AcquireWorker and not yet released or expired. */
export interface ReservationRecord {
  readonly id: string;
  readonly workerId: string;
  /** Wall-clock ms. */
  readonly createdAtMs: number;
  /** Wall-clock ms. */
  readonly expiresAtMs: number;
}

/** How a reservation ended. */
export type ReservationEnd = "released" | "expired";

/** Result of {@link RegistryStore.adjustTaskCount}. */
export type AdjustTaskCountResult =
  | { readonly status: "ok"; readonly currentTasks: number }
  | { readonly status: "not-found" }
  | {
      readonly status: "out-of-range";
      readonly currentTasks: number;
      readonly maxConcurrentTasks: number;
      /** Slots held by active reservations: the lowest current_tasks a delta may reach. */
      readonly reservedTasks: number;
    };

/** Result of {@link RegistryStore.acquireSlot}. */
export type AcquireSlotResult =
  | { readonly status: "ok"; readonly currentTasks: number }
  | { readonly status: "not-found" }
  | { readonly status: "full" };

/** Result of {@link RegistryStore.releaseReservation}. */
export type ReleaseReservationResult =
  | { readonly status: "released"; readonly workerId: string; readonly currentTasks: number; readonly counters: CompletionCounters }
  /** It had expired: the slot was already free; the outcome was recorded. */
  | { readonly status: "expired"; readonly workerId: string; readonly counters: CompletionCounters }
  | { readonly status: "already-released"; readonly workerId: string }
  | { readonly status: "not-found" };

/** What {@link RegistryStore.recover} found at start-up. */
export interface RecoveredState {
  /** Every worker whose TTL had not passed when the registry last ran, ordered by last heartbeat, oldest first. */
  readonly workers: WorkerRecord[];
  /**
   * Workers whose record TTL had already passed when the registry last ran
   * (their last heartbeat was more than `workerTtlMs` before `lastAliveAtMs`):
   * due for removal. Found through the last-heartbeat index; not deleted yet.
   */
  readonly expired: WorkerRecord[];
  /** Every active reservation. */
  readonly reservations: ReservationRecord[];
  /** The wall-clock ms at which the registry last wrote heartbeats, or null for a new store. */
  readonly lastAliveAtMs: number | null;
  /** The revision of the last event written (0 for a new store). */
  readonly revision: number;
  /** Every event up to this revision has been pruned from the log (0: none). */
  readonly compactedRevision: number;
}

/**
 * Durable storage of the registry. Every operation is atomic and semantic
 * (never "read, then write"), so that a backend shared by several registry
 * replicas, such as PostgreSQL with conditional UPDATEs, can implement it
 * without changing the domain or the transport.
 *
 * Every change is written in the same transaction as the events that
 * describe it; the store numbers them with the next revisions and returns
 * the last one. Events passed to an operation that changes nothing (a refused
 * task count, an unknown worker) are not written.
 *
 * An operation that resolves is committed (durable as the store is
 * configured). One that cannot write because of the storage itself
 * (read-only, full, locked) rejects with StoreUnavailableError and changes
 * nothing.
 */
export interface RegistryStore {
  /** Called once at start-up: reads the registry's state, splitting off the workers already due for removal. */
  recover(options: { readonly workerTtlMs: number }): Promise<RecoveredState>;

  /**
   * Inserts a new worker, after deleting (with their reservations) the
   * workers it replaces: those of `replacing` that still exist, each written
   * with its own event before `events`. One transaction. Rejects with
   * DuplicateWorkerIdError if the id exists (and then changes nothing).
   * Resolves to the ids it replaced and the last revision.
   */
  insertWorker(
    worker: WorkerRecord,
    events: readonly EventDraft[],
    replacing?: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }>,
  ): Promise<{ readonly replaced: string[]; readonly revision: number }>;

  /** Deletes workers (and their reservations). Resolves to the ids that existed and the last revision. */
  deleteWorkers(
    deletions: ReadonlyArray<{ readonly id: string; readonly event: EventDraft }>,
    events: readonly EventDraft[],
  ): Promise<{ readonly deleted: string[]; readonly revision: number }>;

  /**
   * Adds delta to current_tasks if the result stays within
   * reserved..max_concurrent_tasks, where reserved is the number of slots held
   * by active reservations; otherwise changes nothing and says why.
   */
  adjustTaskCount(id: string, delta: number, events: readonly EventDraft[]): Promise<AdjustTaskCountResult & { readonly revision: number }>;

  /**
   * Adds one completion to a worker's counters; resolves to the new counters,
   * or undefined if the worker does not exist.
   */
  recordCompletion(
    id: string,
    success: boolean,
    durationMs: number,
    events: readonly EventDraft[],
  ): Promise<{ readonly counters: CompletionCounters | undefined; readonly revision: number }>;

  /** Takes one slot of the worker for the reservation, if it has one free. */
  acquireSlot(reservation: ReservationRecord, events: readonly EventDraft[]): Promise<AcquireSlotResult & { readonly revision: number }>;

  /**
   * Ends an active reservation as released: frees its slot and records the
   * outcome. An expired one gets the outcome recorded (its slot was already
   * freed); a released one changes nothing.
   */
  releaseReservation(
    reservationId: string,
    outcome: { readonly success: boolean; readonly durationMs: number; readonly atMs: number },
    events: readonly EventDraft[],
  ): Promise<ReleaseReservationResult & { readonly revision: number }>;

  /** Ends active reservations as expired and frees their slots. Resolves to the ids that were active. */
  expireReservations(ids: readonly string[], atMs: number, events: readonly EventDraft[]): Promise<{ readonly expired: string[]; readonly revision: number }>;

  /** The state of a reservation, active or ended, or undefined if unknown (or pruned). */
  findReservation(id: string): Promise<{ readonly workerId: string; readonly state: "active" | "released" | "expired" } | undefined>;

  /** Appends events that describe no stored change (health transitions). */
  appendEvents(events: readonly EventDraft[]): Promise<number>;

  /** Events with revision >= fromRevision, oldest first, at most `limit`. */
  readEvents(fromRevision: number, limit: number): Promise<StoredEvent[]>;

  /**
   * Deletes at most `limit` events that occurred before `eventsBeforeMs`, and
   * the reservations that ended before `reservationsEndedBeforeMs`. Resolves
   * to the compacted revision: every event up to it is gone.
   */
  prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number): Promise<number>;

  /**
   * Writes a batch of heartbeat timestamps (worker id to wall-clock ms) in one
   * transaction, ignoring ids that no longer exist, and records `aliveAtMs`
   * as the moment the registry was last known to be running.
   */
  writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void>;

  /** Closes the store. A second call does nothing; other calls after it reject. */
  close(): Promise<void>;
}

/** insertWorker found the id taken: the caller generates a new id and retries. */
export class DuplicateWorkerIdError extends Error {
  constructor(readonly workerId: string) {
    super(`worker id ${workerId} already exists`);
    this.name = "DuplicateWorkerIdError";
  }
}
