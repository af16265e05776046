import { durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { EvictionStatus, GetRegistryStatsResponse } from "./gen/sentinel/registry/v1/registry_service_pb.js";
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
    totalCapacity: Number(stats.totalCapacity),
    usedCapacity: Number(stats.usedCapacity),
    availableCapacity: Number(stats.availableCapacity),
    tasksCompleted: Number(stats.tasksCompleted),
    tasksFailed: Number(stats.tasksFailed),
    successRate: stats.successRate,
    serverTime: dateOf(stats.serverTime),
  };
}

/** A Duration in milliseconds, or `undefined` when absent. */
export function durationMsOf(duration: Duration | undefined): number | undefined {
  return duration === undefined ? undefined : durationMs(duration);
}

function dateOf(timestamp: Timestamp | undefined): Date {
  return timestamp === undefined ? new Date(0) : timestampDate(timestamp);
}
