/**
 * `@sentinel/worker-registry-client`: a client of the
 * `sentinel.registry.v1.WorkerRegistryService` gRPC API with the method names
 * and result shapes of the Worker Registry usage guide, and a `WorkerNode`
 * that keeps a worker registered and heartbeating across server restarts.
 */
export {
  WorkerRegistryClient,
  type CallContext,
  type HeartbeatStream,
  type LoadBalancingOptions,
  type RetryOptions,
  type WorkerRegistryClientOptions,
} from "./worker-registry-client.js";
export {
  WorkerNode,
  type HeartbeatEvent,
  type WorkerNodeEvents,
  type WorkerNodeOptions,
  type WorkerNodeState,
} from "./worker-node.js";
export { RegistryClientError } from "./registry-client-error.js";
export {
  WORKER_HEALTH_STATES,
  type EvictionInfo,
  type RankedWorkerInfo,
  type RegistryStats,
  type WorkerHealth,
  type WorkerInfo,
  type WorkerMetrics,
  type WorkerQuery,
  type WorkerRegistration,
} from "./worker-info.js";
export { backoffCeilingMs, fullJitterDelayMs, type BackoffPolicy, type RandomSource } from "./backoff.js";
