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

/** One fleet size of the selection-under-load scenario. */
export interface LoadedSelectionRun {
  readonly workers: number;
  /** Paced heartbeat streams (one beat a second each) running meanwhile. */
  readonly streams: number;
  readonly orchestrators: number;
  readonly seconds: number;
  /** Per method, from the registry's histogram. */
  readonly serverSide: readonly MethodLatency[];
  /** Calls per second of each op, client-side, and their client-side latency. */
  readonly ops: readonly { readonly op: string; readonly perSecond: number; readonly latency: LatencySummary; readonly errors: number }[];
  readonly heartbeats: { readonly acksPerSecond: number; readonly latency: LatencySummary; readonly missed: number };
  readonly serverCores: number;
  readonly otherCores: number;
  readonly serverWaiting: number;
}

/** The watch fan-out scenario at one shape. */
export interface WatchFanoutRun {
  readonly watchers: number;
  /** Events written per second (the target rate), and what was committed. */
  readonly eventsPerSecond: number;
  readonly committedPerSecond: number;
  readonly seconds: number;
  /** Events delivered per second, all watchers together. */
  readonly deliveredPerSecond: number;
  /** Commit (the event's occurred_at) to arrival at the watcher, over every delivery sampled. */
  readonly delivery: LatencySummary;
  /** Watchers that fell behind and were cut off (RESOURCE_EXHAUSTED), of the fast ones. */
  readonly fastCutOff: number;
  /** The slow watcher (reads nothing): cut off, and after how long. */
  readonly slowCutOff: boolean;
  readonly slowCutOffAfterMs: number | undefined;
  readonly serverCores: number;
  readonly loadGeneratorCores: number;
  readonly otherCores: number;
  readonly rssStartMiB: number;
  readonly rssPeakMiB: number;
  readonly rssEndMiB: number;
  readonly firstError: string | undefined;
}
