import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { RegistryCounters, RegistryStats } from "../domain/worker-registry.js";

/**
 * What the metrics read, and nothing more: the registry's stats and counters
 * and the number of open streams. Kept free of grpc-js so the metrics can be
 * fed by any transport, or by a test.
 */
export interface RegistryMetricsSource {
  /** Fleet counts, capacity, reservations and eviction status as of now; called at scrape time. */
  stats(): Pick<
    RegistryStats,
    "totalWorkers" | "healthyWorkers" | "cordonedWorkers" | "drainingWorkers" | "degradedWorkers" | "unhealthyWorkers" | "totalCapacity" | "usedCapacity" | "activeReservations" | "eviction"
  >;
  /** Counters that only go up while the process lives; called at scrape time. */
  counters(): Readonly<RegistryCounters>;
  /** Open HeartbeatStream and WatchWorkers calls; called at scrape time. */
  openStreams(): { readonly heartbeat: number; readonly watch: number };
}

/** The registry's Prometheus metrics. */
export interface RegistryMetrics {
  /** A registry of its own (never prom-client's global one), holding every series below and the process metrics. */
  readonly registry: Registry;
  /**
   * Records one finished unary RPC in `worker_registry_rpc_duration_seconds`.
   * @param method the RPC's name as in the proto, e.g. "RegisterWorker".
   * @param code the gRPC status name, e.g. "OK", "NOT_FOUND".
   */
  observeRpc(method: string, code: string, seconds: number): void;
}

/**
 * RPC latency buckets, 100 µs to 5 s: in-memory reads answer well under a
 * millisecond, while writes wait for SQLite and a stalled disk shows up in seconds.
 * 2 ms is the selection calls' target under load (issue 16), so the share within it is exact.
 */
export const RPC_DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/**
 * Builds the registry's metrics on a new prom-client registry. Gauges and
 * counters are computed from `source` when Prometheus scrapes, so serving a
 * call costs nothing; only `observeRpc` does work per call.
 *
 * Series:
 * - `worker_registry_workers{health}` (gauge): workers per health tier.
 * - `worker_registry_capacity_slots{state="used"|"total"}` (gauge).
 * - `worker_registry_active_reservations` (gauge).
 * - `worker_registry_open_streams{kind="heartbeat"|"watch"}` (gauge).
 * - `worker_registry_eviction_paused` (gauge, 0 or 1).
 * - `worker_registry_heartbeats_total`, `worker_registry_acquisitions_total`,
 *   `worker_registry_releases_total`, `worker_registry_reservations_expired_total`,
 *   `worker_registry_eviction_pauses_total` (counters). Heartbeats per second
 *   is `rate(worker_registry_heartbeats_total[1m])` in PromQL, which also
 *   copes with the counter starting over when the process restarts, so no
 *   per-second gauge is kept here.
 * - `worker_registry_rpc_duration_seconds{method,code}` (histogram) of unary
 *   RPCs, fed by {@link RegistryMetrics.observeRpc}.
 * - prom-client's default process and Node.js metrics, unprefixed
 *   (`process_cpu_seconds_total`, `nodejs_eventloop_lag_seconds`, ...).
 */
export function createRegistryMetrics(source: RegistryMetricsSource): RegistryMetrics {
  const registry = new Registry();
  const registers = [registry];

  new Gauge({
    name: "worker_registry_workers",
    help: "Registered workers by health tier.",
    labelNames: ["health"] as const,
    registers,
    collect() {
      const stats = source.stats();
      this.set({ health: "healthy" }, stats.healthyWorkers);
      this.set({ health: "degraded" }, stats.degradedWorkers);
      this.set({ health: "unhealthy" }, stats.unhealthyWorkers);
    },
  });
  new Gauge({
    name: "worker_registry_workers_by_state",
    help: "Registered workers by rotation state: active, cordoned (out until uncordoned), draining (out until removed).",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const stats = source.stats();
      this.set({ state: "active" }, stats.totalWorkers - stats.cordonedWorkers - stats.drainingWorkers);
      this.set({ state: "cordoned" }, stats.cordonedWorkers);
      this.set({ state: "draining" }, stats.drainingWorkers);
    },
  });
  new Gauge({
    name: "worker_registry_capacity_slots",
    help: "Task slots over the fleet: used, and total (the sum of max_concurrent_tasks).",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const stats = source.stats();
      this.set({ state: "used" }, stats.usedCapacity);
      this.set({ state: "total" }, stats.totalCapacity);
    },
  });
  new Gauge({
    name: "worker_registry_active_reservations",
    help: "Slots held by AcquireWorker and not yet released or expired.",
    registers,
    collect() {
      this.set(source.stats().activeReservations);
    },
  });
  new Gauge({
    name: "worker_registry_open_streams",
    help: "Open server streams by kind: HeartbeatStream or WatchWorkers.",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      const streams = source.openStreams();
      this.set({ kind: "heartbeat" }, streams.heartbeat);
      this.set({ kind: "watch" }, streams.watch);
    },
  });
  new Gauge({
    name: "worker_registry_eviction_paused",
    help: "1 while the eviction guard holds back removal of expired workers, else 0.",
    registers,
    collect() {
      this.set(source.stats().eviction.paused ? 1 : 0);
    },
  });

  new Gauge({
    name: "worker_registry_eviction_resumes_at_timestamp_seconds",
    help: "While eviction is paused: when the pause ends by itself if nothing changes (unix seconds); 0 when not paused.",
    registers,
    collect() {
      const { resumesAtMs } = source.stats().eviction;
      this.set(resumesAtMs === undefined ? 0 : resumesAtMs / 1000);
    },
  });

  sourcedCounter(registers, "worker_registry_heartbeats_total", "Heartbeats accepted, unary and streamed.", () => source.counters().heartbeats);
  sourcedCounter(registers, "worker_registry_acquisitions_total", "Slots granted by AcquireWorker.", () => source.counters().acquisitions);
  sourcedCounter(
    registers,
    "worker_registry_releases_total",
    "ReleaseWorker calls that ended a reservation, including one that had expired; repeats are not counted.",
    () => source.counters().releases,
  );
  sourcedCounter(
    registers,
    "worker_registry_reservations_expired_total",
    "Reservations whose TTL passed before release; their slot was freed.",
    () => source.counters().reservationsExpired,
  );
  sourcedCounter(registers, "worker_registry_eviction_pauses_total", "Times the eviction guard paused eviction.", () => source.stats().eviction.pausesTotal);

  const rpcDuration = new Histogram({
    name: "worker_registry_rpc_duration_seconds",
    help: "Server-side latency of unary RPCs, by method and gRPC status code.",
    labelNames: ["method", "code"] as const,
    buckets: [...RPC_DURATION_BUCKETS_SECONDS],
    registers,
  });

  collectDefaultMetrics({ register: registry });

  return {
    registry,
    observeRpc: (method, code, seconds) => rpcDuration.observe({ method, code }, seconds),
  };
}

/**
 * A counter whose value is another monotonic count, copied at scrape time.
 * Setting it from the source, instead of mirroring each increment, keeps the
 * registry free of metrics calls; the value still only goes up, so `rate()`
 * and `increase()` are exact.
 */
function sourcedCounter(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      // A counter cannot be set, only increased: start from zero each scrape.
      this.reset();
      this.inc(read());
    },
  });
}
