import { durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ReleaseOutcome as ReleaseOutcomeValue,
  RemovalReason as RemovalReasonValue,
  WorkerEventType as WorkerEventTypeValue,
  type AcquireWorkerResponse,
  type EvictionStatus,
  type GetRegistryStatsResponse,
  type ReplicaStatus,
  type WorkerEvent,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus, type RankedWorker, type Worker } from "./gen/sentinel/registry/v1/worker_pb.js";

/**
 * Plain result shapes, as the usage guide prints them (`worker.nodeId`,
 * `worker.metrics.averageTaskDuration`, `bestWorker.priority`), and the one
 * place that translates protobuf messages into them. Counters arrive as
 * bigint (uint64); they are converted to number here because a fleet does not
 * complete 2^53 tasks, and plain numbers survive `JSON.stringify`.
 */

/** A worker's health, derived by the server from the age of its last heartbeat. */
export type WorkerHealth = "healthy" | "degraded" | "unhealthy";

/** Every health state, in order from best to worst. */
export const WORKER_HEALTH_STATES: readonly WorkerHealth[] = ["healthy", "degraded", "unhealthy"];

/** What a worker declares when it registers. */
export interface WorkerRegistration {
  /** The node (host or process) the worker runs on; 1 to 253 characters. */
  nodeId: string;
  /** 1 to 64 distinct task kinds the worker accepts, e.g. `['coder', 'tester']`. */
  capabilities: string[];
  /** Tasks the worker runs at once; 1 to 10000. */
  maxConcurrentTasks: number;
}

/** Completion figures recorded with `recordTaskCompletion`. */
export interface WorkerMetrics {
  /** Tasks that completed successfully. */
  tasksCompleted: number;
  /** Tasks that completed with a failure. */
  tasksFailedCount: number;
  /** Mean duration of every recorded completion, in milliseconds; 0 before the first. */
  averageTaskDuration: number;
}

/** One registered worker as the registry saw it when it answered. */
export interface WorkerInfo {
  /** Assigned at registration: `worker-<unix ms>-<random>`. */
  id: string;
  nodeId: string;
  /** In the order given at registration. */
  capabilities: string[];
  healthStatus: WorkerHealth;
  currentTasks: number;
  maxConcurrentTasks: number;
  /** `maxConcurrentTasks - currentTasks`. */
  availableCapacity: number;
  /** completed / (completed + failed): the observed rate, 0 before any completion (see `metrics` for the counts). */
  successRate: number;
  registeredAt: Date;
  lastHeartbeatAt: Date;
  metrics: WorkerMetrics;
}

/** A worker with its load-balancing score and the parts it is made of. */
export interface RankedWorkerInfo extends WorkerInfo {
  /** 0.5 x capacityScore + 0.3 x successScore + 0.2 x speedScore with the default weights. */
  priority: number;
  /** Available slots / max slots. */
  capacityScore: number;
  /** The success rate, or the neutral prior before the first completion. */
  successScore: number;
  /** min(1, 1000ms / average duration), or the neutral prior before the first completion. */
  speedScore: number;
}

/** Which workers to return. Every condition that is set must hold. */
export interface WorkerQuery {
  /** A worker must have all of these capabilities. */
  capabilities?: string[];
  /**
   * A worker must be in one of these states. Empty or absent means every state
   * for `discoverWorkers`, and healthy plus degraded for load balancing.
   */
  healthStatus?: WorkerHealth[];
  /** A worker must have at least this many free slots. Default 0. */
  minAvailableCapacity?: number;
}

