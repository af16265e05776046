import { durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ReleaseOutcome as ReleaseOutcomeValue,
  type AcquireWorkerResponse,
  type EvictionStatus,
  type GetRegistryStatsResponse,
  type HeartbeatResponse,
  type ReplicaStatus,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus, WorkerState, type RankedWorker, type Worker } from "./gen/sentinel/registry/v1/worker_pb.js";

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

/**
 * Whether a worker is in rotation (ranked by `getWorkersForLoadBalancing`,
 * granted by `acquireWorker`): `'active'` is; `'cordoned'` is not until
 * `uncordonWorker`, and keeps heartbeating, its health and its running tasks;
 * `'draining'` is not for good, and is removed once idle or at its
 * `drainDeadline`.
 */
export type WorkerLifecycleState = "active" | "cordoned" | "draining";

/** Every lifecycle state, from in rotation to on its way out. */
export const WORKER_LIFECYCLE_STATES: readonly WorkerLifecycleState[] = ["active", "cordoned", "draining"];

/** What a worker declares when it registers. */
export interface WorkerRegistration {
  /** The node (host or process) the worker runs on; 1 to 253 characters. */
  nodeId: string;
  /** 1 to 64 distinct task kinds the worker accepts, e.g. `['coder', 'tester']`. */
  capabilities: string[];
  /** Tasks the worker runs at once; 1 to 10000. */
  maxConcurrentTasks: number;
  /**
   * At most 64 labels with Kubernetes' rules (a key is an optional DNS
   * subdomain prefix and `/`, then a name of 1 to 63 characters
   * `[a-zA-Z0-9-_.]` that starts and ends alphanumeric; a value is empty or
   * such a name), selected with `labelSelector`. Default none.
   */
  labels?: Record<string, string>;
  /** The worker's build, e.g. `'2026.11.3'` or a commit; at most 128 characters. Selected with `versions`. Default `''` (unversioned). */
  version?: string;
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
  /** As given at registration; `{}` without any. */
  labels: Record<string, string>;
  /** As given at registration; `''` means unversioned. */
  version: string;
  /** Whether the worker is in rotation; see {@link WorkerLifecycleState}. */
  state: WorkerLifecycleState;
  /** While draining: when the registry removes it whatever it still runs. Undefined otherwise. */
  drainDeadline: Date | undefined;
}

/** A worker as a unary heartbeat's reply shows it, with the registry's word on draining. */
export interface WorkerHeartbeat extends WorkerInfo {
  /** The worker is draining: it should take no new task, finish what it runs, and expect to be removed. */
  drainRequested: boolean;
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
  /**
   * Kubernetes' set-based label selector, requirements separated by commas,
   * all of which must hold: `zone=eu-1` (also `==`), `tier!=spot`,
   * `gpu in (a100,h100)`, `gpu notin (t4)`, `ssd` (has the label),
   * `!preemptible` (has not). A worker without a label matches `!=` and
   * `notin` on it. A syntax error is INVALID_ARGUMENT naming the position.
   * Default: any labels.
   */
  labelSelector?: string;
  /** A worker's version must be one of these. Empty or absent: any version. */
  versions?: string[];
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

const STATE_NAMES: ReadonlyMap<WorkerState, WorkerLifecycleState> = new Map([
  [WorkerState.ACTIVE, "active"],
  [WorkerState.CORDONED, "cordoned"],
  [WorkerState.DRAINING, "draining"],
]);

/**
 * The name of a protobuf worker state. UNSPECIFIED, which a registry from
 * before worker states sends, reads as `'active'`: such a registry keeps
 * every worker in rotation. A value added to the contract later reads as
 * `'cordoned'`: out of rotation, which is all this client can tell.
 */
export function stateName(value: WorkerState): WorkerLifecycleState {
  if (value === WorkerState.UNSPECIFIED) return "active";
  return STATE_NAMES.get(value) ?? "cordoned";
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
    labels: { ...worker.labels },
    version: worker.version,
    state: stateName(worker.state),
    drainDeadline: optionalDateOf(worker.drainDeadline),
  };
}

/**
 * Maps a unary Heartbeat response: the worker, and whether it drains. The
 * deadline is the reply's own, or the worker's when the reply has none.
 *
 * @throws TypeError if it carries no worker, which the contract never allows.
 */
export function toWorkerHeartbeat(response: HeartbeatResponse): WorkerHeartbeat {
  if (response.worker === undefined) {
    throw new TypeError("Heartbeat response without a worker");
  }
  const worker = toWorkerInfo(response.worker);
  return { ...worker, drainRequested: response.drainRequested, drainDeadline: optionalDateOf(response.drainDeadline) ?? worker.drainDeadline };
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
    pausedSince: optionalDateOf(status?.pausedSince),
    resumesAt: optionalDateOf(status?.resumesAt),
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
    leadingSince: optionalDateOf(status?.leadingSince),
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

/** A Timestamp as a Date; a missing one reads as the Unix epoch. */
export function dateOf(timestamp: Timestamp | undefined): Date {
  return timestamp === undefined ? new Date(0) : timestampDate(timestamp);
}

/** A Timestamp as a Date, or undefined when absent. */
export function optionalDateOf(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp === undefined ? undefined : timestampDate(timestamp);
}
