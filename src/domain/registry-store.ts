import type { HealthStatus } from "./health.js";
import type { CommittedEvent } from "./worker-events.js";
import type { ReservationRecord, WorkerRecord } from "./worker-record.js";

/** Every change an operation committed, in revision order; empty when it changed nothing. */
export interface Committed {
  readonly events: readonly CommittedEvent[];
}

/** The registry's durable state, read at one revision: what a read model starts from. */
export interface Snapshot {
  readonly workers: readonly WorkerRecord[];
  /** Every active reservation. */
  readonly reservations: readonly ReservationRecord[];
  /** The revision the snapshot reflects: the log continues at revision + 1. */
  readonly revision: number;
  /** Every event up to this revision has been pruned from the log (0: none). */
  readonly compactedRevision: number;
  /** Wall-clock ms at which a registry last wrote heartbeats to the store, or null for a new store. */
  readonly lastAliveAtMs: number | null;
}

/**
 * The right to run the fleet-wide schedules (health transitions, cleanup,
 * reservation expiry, pruning), held by one registry process at a time.
 * Every write made on its strength carries it, and the store refuses the
 * write once another holder has taken over: a leader that was paused past its
 * lease cannot act (a fencing token, not only a lock).
 */
export interface Lease {
  readonly owner: string;
  /** Grows at every change of holder. */
  readonly epoch: number;
  /** Wall-clock ms, by the store's clock, until which the lease is held unless renewed. */
  readonly expiresAtMs: number;
}

/** A health transition the caller believes is due. */
export interface HealthChange {
  readonly workerId: string;
  /** Applied only if the worker's stored health is still this; when absent, only if it differs from `to`. */
  readonly from?: HealthStatus;
  readonly to: HealthStatus;
  /**
   * For a downgrade: applied only if the worker's stored last heartbeat is no
   * later than this (wall-clock ms), so a heartbeat written meanwhile by any
   * registry process wins.
   */
  readonly heardUntilMs?: number;
}

/** Result of {@link RegistryStore.adjustTaskCount}. */
export type AdjustTaskCountResult =
  | { readonly status: "ok" }
  | { readonly status: "not-found" }
  | {
      readonly status: "out-of-range";
      readonly currentTasks: number;
      readonly maxConcurrentTasks: number;
      /** Slots held by active reservations: the lowest current_tasks a delta may reach. */
      readonly reservedTasks: number;
    };

/** What {@link RegistryStore.changeState} is asked to do. */
export type StateTransition =
  | { readonly to: "cordoned" }
  | { readonly to: "active" }
  /** Draining until `deadlineMs` (wall-clock ms), or an earlier deadline it already has. */
  | { readonly to: "draining"; readonly deadlineMs: number };

/** Result of {@link RegistryStore.changeState}. */
export type ChangeStateResult =
  /** Done, or nothing to do (already in that state): the events say which. */
  | { readonly status: "ok" }
  | { readonly status: "not-found" }
  /** The worker drains: only a new registration undoes that. */
  | { readonly status: "draining" };

/** Result of {@link RegistryStore.releaseReservation}. */
export type ReleaseReservationResult =
  | { readonly status: "released"; readonly workerId: string }
  /** It had expired: the slot was already free; the outcome was recorded. */
  | { readonly status: "expired"; readonly workerId: string }
  | { readonly status: "already-released"; readonly workerId: string }
  | { readonly status: "not-found" };

/** How a task ended, as a release reports it. */
export interface TaskOutcome {
  readonly success: boolean;
  readonly durationMs: number;
}

/**
 * Durable storage of the registry, shared by every registry process that
 * serves it. Every write is atomic and semantic, never "read, then write",
 * so that a store shared by several processes (PostgreSQL, with conditional
 * UPDATEs) keeps every rule whatever the interleaving.
 *
 * Every change is written in the same transaction as the event that
 * describes it, numbered with the next revision: revisions are gap-free and
 * increase in commit order. Each write resolves to the events it committed,
 * built from what it actually wrote (so a caller never guesses), and an
 * operation that changes nothing writes no event. The caller applies events
 * to its read model in revision order, its own and other processes' alike.
 *
 * An operation that resolves is committed (durable as the store is
 * configured). One that cannot reach or write the storage (read-only, full,
 * locked, connection lost) rejects with StoreUnavailableError and changes
 * nothing. Writes made on the strength of a {@link Lease} reject with
 * LeaseLostError once the lease is no longer current, and change nothing.
 */
export interface RegistryStore {
  /** "sqlite" or "postgres": shown to operators. */
  readonly kind: string;
  /**
   * True when other registry processes may write the same store at the same
   * time (replicas): the registry then tails the log for their events and
   * reads the heartbeats they write. False for a store this process holds
   * alone.
   */
  readonly shared: boolean;

  /**
   * Most heartbeats one {@link writeHeartbeats} call should carry: few for a
   * store that writes on the event loop's own thread (SQLite), so that a
   * flush never holds the loop for long; all of them for one that waits on a
   * server without blocking (PostgreSQL), so that a flush is one statement.
   */
  readonly heartbeatBatchRows: number;

  /** The registry's state at one revision. */
  load(): Promise<Snapshot>;

  /** Events with revision >= fromRevision, oldest first, at most `limit`, as committed. */
  readEvents(fromRevision: number, limit: number): Promise<CommittedEvent[]>;

  /** The revision of the last committed event (0 for a new store). */
  headRevision(): Promise<number>;

  /**
   * For a shared store that can tell: calls `onChange` when a transaction of
   * any process commits events, with the revision it committed up to (0 when
   * changes may have been missed). A wake-up, not a transport: the caller
   * reads the log, and polls it anyway. Returns the function that stops it.
   */
  subscribe?(onChange: (revision: number) => void): () => void;

