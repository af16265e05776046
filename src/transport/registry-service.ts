import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { handleUnaryCall, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import {
  DiscoverWorkersResponseSchema,
  GetRegistryStatsResponseSchema,
  GetWorkerResponseSchema,
  GetWorkersForLoadBalancingResponseSchema,
  HeartbeatResponseSchema,
  RecordTaskCompletionResponseSchema,
  RegisterWorkerResponseSchema,
  UnregisterWorkerResponseSchema,
  UpdateTaskCountResponseSchema,
  type DiscoverWorkersRequest,
  type GetWorkerRequest,
  type GetWorkersForLoadBalancingRequest,
  type HeartbeatRequest,
  type RecordTaskCompletionRequest,
  type RegisterWorkerRequest,
  type UnregisterWorkerRequest,
  type UpdateTaskCountRequest,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import type { HeartbeatStreams } from "./heartbeat-streams.js";
import { filterFromProto, rankedWorkerToProto, workerToProto } from "./proto-mapping.js";
import { statusForError } from "./status.js";

/**
 * The WorkerRegistryService handlers. They only translate between the wire
 * and the domain; every rule lives in WorkerRegistry, and every error goes
 * through the one status table.
 */
export function registryServiceHandlers(
  registry: WorkerRegistry,
  heartbeatStreams: HeartbeatStreams,
  clock: Clock,
  log: Logger,
): UntypedServiceImplementation {
  const unary = <Req, Res>(method: string, handler: (request: Req) => Res | Promise<Res>): handleUnaryCall<Req, Res> =>
    (call, callback) => {
      // A synchronous throw and a rejection take the same path.
      new Promise<Res>((resolve) => resolve(handler(call.request))).then(
        (response) => callback(null, response),
        (error: unknown) => callback(statusForError(error, log, method)),
      );
    };

  return {
    registerWorker: unary("RegisterWorker", async (request: RegisterWorkerRequest) => {
      const worker = await registry.registerWorker(request);
      return create(RegisterWorkerResponseSchema, { worker: workerToProto(worker) });
    }),
    unregisterWorker: unary("UnregisterWorker", async (request: UnregisterWorkerRequest) => {
      await registry.unregisterWorker(request.workerId);
      return create(UnregisterWorkerResponseSchema);
    }),
    heartbeat: unary("Heartbeat", (request: HeartbeatRequest) =>
      create(HeartbeatResponseSchema, { worker: workerToProto(registry.heartbeat(request.workerId)) }),
    ),
    heartbeatStream: heartbeatStreams.handle,
    updateTaskCount: unary("UpdateTaskCount", async (request: UpdateTaskCountRequest) => {
      const worker = await registry.updateTaskCount(request.workerId, request.delta);
      return create(UpdateTaskCountResponseSchema, { worker: workerToProto(worker) });
    }),
    recordTaskCompletion: unary("RecordTaskCompletion", async (request: RecordTaskCompletionRequest) => {
      const worker = await registry.recordTaskCompletion(request.workerId, request.success, request.durationMs);
      return create(RecordTaskCompletionResponseSchema, { worker: workerToProto(worker) });
    }),
    getWorker: unary("GetWorker", (request: GetWorkerRequest) =>
      create(GetWorkerResponseSchema, { worker: workerToProto(registry.getWorker(request.workerId)) }),
    ),
    discoverWorkers: unary("DiscoverWorkers", (request: DiscoverWorkersRequest) => {
      const page = registry.discoverWorkers(filterFromProto(request.filter), request.pageSize, request.pageToken);
      return create(DiscoverWorkersResponseSchema, { workers: page.workers.map(workerToProto), nextPageToken: page.nextPageToken });
    }),
    getWorkersForLoadBalancing: unary("GetWorkersForLoadBalancing", (request: GetWorkersForLoadBalancingRequest) => {
      const ranked = registry.getWorkersForLoadBalancing(filterFromProto(request.filter), request.limit);
      return create(GetWorkersForLoadBalancingResponseSchema, { workers: ranked.map(rankedWorkerToProto) });
    }),
    getRegistryStats: unary("GetRegistryStats", () => {
      const stats = registry.getRegistryStats();
      return create(GetRegistryStatsResponseSchema, {
        ...stats,
        totalCapacity: BigInt(stats.totalCapacity),
        usedCapacity: BigInt(stats.usedCapacity),
        availableCapacity: BigInt(stats.availableCapacity),
        tasksCompleted: BigInt(stats.tasksCompleted),
        tasksFailed: BigInt(stats.tasksFailed),
        serverTime: timestampFromMs(clock.now()),
      });
    }),
  };
}