/** The fleet summarised for a dashboard. */
export interface RegistryStats {
  totalWorkers: number;
  healthyWorkers: number;
  degradedWorkers: number;
  unhealthyWorkers: number;
  /** Out of rotation until uncordoned (also counted by health). */
  cordonedWorkers: number;
  /** Draining: out of rotation until removed (also counted by health). */
  drainingWorkers: number;
  /** Sum of maxConcurrentTasks. */
  totalCapacity: number;
  /** Sum of currentTasks. */
  usedCapacity: number;
  availableCapacity: number;
  tasksCompleted: number;
  tasksFailed: number;
  /** completed / (completed + failed); 0 before any completion. */
  successRate: number;
  /** The server's clock when it answered. */
  serverTime: Date;
  /** The registry's revision when it answered: `watchWorkers` from `revision + 1` sees every later change. */
  revision: number;
  /** Slots held by reservations from `acquireWorker` that are neither released nor expired. */
  activeReservations: number;
  /** Whether cleanup is holding evictions back, and why. */
  eviction: EvictionInfo;
  /** The registry process that answered, among the replicas that share its store. */
  replica: ReplicaInfo;
}

/** One registry process among those that serve the same store (one with SQLite, any number with PostgreSQL). */
export interface ReplicaInfo {
  /** This process's name among the replicas. */
  replicaId: string;
  /** `'sqlite'` or `'postgres'`. */
  store: string;
  /** Whether this process runs the fleet-wide schedules (health transitions, cleanup, expiry, pruning). */
  leading: boolean;
  /** The replica that leads, as this one last saw it; `''` if none does. */
  leaderId: string;
  /** Grows at every change of leader. */
  leaderEpoch: number;
  /** Since when this process leads; undefined when it does not. */
  leadingSince: Date | undefined;
  /** The revision of the last event applied by this process. */
  appliedRevision: number;
  /** How long after its commit the last event from another process was applied here, in milliseconds. */
  replicationLagMs: number;
  /** Whether the store accepted this process's last write. */
  storeWritable: boolean;
}

const HEALTH_NAMES: ReadonlyMap<HealthStatus, WorkerHealth> = new Map([
  [HealthStatus.HEALTHY, "healthy"],
  [HealthStatus.DEGRADED, "degraded"],
  [HealthStatus.UNHEALTHY, "unhealthy"],
]);

const HEALTH_VALUES: ReadonlyMap<string, HealthStatus> = new Map(
  [...HEALTH_NAMES].map(([value, name]) => [name, value]),
);

/**
 * The guide's name for a protobuf health status. A value this client does not
 * know (UNSPECIFIED, or one added to the contract later) reads as
 * `'unhealthy'`: a worker whose health cannot be told must not be picked.
 */
export function healthName(value: HealthStatus): WorkerHealth {
  return HEALTH_NAMES.get(value) ?? "unhealthy";
}

/**
 * The protobuf value for a health name.
 *
 * @throws RangeError for anything but 'healthy', 'degraded' or 'unhealthy'
 *   (plain JavaScript callers can pass any string).
 */
export function healthValue(name: WorkerHealth): HealthStatus {
  const value = HEALTH_VALUES.get(name);
  if (value === undefined) {
    throw new RangeError(`healthStatus must be one of healthy, degraded, unhealthy; got ${JSON.stringify(name)}`);
  }
  return value;
}

/** Maps a protobuf Worker. A missing timestamp reads as the Unix epoch, a missing metrics block as zeros. */
export function toWorkerInfo(worker: Worker): WorkerInfo {
  return {
    id: worker.id,
    nodeId: worker.nodeId,
    capabilities: [...worker.capabilities],
    healthStatus: healthName(worker.healthStatus),
    currentTasks: worker.currentTasks,
    maxConcurrentTasks: worker.maxConcurrentTasks,
    availableCapacity: worker.availableCapacity,
    successRate: worker.successRate,
    registeredAt: dateOf(worker.registeredAt),
    lastHeartbeatAt: dateOf(worker.lastHeartbeatAt),
    metrics: {
      tasksCompleted: Number(worker.metrics?.tasksCompleted ?? 0n),
      tasksFailedCount: Number(worker.metrics?.tasksFailedCount ?? 0n),
      averageTaskDuration: worker.metrics?.averageTaskDurationMs ?? 0,
    },
  };
}

