import { Counter, Histogram, type Registry } from "prom-client";
import type { TransportObserver } from "../transport/transport-observer.js";
import { TallyHistogram } from "./tally-histogram.js";

/**
 * RPC latency buckets, 100 µs to 5 s: in-memory reads answer well under a
 * millisecond, while writes wait for the store and a stalled disk shows up in seconds.
 * 2 ms is the selection calls' target under load (issue 16), so the share within it is exact.
 */
export const RPC_DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/**
 * Heartbeat handling buckets, 5 µs to 10 ms: a streamed heartbeat is handled
 * in memory (measured here: ~10-30 µs); anything in milliseconds means the
 * process is starved.
 */
export const HEARTBEAT_HANDLING_BUCKETS_SECONDS: readonly number[] = [
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
];

/**
 * Watch delivery lag buckets, 1 ms to 30 s: an event reaches a watcher that
 * keeps up within milliseconds of its commit (its commit's own write
 * included); seconds mean a slow reader, a busy process or a replica behind.
 */
export const WATCH_DELIVERY_LAG_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/**
 * The series the transport feeds as it serves, and the observer that feeds
 * them. Their labels take a bounded set of values: method names from the
 * contract (or "other"), gRPC status names.
 *
 * - `worker_registry_rpc_duration_seconds{method,code}` (histogram): unary calls.
 * - `worker_registry_refused_calls_total{method,code}` (counter).
 * - `worker_registry_heartbeat_handling_seconds` (histogram): streamed heartbeats, one in 16.
 * - `worker_registry_watch_delivery_lag_seconds` (histogram): live watch events.
 * - `worker_registry_watchers_dropped_total` (counter).
 */
export function createTransportMetrics(registry: Registry): TransportObserver {
  const registers = [registry];
  const rpcDuration = new Histogram({
    name: "worker_registry_rpc_duration_seconds",
    help: "Server-side latency of unary RPCs answered by this process, by method and gRPC status code.",
    labelNames: ["method", "code"] as const,
    buckets: [...RPC_DURATION_BUCKETS_SECONDS],
    registers,
  });
  const refused = new Counter({
    name: "worker_registry_refused_calls_total",
    help:
      "Calls this process answered with an error status instead of serving them, by method and gRPC status code: " +
      "unary calls that failed, streams refused when opened or ended with an error (not by a shutdown), health and reflection calls refused.",
    labelNames: ["method", "code"] as const,
    registers,
  });
  const heartbeatHandling = new Histogram({
    name: "worker_registry_heartbeat_handling_seconds",
    help:
      "Time this process took to handle a HeartbeatStream message, from its arrival to its reply being written; one heartbeat in 16 is timed " +
      "(unary Heartbeat calls are in worker_registry_rpc_duration_seconds).",
    buckets: [...HEARTBEAT_HANDLING_BUCKETS_SECONDS],
    registers,
  });
  // Observed once per event per watcher: a TallyHistogram, whose observe is a tenth of prom-client's.
  const deliveryLag = new TallyHistogram(
    "worker_registry_watch_delivery_lag_seconds",
    "Time from a change to its event being written to a live WatchWorkers stream of this process (replayed events are not timed).",
    WATCH_DELIVERY_LAG_BUCKETS_SECONDS,
    registry,
  );
  const dropped = new Counter({
    name: "worker_registry_watchers_dropped_total",
    help: "Live watchers this process ended for falling --watch-buffer events behind; each may resume from its last revision.",
    registers,
  });

  return {
    unaryAnswered: (method, code, seconds) => rpcDuration.observe({ method, code }, seconds),
    callRefused: (method, code) => refused.inc({ method, code }),
    heartbeatHandled: (seconds) => heartbeatHandling.observe(seconds),
    watchEventDelivered: (lagSeconds) => deliveryLag.observe(lagSeconds),
    watcherDropped: () => dropped.inc(),
  };
}
