import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { BuildInfo } from "../build-info.js";
import type { AppliedChange, RegistryCounters, RegistryStats } from "../domain/worker-registry.js";
import type { RemovalReason } from "../domain/worker-events.js";
import type { StreamKind } from "../transport/call-guard.js";
import type { TransportObserver } from "../transport/transport-observer.js";
import { createTransportMetrics } from "./transport-metrics.js";

export { RPC_DURATION_BUCKETS_SECONDS } from "./transport-metrics.js";

/**
 * What the metrics read, and nothing more: the registry's stats and counters,
 * the open streams and the watchers. Kept free of grpc-js so the metrics can
 * be fed by any transport, or by a test. Everything is read at scrape time.
 */
export interface RegistryMetricsSource {
  /** Fleet counts, capacity, reservations, eviction, leadership and replication as of now. */
  stats(): Pick<
    RegistryStats,
    | "totalWorkers"
    | "healthyWorkers"
    | "cordonedWorkers"
    | "drainingWorkers"
    | "degradedWorkers"
    | "unhealthyWorkers"
    | "totalCapacity"
    | "usedCapacity"
    | "activeReservations"
    | "eviction"
    | "leadership"
    | "replication"
    | "revision"
  >;
  /** Counters that only go up while the process lives. */
  counters(): Readonly<RegistryCounters>;
  /** Open streams by kind (heartbeat, watch, and the hosted services' "introspection" streams). */
  openStreams(): Readonly<Record<StreamKind, number>>;
  /** Open watchers of the registry: WatchWorkers streams and the dashboard's feeds. */
  watchers(): number;
}

/** The registry's Prometheus metrics. */
export interface RegistryMetrics {
  /** A registry of its own (never prom-client's global one), holding every series below and the process metrics. */
  readonly registry: Registry;
  /** Feeds the transport's series: hand it to the gRPC server. */
  readonly transport: TransportObserver;
  /** Counts one change applied to the read model: subscribe it with `WorkerRegistry.onApplied`. */
  applied(change: AppliedChange): void;
}

const REMOVAL_REASONS: readonly RemovalReason[] = ["unregistered", "expired", "replaced", "drained", "drain_deadline"];

/** prom-client's default gauges whose names end in `_total`, which Prometheus reserves for counters; their labelled twins stay. */
const MISNAMED_DEFAULT_GAUGES = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/**
 * Builds the registry's metrics on a new prom-client registry. Gauges and
 * most counters are computed from `source` when Prometheus scrapes, so
 * serving a call costs nothing for them; the transport's series cost one
 * observation per call, heartbeat or watch event.
 *
 * No label ever takes a worker id, a node id, a token or anything else a
 * caller chooses: every label has a fixed set of values.
 *
 * With several replicas, a series says which of two things it counts:
 * - what this process did itself (heartbeats it received, calls it answered,
 *   expiries it ran as the leader, its own state): summed over replicas, it
 *   gives the fleet's;
 * - the fleet as this process's read model has it (workers, capacity), or
 *   the changes it applied (registrations, removals, completions): every
 *   replica applies every change, so each shows the whole fleet; take max(),
 *   not sum(), over replicas.
 *
 * See docs/operations.md#metrics for the list.
 */