/**
 * Maps a protobuf RankedWorker: the worker's fields plus its scores.
 *
 * @throws TypeError if the message carries no worker, which the contract never allows.
 */
export function toRankedWorkerInfo(ranked: RankedWorker): RankedWorkerInfo {
  if (ranked.worker === undefined) {
    throw new TypeError("RankedWorker without a worker");
  }
  return {
    ...toWorkerInfo(ranked.worker),
    priority: ranked.priority,
    capacityScore: ranked.capacityScore,
    successScore: ranked.successScore,
    speedScore: ranked.speedScore,
  };
}

/** Whether the registry's cleanup is holding evictions back, and why. */
export interface EvictionInfo {
  paused: boolean;
  /** Why, in words; "" when not paused. */
  reason: string;
  pausedSince: Date | undefined;
  /** When the pause ends by itself if nothing changes; undefined when not paused. */
  resumesAt: Date | undefined;
  pausesTotal: number;
  /** Distinct workers heard from in the last complete intake window, and the level it is compared with. */
  lastWindowIntake: number;
  expectedIntake: number;
}

/** Maps an EvictionStatus message (an absent one reads as "not paused"). */
export function toEvictionInfo(status: EvictionStatus | undefined): EvictionInfo {
  return {
    paused: status?.paused ?? false,
    reason: status?.reason ?? "",
    pausedSince: status?.pausedSince === undefined ? undefined : timestampDate(status.pausedSince),
    resumesAt: status?.resumesAt === undefined ? undefined : timestampDate(status.resumesAt),
    pausesTotal: Number(status?.pausesTotal ?? 0n),
    lastWindowIntake: status?.lastWindowIntake ?? 0,
    expectedIntake: status?.expectedIntake ?? 0,
  };
}

/** Maps a GetRegistryStats response. */
export function toRegistryStats(stats: GetRegistryStatsResponse): RegistryStats {
  return {
    totalWorkers: stats.totalWorkers,
    healthyWorkers: stats.healthyWorkers,
    degradedWorkers: stats.degradedWorkers,
    unhealthyWorkers: stats.unhealthyWorkers,
    cordonedWorkers: stats.cordonedWorkers,
    drainingWorkers: stats.drainingWorkers,
    totalCapacity: Number(stats.totalCapacity),
    usedCapacity: Number(stats.usedCapacity),
    availableCapacity: Number(stats.availableCapacity),
    tasksCompleted: Number(stats.tasksCompleted),
    tasksFailed: Number(stats.tasksFailed),
    successRate: stats.successRate,
    serverTime: dateOf(stats.serverTime),
    revision: Number(stats.revision),
    activeReservations: Number(stats.activeReservations),
    eviction: toEvictionInfo(stats.eviction),
    replica: toReplicaInfo(stats.replica),
  };
}

/** Maps a ReplicaStatus message (an absent one, from an older server, reads as a lone SQLite process). */
export function toReplicaInfo(status: ReplicaStatus | undefined): ReplicaInfo {
  return {
    replicaId: status?.replicaId ?? "",
    store: status?.store ?? "",
    leading: status?.leading ?? false,
    leaderId: status?.leaderId ?? "",
    leaderEpoch: Number(status?.leaderEpoch ?? 0n),
    leadingSince: status?.leadingSince === undefined ? undefined : timestampDate(status.leadingSince),
    appliedRevision: Number(status?.appliedRevision ?? 0n),
    replicationLagMs: status?.replicationLag === undefined ? 0 : durationMs(status.replicationLag),
    storeWritable: status?.storeWritable ?? true,
  };
}

/** A Duration in milliseconds, or `undefined` when absent. */
export function durationMsOf(duration: Duration | undefined): number | undefined {
  return duration === undefined ? undefined : durationMs(duration);
}

