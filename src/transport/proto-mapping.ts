import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "../domain/errors.js";
import type { HealthStatus } from "../domain/health.js";
import type { FilterInput } from "../domain/validation.js";
import type { WorkerState } from "../domain/worker-record.js";
import type { EvictionStatus } from "../domain/eviction-guard.js";
import type { RemovalReason as DomainRemovalReason, WorkerEvent, WorkerEventType } from "../domain/worker-events.js";
import type { RankedWorkerView, WorkerView } from "../domain/worker-view.js";
import type { RegistryStats } from "../domain/registry-stats.js";
import {
  EvictionStatusSchema,
  RemovalReason,
  ReplicaStatusSchema,
  type ReplicaStatus as ProtoReplicaStatus,
  WorkerEventSchema,
  WorkerEventType as ProtoWorkerEventType,
  type EvictionStatus as ProtoEvictionStatus,
  type WorkerEvent as ProtoWorkerEvent,
} from "@sentinel/worker-registry-client/contract";
import {
  HealthStatus as ProtoHealthStatus,
  RankedWorkerSchema,
  WorkerSchema,
  type RankedWorker,
  type Worker,
  type WorkerFilter,
  WorkerState as ProtoWorkerState,
} from "@sentinel/worker-registry-client/contract";

const TO_PROTO: Record<HealthStatus, ProtoHealthStatus> = {
  healthy: ProtoHealthStatus.HEALTHY,
  degraded: ProtoHealthStatus.DEGRADED,
  unhealthy: ProtoHealthStatus.UNHEALTHY,
};

const FROM_PROTO = new Map<number, HealthStatus>(Object.entries(TO_PROTO).map(([name, value]) => [value, name as HealthStatus]));

const STATES: Record<WorkerState, ProtoWorkerState> = {
  active: ProtoWorkerState.ACTIVE,
  cordoned: ProtoWorkerState.CORDONED,
  draining: ProtoWorkerState.DRAINING,
};

/** The wire form of a health status. */
export function healthToProto(health: HealthStatus): ProtoHealthStatus {
  return TO_PROTO[health];
}

/** The wire form of a worker. */
export function workerToProto(worker: WorkerView): Worker {
  return create(WorkerSchema, {
    id: worker.id,
    nodeId: worker.nodeId,
    capabilities: [...worker.capabilities],
    maxConcurrentTasks: worker.maxConcurrentTasks,
    currentTasks: worker.currentTasks,
    availableCapacity: worker.availableCapacity,
    successRate: worker.successRate,
    healthStatus: TO_PROTO[worker.healthStatus],
    registeredAt: timestampFromMs(worker.registeredAtMs),
    lastHeartbeatAt: timestampFromMs(worker.lastHeartbeatAtMs),
    labels: { ...worker.labels },
    version: worker.version,
    state: STATES[worker.state],
    ...(worker.drainDeadlineMs === null ? {} : { drainDeadline: timestampFromMs(worker.drainDeadlineMs) }),
    metrics: {
      tasksCompleted: BigInt(worker.metrics.tasksCompleted),
      tasksFailedCount: BigInt(worker.metrics.tasksFailedCount),
      averageTaskDurationMs: worker.metrics.averageTaskDurationMs,
    },
  });
}

/** The wire form of a ranked worker. */
export function rankedWorkerToProto(ranked: RankedWorkerView): RankedWorker {
  return create(RankedWorkerSchema, {
    worker: workerToProto(ranked.worker),
    priority: ranked.priority,
    capacityScore: ranked.capacityScore,
    successScore: ranked.successScore,
    speedScore: ranked.speedScore,
  });
}

/**
 * A filter from the wire; a missing filter matches everything.
 * @throws InvalidArgumentError for a health status outside the enum (including UNSPECIFIED).
 */
export function filterFromProto(filter: WorkerFilter | undefined): FilterInput {
  if (filter === undefined) return { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };
  const healthStatuses = filter.healthStatuses.map((value, index) => {
    const health = FROM_PROTO.get(value);
    if (health === undefined) {
      throw new InvalidArgumentError(
        `filter.health_statuses[${index}]`,
        `must be HEALTH_STATUS_HEALTHY, HEALTH_STATUS_DEGRADED or HEALTH_STATUS_UNHEALTHY, got ${value}`,
      );
    }
    return health;
  });
  return {
    capabilities: filter.capabilities,
    healthStatuses,
    minAvailableCapacity: filter.minAvailableCapacity,
    labelSelector: filter.labelSelector,
    versions: filter.versions,
  };
}

const REMOVAL_REASONS: Record<DomainRemovalReason, RemovalReason> = {
  unregistered: RemovalReason.UNREGISTERED,
  expired: RemovalReason.EXPIRED,
  replaced: RemovalReason.REPLACED,
  drained: RemovalReason.DRAINED,
  drain_deadline: RemovalReason.DRAIN_DEADLINE,
};

const EVENT_TYPES: Record<WorkerEventType, ProtoWorkerEventType> = {
  registered: ProtoWorkerEventType.REGISTERED,
  updated: ProtoWorkerEventType.UPDATED,
  health_changed: ProtoWorkerEventType.HEALTH_CHANGED,
  state_changed: ProtoWorkerEventType.STATE_CHANGED,
  unregistered: ProtoWorkerEventType.UNREGISTERED,
  removed: ProtoWorkerEventType.REMOVED_BY_CLEANUP,
};

/** The wire form of a worker event. */
export function eventToProto(event: WorkerEvent): ProtoWorkerEvent {
  return create(WorkerEventSchema, {
    revision: BigInt(event.revision),
    type: EVENT_TYPES[event.type],
    worker: workerToProto(event.worker),
    occurredAt: timestampFromMs(event.occurredAtMs),
    previousHealthStatus: event.previousHealth === undefined ? ProtoHealthStatus.UNSPECIFIED : TO_PROTO[event.previousHealth],
    removalReason: event.reason === undefined ? RemovalReason.UNSPECIFIED : REMOVAL_REASONS[event.reason],
    previousState: event.previousState === undefined ? ProtoWorkerState.UNSPECIFIED : STATES[event.previousState],
  });
}

/** The wire form of the eviction guard's status. */
export function evictionToProto(status: EvictionStatus): ProtoEvictionStatus {
  return create(EvictionStatusSchema, {
    paused: status.paused,
    reason: status.reason,
    ...(status.pausedSinceMs === undefined ? {} : { pausedSince: timestampFromMs(status.pausedSinceMs) }),
    pausesTotal: BigInt(status.pausesTotal),
    lastWindowIntake: status.lastWindowIntake,
    expectedIntake: status.expectedIntake,
    ...(status.resumesAtMs === undefined ? {} : { resumesAt: timestampFromMs(status.resumesAtMs) }),
  });
}

/** The wire form of a process's place among the replicas of its store. */
export function replicaToProto(stats: RegistryStats): ProtoReplicaStatus {
  const { leadership, replication } = stats;
  return create(ReplicaStatusSchema, {
    replicaId: leadership.owner,
    store: replication.store,
    leading: leadership.leading,
    leaderId: leadership.leader,
    leaderEpoch: BigInt(leadership.epoch),
    ...(leadership.leadingSinceMs === undefined ? {} : { leadingSince: timestampFromMs(leadership.leadingSinceMs) }),
    appliedRevision: BigInt(stats.revision),
    replicationLag: durationFromMs(replication.lagMs),
    storeWritable: replication.storeWritable,
  });
}