export function createRegistryMetrics(source: RegistryMetricsSource, build: BuildInfo): RegistryMetrics {
  const registry = new Registry();
  const registers = [registry];

  new Gauge({
    name: "worker_registry_build_info",
    help: "Always 1; its labels say what is running: the package version, the git commit it was built from, the Node.js version.",
    labelNames: ["version", "commit", "node_version"] as const,
    registers,
  }).set({ version: build.version, commit: build.commit, node_version: build.nodeVersion }, 1);

  registerFleetGauges(registers, source);
  registerReplicaGauges(registers, source);
  registerSourcedCounters(registers, source);

  const registrations = new Counter({
    name: "worker_registry_registrations_total",
    help: "Workers registered, fleet-wide: registrations applied by this process, whichever replica took them (take max() over replicas, not sum()).",
    registers,
  });
  const removals = new Counter({
    name: "worker_registry_removals_total",
    help:
      "Workers that left the registry, fleet-wide, by reason: unregistered (UnregisterWorker), expired (removed by cleanup past the worker TTL), " +
      "replaced (its node_id registered again), drained (a draining worker finished its tasks), drain_deadline (a draining worker removed at its deadline). " +
      "Removals applied by this process, whichever replica made them (take max() over replicas, not sum()).",
    labelNames: ["reason"] as const,
    registers,
  });
  const completions = new Counter({
    name: "worker_registry_task_completions_total",
    help:
      "Task completions recorded, fleet-wide, by outcome (succeeded, failed), from RecordTaskCompletion and ReleaseWorker: " +
      "completions applied by this process, whichever replica recorded them (take max() over replicas, not sum()).",
    labelNames: ["outcome"] as const,
    registers,
  });
  // Every series of a fixed label set exists from the start, so rate() and alerts see 0 rather than nothing.
  registrations.inc(0);
  for (const reason of REMOVAL_REASONS) removals.inc({ reason }, 0);
  completions.inc({ outcome: "succeeded" }, 0);
  completions.inc({ outcome: "failed" }, 0);

  const transport = createTransportMetrics(registry);

  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULT_GAUGES) registry.removeSingleMetric(name);

  return {
    registry,
    transport,
    applied({ event, completions: added }) {
      if (event.type === "registered") registrations.inc();
      else if ((event.type === "unregistered" || event.type === "removed") && event.reason !== undefined) removals.inc({ reason: event.reason });
      if (added.succeeded > 0) completions.inc({ outcome: "succeeded" }, added.succeeded);
      if (added.failed > 0) completions.inc({ outcome: "failed" }, added.failed);
    },
  };
}

