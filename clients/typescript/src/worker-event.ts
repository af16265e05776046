import {
  RemovalReason as RemovalReasonValue,
  WorkerEventType as WorkerEventTypeValue,
  type WorkerEvent,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus, WorkerState } from "./gen/sentinel/registry/v1/worker_pb.js";
import { dateOf, healthName, stateName, toWorkerInfo, type WorkerHealth, type WorkerInfo, type WorkerLifecycleState } from "./worker-info.js";

/**
 * The events of `watchWorkers`, and the one place that translates the
 * protobuf WorkerEvent into them.
 */

/**
 * What happened to a worker: `'registered'`; `'updated'` (task count, metrics
 * or reservations changed); `'health-changed'` (see `previousHealth`);
 * `'state-changed'` (cordoned, uncordoned or set draining: see
 * `previousState`, and `worker.state` for the state after);
 * `'unregistered'` and `'removed-by-cleanup'` (see `removalReason`).
 */
export type WorkerEventType = "registered" | "updated" | "health-changed" | "state-changed" | "unregistered" | "removed-by-cleanup";

/**
 * Why a worker left the registry: `'unregistered'` (UnregisterWorker was
 * called), `'expired'` (no heartbeat for longer than its record TTL),
 * `'replaced'` (its nodeId registered again), `'drained'` (it was draining
 * and its tasks and reservations reached zero) or `'drain-deadline'` (it was
 * draining and still busy at its drain deadline).
 */
export type RemovalReason = "unregistered" | "expired" | "replaced" | "drained" | "drain-deadline";

/** One change to one worker, numbered by the registry-wide revision. */
export interface WorkerChangeEvent {
  type: WorkerEventType;
  /** Strictly increasing across the registry and across its restarts. */
  revision: number;
  /** The worker as it was right after the event (for a removal: as it was when it left). */
  worker: WorkerInfo;
  /** When the registry recorded the event. */
  occurredAt: Date;
  /** For `'health-changed'`: the health before. Absent for the other types. */
  previousHealth?: WorkerHealth;
  /** For `'state-changed'`: the state before. Absent for the other types. */
  previousState?: WorkerLifecycleState;
  /** For `'unregistered'` and `'removed-by-cleanup'`: why the worker left. Absent for the other types. */
  removalReason?: RemovalReason;
}

/**
 * Sent by `watchWorkers` instead of the events it could no longer replay (the
 * registry's event log had dropped them): every matching worker, listed
 * again. The events that follow start at `revision + 1`.
 */
export interface WorkerResyncEvent {
  type: "resync";
  /** The revision of the listing; the next event has a higher one. */
  revision: number;
  /** The matching workers, ordered by id. */
  workers: WorkerInfo[];
}

/** What `watchWorkers` yields. */
export type WorkerWatchEvent = WorkerChangeEvent | WorkerResyncEvent;

const EVENT_TYPES: ReadonlyMap<WorkerEventTypeValue, WorkerEventType> = new Map([
  [WorkerEventTypeValue.REGISTERED, "registered"],
  [WorkerEventTypeValue.UPDATED, "updated"],
  [WorkerEventTypeValue.HEALTH_CHANGED, "health-changed"],
  [WorkerEventTypeValue.STATE_CHANGED, "state-changed"],
  [WorkerEventTypeValue.UNREGISTERED, "unregistered"],
  [WorkerEventTypeValue.REMOVED_BY_CLEANUP, "removed-by-cleanup"],
]);

const REMOVAL_REASONS: ReadonlyMap<RemovalReasonValue, RemovalReason> = new Map([
  [RemovalReasonValue.UNREGISTERED, "unregistered"],
  [RemovalReasonValue.EXPIRED, "expired"],
  [RemovalReasonValue.REPLACED, "replaced"],
  [RemovalReasonValue.DRAINED, "drained"],
  [RemovalReasonValue.DRAIN_DEADLINE, "drain-deadline"],
]);

/**
 * Maps a WorkerEvent. An event of a type this client does not know
 * (UNSPECIFIED, or one added to the contract later) maps to undefined, for
 * the caller to skip. `previousHealth`, `previousState` and `removalReason`
 * are set only when the server sent them.
 *
 * @throws TypeError if the event carries no worker, which the contract never allows.
 */
export function toWorkerChangeEvent(event: WorkerEvent): WorkerChangeEvent | undefined {
  const type = EVENT_TYPES.get(event.type);
  if (type === undefined) {
    return undefined;
  }
  if (event.worker === undefined) {
    throw new TypeError(`WorkerEvent ${event.revision} without a worker`);
  }
  const change: WorkerChangeEvent = {
    type,
    revision: Number(event.revision),
    worker: toWorkerInfo(event.worker),
    occurredAt: dateOf(event.occurredAt),
  };
  if (event.previousHealthStatus !== HealthStatus.UNSPECIFIED) change.previousHealth = healthName(event.previousHealthStatus);
  if (event.previousState !== WorkerState.UNSPECIFIED) change.previousState = stateName(event.previousState);
  const removalReason = REMOVAL_REASONS.get(event.removalReason);
  if (removalReason !== undefined) change.removalReason = removalReason;
  return change;
}
