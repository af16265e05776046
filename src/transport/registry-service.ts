import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status, type handleUnaryCall, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import {
  AcquireWorkerResponseSchema,
  CordonWorkerResponseSchema,
  DrainWorkerResponseSchema,
  UncordonWorkerResponseSchema,
  type CordonWorkerRequest,
  type DrainWorkerRequest,
  type UncordonWorkerRequest,
  DiscoverWorkersResponseSchema,
  GetRegistryStatsResponseSchema,
  GetWorkerResponseSchema,
  GetWorkersForLoadBalancingResponseSchema,
  HeartbeatResponseSchema,
  RecordTaskCompletionResponseSchema,
  RegisterWorkerResponseSchema,
  ReleaseOutcome,
  ReleaseWorkerResponseSchema,
  ResumeEvictionResponseSchema,
  UnregisterWorkerResponseSchema,
  UpdateTaskCountResponseSchema,
  type AcquireWorkerRequest,
  type DiscoverWorkersRequest,
  type GetWorkerRequest,
  type GetWorkersForLoadBalancingRequest,
  type HeartbeatRequest,
  type RecordTaskCompletionRequest,
  type RegisterWorkerRequest,
  type ReleaseWorkerRequest,
  type UnregisterWorkerRequest,
  type UpdateTaskCountRequest,
} from "@sentinel/worker-registry-client/contract";
import type { Operation } from "../security/access-policy.js";
import type { Principal } from "../security/roles.js";
import type { CallGuard } from "./call-guard.js";
import type { HeartbeatStreams } from "./heartbeat-streams.js";
import type { WatchStreams } from "./watch-streams.js";
import { evictionToProto, filterFromProto, rankedWorkerToProto, replicaToProto, workerToProto } from "./proto-mapping.js";
import { statusForError } from "./status.js";
import type { TransportObserver } from "./transport-observer.js";

const RELEASE_OUTCOMES = {
  released: ReleaseOutcome.RELEASED,
  "already-released": ReleaseOutcome.ALREADY_RELEASED,
  expired: ReleaseOutcome.EXPIRED,
} as const;

/**
 * The WorkerRegistryService handlers. They only translate between the wire
 * and the domain; every rule lives in WorkerRegistry, and every error goes
 * through the one status table.
 *
 * `observer` hears of each unary call once its answer is sent (the method,
 * the gRPC status name and the seconds since the call arrived), and of each
 * one answered with an error; the streams report to it themselves.
 */