  /**
   * Inserts a new worker (its record as given, healthy). Its node_id names
   * one worker: the node's other workers are deleted first, with their
   * reservations, each with an `unregistered` event of reason `replaced`.
   * Rejects with DuplicateWorkerIdError if the id exists, changing nothing.
   */
  registerWorker(worker: WorkerRecord, atMs: number): Promise<Committed>;

  /** Deletes a worker and its reservations (event `unregistered`); no event if it did not exist. */
  unregisterWorker(workerId: string, atMs: number): Promise<Committed>;

  /**
   * Cordons, uncordons or drains a worker (event `state_changed`), if the
   * transition applies: cordon an active worker, uncordon a cordoned one,
   * drain any (a draining one only to an earlier deadline). A draining worker
   * is never cordoned or uncordoned. A worker drained while idle is deleted
   * in the same transaction (event `unregistered`, reason `drained`).
   */
  changeState(workerId: string, transition: StateTransition, atMs: number): Promise<Committed & { readonly result: ChangeStateResult }>;

  /**
   * Deletes the draining workers whose drain deadline is no later than
   * `atMs`, whatever they still run (event `unregistered`, reason
   * `drain_deadline`), with their reservations.
   */
  removeOverdueDrains(workerIds: readonly string[], atMs: number, lease: Lease): Promise<Committed>;

  /**
   * Adds delta to current_tasks if the result stays within
   * reserved..max_concurrent_tasks, where reserved counts the slots held by
   * active reservations; otherwise changes nothing and says why.
   *
   * Every write that takes a draining worker's current_tasks (tasks and
   * reservations alike) to zero deletes it in the same transaction (event
   * `unregistered`, reason `drained`): so does this, releaseReservation and
   * expireReservations.
   */
  adjustTaskCount(workerId: string, delta: number, atMs: number): Promise<Committed & { readonly result: AdjustTaskCountResult }>;

  /** Adds one completion to a worker's counters; no event if the worker does not exist. */
  recordCompletion(workerId: string, outcome: TaskOutcome, atMs: number): Promise<Committed>;

  /** Takes one slot of the reservation's worker and records the reservation, if the worker is active and has a free slot. */
  acquireSlot(
    reservation: ReservationRecord,
    atMs: number,
  ): Promise<Committed & { readonly status: "ok" | "full" | "not-found" }>;

  /**
   * Ends an active reservation as released: frees its slot and records the
   * outcome. An expired one gets the outcome recorded (its slot was already
   * freed); a released one changes nothing.
   */
  releaseReservation(reservationId: string, outcome: TaskOutcome, atMs: number): Promise<Committed & { readonly result: ReleaseReservationResult }>;

  /** The state of a reservation, active or ended, or undefined if unknown (or pruned). */
  findReservation(reservationId: string): Promise<{ readonly workerId: string; readonly state: "active" | "released" | "expired" } | undefined>;

  /**
   * Applies the health changes whose conditions still hold (see
   * {@link HealthChange}), one `health_changed` event each, in the order
   * given. `lease`, for the schedule's downgrades, fences them; a registry
   * process heals a worker that heartbeats to it, or degrades one whose stream
   * it lost, without a lease.
   */
  changeHealth(changes: readonly HealthChange[], atMs: number, lease?: Lease): Promise<Committed>;

  /**
   * Deletes the workers whose stored last heartbeat is still no later than
   * the one given (event `removed`, reason `expired`): a worker heard from
   * meanwhile by any process is kept.
   */
  removeExpired(
    candidates: ReadonlyArray<{ readonly workerId: string; readonly heardUntilMs: number }>,
    atMs: number,
    lease: Lease,
  ): Promise<Committed>;

  /** Ends active reservations as expired and frees their slots (one `updated` event each). */
  expireReservations(reservationIds: readonly string[], atMs: number, lease: Lease): Promise<Committed>;

  /**
   * Writes a batch of heartbeat timestamps (worker id to wall-clock ms) in one
   * transaction, ignoring ids that no longer exist, and records `aliveAtMs` as
   * the moment a registry was last known to be running. The last write wins,
   * even with an earlier time: after a wall-clock step backwards, the time the
   * heartbeat was received is still the one a later removal must compare with.
   * Heartbeats are soft state: no event.
   */
  writeHeartbeats(heartbeats: ReadonlyMap<string, number>, aliveAtMs: number): Promise<void>;

  /** The workers whose stored last heartbeat is later than `sinceMs`: heartbeats other processes wrote. */
  readHeartbeatsSince(sinceMs: number): Promise<Array<{ readonly workerId: string; readonly lastHeartbeatAtMs: number }>>;

  /**
   * Deletes at most `limit` events that occurred before `eventsBeforeMs`, in
   * revision order, and the reservations that ended before the second
   * cut-off. Resolves to the compacted revision: every event up to it is gone.
   */
  prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number, lease: Lease): Promise<number>;

  /**
   * Takes the lease for `owner` for `ttlMs` if it is free or expired, or
   * renews it if `owner` holds it. Resolves to the lease as it is now: held
   * by `owner` if it got it, else by the process whose lease still runs. A
   * store held by one process alone grants it at once.
   */
  lead(owner: string, ttlMs: number): Promise<Lease>;

  /** Gives the lease up, if `owner` holds it, so another process may take it at once. */
  resign(owner: string): Promise<void>;

  /** Closes the store. A second call does nothing; other calls after it reject. */
  close(): Promise<void>;
}

/** registerWorker found the id taken: the caller generates a new id and retries. */
export class DuplicateWorkerIdError extends Error {
  constructor(readonly workerId: string) {
    super(`worker id ${workerId} already exists`);
    this.name = "DuplicateWorkerIdError";
  }
}