/** The fleet as this process's read model has it: the same on every replica. */
function registerFleetGauges(registers: Registry[], source: RegistryMetricsSource): void {
  new Gauge({
    name: "worker_registry_workers",
    help: "Registered workers by health tier (fleet-wide: every replica shows the whole fleet).",
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
    help: "Registered workers by rotation state: active, cordoned (out until uncordoned), draining (out until removed) (fleet-wide).",
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
    name: "worker_registry_task_slots",
    help: "Task slots over the fleet by usage: used (tasks running or reserved) and free; their sum is the fleet's capacity, the sum of max_concurrent_tasks.",
    labelNames: ["usage"] as const,
    registers,
    collect() {
      const stats = source.stats();
      this.set({ usage: "used" }, stats.usedCapacity);
      this.set({ usage: "free" }, stats.totalCapacity - stats.usedCapacity);
    },
  });
  new Gauge({
    name: "worker_registry_active_reservations",
    help: "Slots held by AcquireWorker and not yet released or expired (fleet-wide).",
    registers,
    collect() {
      this.set(source.stats().activeReservations);
    },
  });
  new Gauge({
    name: "worker_registry_open_streams",
    help: "Streams open on this process by kind: heartbeat (HeartbeatStream), watch (WatchWorkers), introspection (health Watch, reflection).",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      const streams = source.openStreams();
      this.set({ kind: "heartbeat" }, streams.heartbeat);
      this.set({ kind: "watch" }, streams.watch);
      this.set({ kind: "introspection" }, streams.introspection);
    },
  });
  new Gauge({
    name: "worker_registry_watchers",
    help: "Watchers of this process's event stream: WatchWorkers streams and the dashboard's live feeds.",
    registers,
    collect() {
      this.set(source.watchers());
    },
  });
  new Gauge({
    name: "worker_registry_eviction_paused",
    help: "1 while this process's eviction guard holds back removal of expired workers, else 0 (only the leader's matters: it runs cleanup).",
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
}

/** This process among the replicas of its store (a lone SQLite process always leads, and never lags). */
function registerReplicaGauges(registers: Registry[], source: RegistryMetricsSource): void {
  new Gauge({
    name: "worker_registry_leading",
    help: "1 while this process holds the lease that runs the fleet-wide schedules (health transitions, cleanup, expiry), else 0.",
    registers,
    collect() {
      this.set(source.stats().leadership.leading ? 1 : 0);
    },
  });
  new Gauge({
    name: "worker_registry_store_writable",
    help: "1 while the store accepted this process's last write, 0 while it refuses writes (disk full or read-only, database unreachable).",
    registers,
    collect() {
      this.set(source.stats().replication.storeWritable ? 1 : 0);
    },
  });
  new Gauge({
    name: "worker_registry_replication_lag_seconds",
    help: "How long after its commit the last event written by another replica was applied here, by the two clocks; 0 until one was (always 0 for SQLite).",
    registers,
    collect() {
      this.set(source.stats().replication.lagMs / 1000);
    },
  });
  new Gauge({
    name: "worker_registry_applied_revision",
    help: "The revision of the last event this process applied: replicas of one store converge on the same value.",
    registers,
    collect() {
      this.set(source.stats().revision);
    },
  });
  sourcedCounter(registers, "worker_registry_leadership_terms_total", "Times this process became the leader.", () => source.stats().leadership.terms);
}

/** Counts the domain keeps, copied at scrape time. */
function registerSourcedCounters(registers: Registry[], source: RegistryMetricsSource): void {
  // Heartbeats per second is rate(worker_registry_heartbeats_total[1m]) in PromQL, which also copes with the counter
  // starting over when the process restarts, so no per-second gauge is kept here.
  sourcedCounter(registers, "worker_registry_heartbeats_total", "Heartbeats this process received, unary and streamed.", () => source.counters().heartbeats);
  sourcedCounter(
    registers,
    "worker_registry_acquisitions_total",
    "AcquireWorker calls this process answered, by result: acquired (a slot was granted), no_match (no worker matched the filter), " +
      "no_free_slot (every matching worker was full), contended (other acquisitions took the chosen workers first).",
    () => {
      const counters = source.counters();
      return {
        acquired: counters.acquisitions,
        no_match: counters.acquisitionsNoMatch,
        no_free_slot: counters.acquisitionsNoFreeSlot,
        contended: counters.acquisitionsContended,
      };
    },
    "result",
  );
  sourcedCounter(
    registers,
    "worker_registry_releases_total",
    "ReleaseWorker calls this process answered that ended a reservation, including one that had expired; repeats are not counted.",
    () => source.counters().releases,
  );
  sourcedCounter(
    registers,
    "worker_registry_reservations_expired_total",
    "Reservations whose TTL passed before release, their slot freed by this process as the leader.",
    () => source.counters().reservationsExpired,
  );
  sourcedCounter(registers, "worker_registry_eviction_pauses_total", "Times this process's eviction guard paused eviction.", () => source.stats().eviction.pausesTotal);
}

/**
 * A counter whose value is another monotonic count, copied at scrape time:
 * one number, or one per value of `labelName`. Setting it from the source,
 * instead of mirroring each increment, keeps the registry free of metrics
 * calls; the value still only goes up, so `rate()` and `increase()` are exact.
 */
function sourcedCounter(registers: Registry[], name: string, help: string, read: () => number | Readonly<Record<string, number>>, labelName?: string): void {
  new Counter({
    name,
    help,
    labelNames: labelName === undefined ? [] : [labelName],
    registers,
    collect() {
      // A counter cannot be set, only increased: start from zero each scrape.
      this.reset();
      const value = read();
      if (typeof value === "number") this.inc(value);
      else for (const [label, count] of Object.entries(value)) this.inc({ [labelName!]: label }, count);
    },
  });
}