export function registryServiceHandlers(
  registry: WorkerRegistry,
  streams: { readonly heartbeats: HeartbeatStreams; readonly watches: WatchStreams },
  guard: CallGuard,
  clock: Clock,
  log: Logger,
  observer: TransportObserver,
): UntypedServiceImplementation {
  /**
   * A unary handler: authenticates the call, checks `operation` against the
   * access policy (for the worker `workerOf` names, if given), then runs.
   */
  const unary = <Req, Res>(
    method: string,
    operation: Operation,
    workerOf: ((request: Req) => string) | undefined,
    handler: (request: Req, principal: Principal, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>,
  ): handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const startedMs = clock.monotonic();
      const observed = (code: status) => {
        const name = status[code];
        observer.unaryAnswered(method, name, (clock.monotonic() - startedMs) / 1000);
        if (code !== status.OK) observer.callRefused(method, name);
      };
      // A synchronous throw and a rejection take the same path.
      new Promise<Res>((resolve) => {
        const principal = guard.principal(call.metadata);
        guard.authorize(principal, operation, workerOf?.(call.request));
        resolve(handler(call.request, principal, call));
      }).then(
        (response) => {
          callback(null, response);
          observed(status.OK);
        },
        (error: unknown) => {
          const answer = statusForError(error, log, method);
          callback(answer);
          observed(answer.code);
        },
      );
    };

  const byWorker = (request: { readonly workerId: string }) => request.workerId;

  return {
    registerWorker: unary("RegisterWorker", "register", undefined, async (request: RegisterWorkerRequest, principal, call) => {
      guard.admitRegistration(call.getPeer());
      const worker = await registry.registerWorker(request, principal.kind === "role" ? principal.tokenHash : null);
      return create(RegisterWorkerResponseSchema, { worker: workerToProto(worker), workerToken: worker.token });
    }),
    unregisterWorker: unary("UnregisterWorker", "unregister", byWorker, async (request: UnregisterWorkerRequest) => {
      await registry.unregisterWorker(request.workerId);
      return create(UnregisterWorkerResponseSchema);
    }),
    heartbeat: unary("Heartbeat", "heartbeat", byWorker, (request: HeartbeatRequest) => {
      const worker = registry.heartbeat(request.workerId);
      return create(HeartbeatResponseSchema, {
        worker: workerToProto(worker),
        drainRequested: worker.drainDeadlineMs !== null,
        ...(worker.drainDeadlineMs === null ? {} : { drainDeadline: timestampFromMs(worker.drainDeadlineMs) }),
      });
    }),
    heartbeatStream: streams.heartbeats.handle,
    updateTaskCount: unary("UpdateTaskCount", "account", byWorker, async (request: UpdateTaskCountRequest) => {
      const worker = await registry.updateTaskCount(request.workerId, request.delta);
      return create(UpdateTaskCountResponseSchema, { worker: workerToProto(worker) });
    }),
    recordTaskCompletion: unary("RecordTaskCompletion", "account", byWorker, async (request: RecordTaskCompletionRequest) => {
      const worker = await registry.recordTaskCompletion(request.workerId, request.success, request.durationMs);
      return create(RecordTaskCompletionResponseSchema, { worker: workerToProto(worker) });
    }),
    getWorker: unary("GetWorker", "read-worker", byWorker, (request: GetWorkerRequest) =>
      create(GetWorkerResponseSchema, { worker: workerToProto(registry.getWorker(request.workerId)) }),
    ),
    discoverWorkers: unary("DiscoverWorkers", "read-fleet", undefined, (request: DiscoverWorkersRequest) => {
      const page = registry.discoverWorkers(filterFromProto(request.filter), request.pageSize, request.pageToken);
      return create(DiscoverWorkersResponseSchema, {
        workers: page.workers.map(workerToProto),
        nextPageToken: page.nextPageToken,
        revision: BigInt(page.revision),
      });
    }),
    getWorkersForLoadBalancing: unary("GetWorkersForLoadBalancing", "read-fleet", undefined, (request: GetWorkersForLoadBalancingRequest) => {
      const ranked = registry.getWorkersForLoadBalancing(filterFromProto(request.filter), request.limit);
      return create(GetWorkersForLoadBalancingResponseSchema, { workers: ranked.map(rankedWorkerToProto) });
    }),
    getRegistryStats: unary("GetRegistryStats", "read-fleet", undefined, () => {
      const stats = registry.getRegistryStats();
      return create(GetRegistryStatsResponseSchema, {
        ...stats,
        totalCapacity: BigInt(stats.totalCapacity),
        usedCapacity: BigInt(stats.usedCapacity),
        availableCapacity: BigInt(stats.availableCapacity),
        tasksCompleted: BigInt(stats.tasksCompleted),
        tasksFailed: BigInt(stats.tasksFailed),
        serverTime: timestampFromMs(clock.now()),
        revision: BigInt(stats.revision),
        activeReservations: BigInt(stats.activeReservations),
        eviction: evictionToProto(stats.eviction),
        replica: replicaToProto(stats),
      });
    }),
    acquireWorker: unary("AcquireWorker", "reserve", undefined, async (request: AcquireWorkerRequest) => {
      const acquired = await registry.acquireWorker(filterFromProto(request.filter));
      return create(AcquireWorkerResponseSchema, {
        worker: rankedWorkerToProto(acquired.ranked),
        reservationId: acquired.reservationId,
        expiresAt: timestampFromMs(acquired.expiresAtMs),
      });
    }),
    releaseWorker: unary("ReleaseWorker", "reserve", undefined, async (request: ReleaseWorkerRequest) => {
      const release = await registry.releaseWorker(request.reservationId, request.success, request.durationMs);
      return create(ReleaseWorkerResponseSchema, { outcome: RELEASE_OUTCOMES[release.outcome], worker: workerToProto(release.worker) });
    }),
    watchWorkers: streams.watches.handle,
    cordonWorker: unary("CordonWorker", "cordon", byWorker, async (request: CordonWorkerRequest) =>
      create(CordonWorkerResponseSchema, { worker: workerToProto(await registry.cordonWorker(request.workerId)) }),
    ),
    uncordonWorker: unary("UncordonWorker", "cordon", byWorker, async (request: UncordonWorkerRequest) =>
      create(UncordonWorkerResponseSchema, { worker: workerToProto(await registry.uncordonWorker(request.workerId)) }),
    ),
    drainWorker: unary("DrainWorker", "drain", byWorker, async (request: DrainWorkerRequest) => {
      const graceMs = request.grace === undefined ? undefined : durationMs(request.grace);
      return create(DrainWorkerResponseSchema, { worker: workerToProto(await registry.drainWorker(request.workerId, graceMs)) });
    }),
    resumeEviction: unary("ResumeEviction", "administer", undefined, () => {
      const { wasPaused, eviction } = registry.resumeEviction();
      return create(ResumeEvictionResponseSchema, { wasPaused, eviction: evictionToProto(eviction) });
    }),
  };
}