/** A slot taken on a worker by `acquireWorker`. */
export interface WorkerAcquisition {
  /** The worker, ranked as `getWorkersForLoadBalancing` returns it, with the slot already counted in `currentTasks`. */
  worker: RankedWorkerInfo;
  /** The worker's load-balancing priority when it was chosen (the same as `worker.priority`). */
  priority: number;
  /** Pass to `releaseWorker` when the task ends. */
  reservationId: string;
  /** When the registry frees the slot by itself if it has not been released. */
  expiresAt: Date;
}

/** How a task that held a reservation ended, as `releaseWorker` records it. */
export interface TaskCompletion {
  /** Whether the task succeeded. */
  success: boolean;
  /** How long the task ran, in milliseconds: finite, 0 to 30 days. */
  durationMs: number;
}

/**
 * What `releaseWorker` did: `'released'` freed the slot and recorded the
 * outcome; `'already-released'` was a repeat and changed nothing;
 * `'expired'` recorded the outcome of a reservation whose slot the registry
 * had already freed because it outlived `expiresAt`.
 */
export type ReleaseOutcome = "released" | "already-released" | "expired";

/**
 * Maps an AcquireWorker response.
 *
 * @throws TypeError if it carries no worker, which the contract never allows.
 */
export function toWorkerAcquisition(response: AcquireWorkerResponse): WorkerAcquisition {
  if (response.worker === undefined) {
    throw new TypeError("AcquireWorker response without a worker");
  }
  const worker = toRankedWorkerInfo(response.worker);
  return { worker, priority: worker.priority, reservationId: response.reservationId, expiresAt: dateOf(response.expiresAt) };
}

const RELEASE_OUTCOMES: ReadonlyMap<ReleaseOutcomeValue, ReleaseOutcome> = new Map([
  [ReleaseOutcomeValue.RELEASED, "released"],
  [ReleaseOutcomeValue.ALREADY_RELEASED, "already-released"],
  [ReleaseOutcomeValue.EXPIRED, "expired"],
]);

/** The name of a release outcome, or undefined for one this client does not know (UNSPECIFIED, or newer than the client). */
export function releaseOutcomeName(value: ReleaseOutcomeValue): ReleaseOutcome | undefined {
  return RELEASE_OUTCOMES.get(value);
}

/**
 * What happened to a worker: `'registered'`; `'updated'` (task count, metrics
 * or reservations changed); `'health-changed'` (see `previousHealth`);
 * `'unregistered'` and `'removed-by-cleanup'` (see `removalReason`).
 */
export type WorkerEventType = "registered" | "updated" | "health-changed" | "unregistered" | "removed-by-cleanup";

/**
 * Why a worker left the registry: `'unregistered'` (UnregisterWorker was
 * called), `'expired'` (no heartbeat for longer than its record TTL), or
 * `'replaced'` (its nodeId registered again).
 */
export type RemovalReason = "unregistered" | "expired" | "replaced";

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
  [WorkerEventTypeValue.UNREGISTERED, "unregistered"],
  [WorkerEventTypeValue.REMOVED_BY_CLEANUP, "removed-by-cleanup"],
]);

const REMOVAL_REASONS: ReadonlyMap<RemovalReasonValue, RemovalReason> = new Map([
  [RemovalReasonValue.UNREGISTERED, "unregistered"],
  [RemovalReasonValue.EXPIRED, "expired"],
  [RemovalReasonValue.REPLACED, "replaced"],
]);

/**
 * Maps a WorkerEvent. An event of a type this client does not know
 * (UNSPECIFIED, or one added to the contract later) maps to undefined, for
 * the caller to skip. `previousHealth` and `removalReason` are set only when
 * the server sent them.
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
  const removalReason = REMOVAL_REASONS.get(event.removalReason);
  if (removalReason !== undefined) change.removalReason = removalReason;
  return change;
}

function dateOf(timestamp: Timestamp | undefined): Date {
  return timestamp === undefined ? new Date(0) : timestampDate(timestamp);
}
