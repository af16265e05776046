/**
 * `@sentinel/worker-registry-client`: a client of the
 * `sentinel.registry.v1.WorkerRegistryService` gRPC API with the method names
 * and result shapes of the Worker Registry usage guide; slot acquisition
 * (`acquireWorker`, `releaseWorker`, `withWorker`); a resuming `watchWorkers`;
 * the fleet's lifecycle (`cordonWorker`, `uncordonWorker`, `drainWorker`,
 * labels and versions); and a `WorkerNode` that keeps a worker registered and
 * heartbeating across server restarts and honours a drain; with several
 * registry addresses, all of it fails over between the replicas.
 */
export { WorkerRegistryClient } from "./worker-registry-client.js";
export { parseAddressList, type AddressOrder } from "./address-pool.js";
export {
  type CallContext,
  type DrainOptions,
  type LoadBalancingOptions,
  type RetryOptions,
  type WithWorkerOptions,
  type WorkerRegistryClientOptions,
} from "./client-options.js";
export { type HeartbeatStream } from "./registry-calls.js";
export { DEFAULT_WATCH_EVENTS_PER_MESSAGE, type WatchReconnectingEvent, type WatchWorkersOptions, type WorkerWatchQuery } from "./worker-watch.js";
export { WorkerNode } from "./worker-node.js";
export {
  type DrainEndReason,
  type HeartbeatEvent,
  type StopOptions,
  type WorkerNodeEvents,
  type WorkerNodeOptions,
  type WorkerNodeState,
} from "./worker-node-options.js";
export { WorkerDrainingError } from "./worker-draining-error.js";
export { NoWorkerAvailableError, RegistryClientError } from "./registry-client-error.js";
export {
  WORKER_HEALTH_STATES,
  WORKER_LIFECYCLE_STATES,
  type EvictionInfo,
  type ReplicaInfo,
  type RankedWorkerInfo,
  type RegistryStats,
  type ReleaseOutcome,
  type TaskCompletion,
  type WorkerAcquisition,
  type WorkerHealth,
  type WorkerHeartbeat,
  type WorkerInfo,
  type WorkerLifecycleState,
  type WorkerMetrics,
  type WorkerQuery,
  type WorkerRegistration,
} from "./worker-info.js";
export {
  type RemovalReason,
  type WorkerChangeEvent,
  type WorkerEventType,
  type WorkerResyncEvent,
  type WorkerWatchEvent,
} from "./worker-event.js";
export { backoffCeilingMs, fullJitterDelayMs, type BackoffPolicy, type RandomSource } from "./backoff.js";
