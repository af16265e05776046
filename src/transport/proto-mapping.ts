import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "../domain/errors.js";
import type { HealthStatus } from "../domain/health.js";
import type { FilterInput } from "../domain/validation.js";
import type { RankedWorkerView, WorkerView } from "../domain/worker-registry.js";
import {
  HealthStatus as ProtoHealthStatus,
  RankedWorkerSchema,
  WorkerSchema,
  type RankedWorker,
  type Worker,
  type WorkerFilter,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";

const TO_PROTO: Record<HealthStatus, ProtoHealthStatus> = {
  healthy: ProtoHealthStatus.HEALTHY,
  degraded: ProtoHealthStatus.DEGRADED,
  unhealthy: ProtoHealthStatus.UNHEALTHY,
};

const FROM_PROTO = new Map<number, HealthStatus>(Object.entries(TO_PROTO).map(([name, value]) => [value, name as HealthStatus]));

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
  return { capabilities: filter.capabilities, healthStatuses, minAvailableCapacity: filter.minAvailableCapacity };
}
