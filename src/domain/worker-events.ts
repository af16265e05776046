import type { HealthStatus } from "./health.js";
import type { LabelSelector } from "./labels.js";
import type { ReservationRecord, WorkerRecord, WorkerState } from "./worker-record.js";
import type { WorkerView } from "./worker-view.js";

/** What happened to a worker; the type of a revisioned event. */
export type WorkerEventType = "registered" | "updated" | "health_changed" | "state_changed" | "unregistered" | "removed";

/**
 * Why a worker left the registry: UnregisterWorker, cleanup past its TTL, a
 * new registration of its node_id, a drain that ran out of tasks, or a drain
 * that ran out of time.
 */
export type RemovalReason = "unregistered" | "expired" | "replaced" | "drained" | "drain_deadline";

/** A reservation that a change granted or ended, carried by its event so every replica's read model follows. */
export type ReservationChange = { readonly granted: ReservationRecord } | { readonly ended: string };

/**
 * One committed change, as the store wrote it: numbered by the registry-wide
 * revision, with the worker's record right after the change (for a removal,
 * as it was when removed). Every replica's read model is the fold of these,
 * in revision order.
 */
export interface CommittedEvent {
  /** Strictly increasing across the whole registry, without gaps, in commit order. */
  readonly revision: number;
  readonly type: WorkerEventType;
  /** Wall-clock ms. */
  readonly occurredAtMs: number;
  readonly worker: WorkerRecord;
  /** For health_changed: the health before. */
  readonly previousHealth?: HealthStatus;
  /**
   * For a downgrade: the last heartbeat it was judged by (wall-clock ms). A
   * process that knows a later one heals the worker again.
   */
  readonly heardUntilMs?: number;
  /** For unregistered and removed: why the worker left. */
  readonly reason?: RemovalReason;
  /** For state_changed: the state before. */
  readonly previousState?: WorkerState;
  readonly reservation?: ReservationChange;
}

/** An event as watchers receive it: the worker as callers see it. */
export interface WorkerEvent {
  readonly revision: number;
  readonly type: WorkerEventType;
  /** The worker right after the event. */
  readonly worker: WorkerView;
  /** Wall-clock ms. */
  readonly occurredAtMs: number;
  /** For health_changed: the health before. */
  readonly previousHealth?: HealthStatus;
  /** For unregistered and removed: why the worker left. */
  readonly reason?: RemovalReason;
  /** For state_changed: the state before. */
  readonly previousState?: WorkerState;
}

/** What a watcher asks for. Only static or before/after-comparable conditions: see {@link eventMatches}. */
export interface WatchFilter {
  /** The worker must have all of them. */
  readonly capabilities: readonly string[];
  /** The worker's health before or after the event must be one of them; empty matches any. */
  readonly healthStatuses: readonly HealthStatus[];
  /** The worker's labels must match it (labels never change on a worker). */
  readonly labelSelector: LabelSelector;
  /** The worker's version must be one of them; empty matches any. */
  readonly versions: readonly string[];
}

/**
 * Whether a watcher with this filter gets the event. Health is compared
 * before and after, so a watcher of healthy workers also sees the event that
 * makes one degraded.
 */
export function eventMatches(filter: WatchFilter, event: WorkerEvent): boolean {
  if (!filter.capabilities.every((capability) => event.worker.capabilities.includes(capability))) return false;
  if (filter.versions.length > 0 && !filter.versions.includes(event.worker.version)) return false;
  if (!filter.labelSelector.matches(event.worker.labels)) return false;
  if (filter.healthStatuses.length === 0) return true;
  return (
    filter.healthStatuses.includes(event.worker.healthStatus) ||
    (event.previousHealth !== undefined && filter.healthStatuses.includes(event.previousHealth))
  );
}

/** Receives the events of one watcher. */
export type WatchListener = (event: WorkerEvent) => void;

/** The parts of an event a store keeps in its payload column; the rest are columns of their own. */
type Payload = Pick<CommittedEvent, "worker" | "previousHealth" | "heardUntilMs" | "reason" | "previousState" | "reservation">;

/** The payload a store keeps for an event: JSON, version 2 (the record, not a view). */
export function encodeEventPayload(event: Payload): string {
  return JSON.stringify({
    v: 2,
    worker: event.worker,
    ...(event.previousHealth === undefined ? {} : { previousHealth: event.previousHealth }),
    ...(event.heardUntilMs === undefined ? {} : { heardUntilMs: event.heardUntilMs }),
    ...(event.reason === undefined ? {} : { reason: event.reason }),
    ...(event.previousState === undefined ? {} : { previousState: event.previousState }),
    ...(event.reservation === undefined ? {} : { reservation: event.reservation }),
  });
}

/**
 * Reads a stored payload back. Payloads written before version 2 held the
 * worker's view; they are read into a record (no token: such events are only
 * ever replayed to watchers, never applied to a read model).
 */
export function decodeEventPayload(payload: string): Payload {
  const parsed = JSON.parse(payload) as Omit<Partial<Payload>, "worker"> & { v?: number; worker: unknown };
  const worker = parsed.v === 2 ? withLifecycleDefaults(parsed.worker as WorkerRecord) : recordOfV1View(parsed.worker as WorkerView);
  return {
    worker,
    ...(parsed.previousHealth === undefined ? {} : { previousHealth: parsed.previousHealth }),
    ...(parsed.heardUntilMs === undefined ? {} : { heardUntilMs: parsed.heardUntilMs }),
    ...(parsed.reason === undefined ? {} : { reason: parsed.reason }),
    ...(parsed.previousState === undefined ? {} : { previousState: parsed.previousState }),
    ...(parsed.reservation === undefined ? {} : { reservation: parsed.reservation }),
  };
}

/** Records written before labels, versions and states existed: none, unversioned, active. */
function withLifecycleDefaults(record: Partial<WorkerRecord> & Omit<WorkerRecord, "labels" | "version" | "state" | "drainDeadlineMs">): WorkerRecord {
  return { ...record, labels: record.labels ?? {}, version: record.version ?? "", state: record.state ?? "active", drainDeadlineMs: record.drainDeadlineMs ?? null };
}

function recordOfV1View(view: WorkerView): WorkerRecord {
  const completions = view.metrics.tasksCompleted + view.metrics.tasksFailedCount;
  return {
    id: view.id,
    nodeId: view.nodeId,
    capabilities: view.capabilities,
    maxConcurrentTasks: view.maxConcurrentTasks,
    currentTasks: view.currentTasks,
    tasksCompleted: view.metrics.tasksCompleted,
    tasksFailed: view.metrics.tasksFailedCount,
    totalTaskDurationMs: view.metrics.averageTaskDurationMs * completions,
    registeredAtMs: view.registeredAtMs,
    lastHeartbeatAtMs: view.lastHeartbeatAtMs,
    health: view.healthStatus,
    tokenHash: "",
    registeredBy: null,
    labels: {},
    version: "",
    state: "active",
    drainDeadlineMs: null,
  };
}
