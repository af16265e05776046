/**
 * What the scenarios of issue 16 measure (heartbeat cost, selection under
 * load, watch fan-out), as saved in the results file. Types only.
 */
import type { LatencySummary } from "./histogram.js";

/** Server-side latency of one method from the registry's histogram (the shape of results.ts's ServerSideLatency, which imports this file). */
export interface MethodLatency {
  readonly method: string;
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly shareWithin1ms: number;
}

/**
 * The servers of the heartbeat-cost scenario: the registry on SQLite, the
 * registry on PostgreSQL (one process), the bare transport (echo-server
 * --bare: grpc-js with no protobuf) and the suite's protobuf echo.
 */
export type CostTarget = "registry" | "registry-postgres" | "echo-bare" | "echo";

/** One window of heartbeats on one target. */
export interface CostSample {
  readonly target: CostTarget;
  /** closed: each stream beats again once acked; paced: once a second. */
  readonly load: "closed" | "paced";
  readonly streams: number;
  readonly round: number;
  readonly acksPerSecond: number;
  /** The server process, in cores. */
  readonly serverCores: number;
  /** Every PostgreSQL process (registry-postgres only; 0 for the others). */
  readonly databaseCores: number;
  /** Server and database CPU per ack, in microseconds. */
  readonly cpuUsPerAck: number;
  readonly latency: LatencySummary;
  readonly loadGeneratorCores: number;
  /** Busy CPU of other processes (PostgreSQL's excluded), cores. */
  readonly otherCores: number;
  readonly serverWaiting: number;
  readonly served: number;
  readonly errors: number;
  readonly missed: number;
  readonly firstError: string | undefined;
}

export interface HeartbeatCostResult {
  readonly rounds: number;
  readonly windowMs: number;
  readonly samples: CostSample[];
  /** Why the PostgreSQL targets were not measured, when they were not. */
  readonly postgresSkipped: string | undefined;
}

/** One window of the selection-under-load scenario: one call, at one fleet size, with the paced fleet beating. */
export interface LoadedSelectionRun {
  readonly workers: number;
  /** AcquireRelease (AcquireWorker then ReleaseWorker) or GetWorkersForLoadBalancing. */
  readonly op: string;
  /** Paced heartbeat streams (one beat a second each) running meanwhile. */
  readonly streams: number;
  /** Connections with one call in flight each. */
  readonly orchestrators: number;
  readonly seconds: number;
  /** Per method, from the registry's histogram; shareWithin2ms is exact (2 ms is a bucket bound). */
  readonly serverSide: readonly (MethodLatency & { readonly shareWithin2ms: number })[];
  readonly callsPerSecond: number;
  /** Client-side, per op (both calls of AcquireRelease). */
  readonly latency: LatencySummary;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly heartbeats: { readonly acksPerSecond: number; readonly latency: LatencySummary; readonly errors: number };
  readonly serverCores: number;
  readonly otherCores: number;
  readonly serverWaiting: number;
}

/** The watch fan-out scenario at one shape. */
export interface WatchFanoutRun {
  readonly watchers: number;
  /** max_events_per_message the watchers asked for (1: one event per message); absent in runs from before batching, which had one. */
  readonly eventsPerMessage?: number;
  /** Events the writer was asked for per second, and what it got committed. */
  readonly eventsPerSecond: number;
  readonly committedPerSecond: number;
  readonly seconds: number;
  /** Events delivered per second, all fast watchers together, and their share of those due (committed × watchers). */
  readonly deliveredPerSecond: number;
  readonly dueShare: number;
  /** From the event's occurred_at (the registry's clock) to its arrival, on one watcher in ten. */
  readonly delivery: LatencySummary;
  /** Fast watchers whose stream ended during the window (none should), and the first reason. */
  readonly fastCutOff: number;
  readonly fastEndReason: string | undefined;
  /** The slow watcher (reads nothing): whether it was cut off, after how long, and with what status. */
  readonly slowCutOff: boolean;
  readonly slowCutOffAfterMs: number | undefined;
  readonly slowEndReason: string | undefined;
  readonly serverCores: number;
  readonly loadGeneratorCores: number;
  readonly rssStartMiB: number;
  readonly rssPeakMiB: number;
  readonly rssEndMiB: number;
  readonly writeErrors: number;
  readonly firstError: string | undefined;
}
