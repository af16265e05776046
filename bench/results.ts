/**
 * What each scenario measures, and the shape of the results file the suite
 * saves (bench/results/latest-<mode>.json) and `--report` reads back.
 * Scenarios produce these; the report renders them. Nothing here measures.
 */
import fs from "node:fs";
import path from "node:path";
import type { LatencySummary } from "./histogram.js";
import type { UnaryOp } from "./loadgen-protocol.js";
import type { ModeConfig } from "./modes.js";
import type { HeartbeatCostResult, LoadedSelectionRun, WatchFanoutRun } from "./perf-results.js";
import type { MachineInfo } from "./proc.js";
import type { ProfileSummary } from "./profile-summary.js";
import type { ClientKind } from "./transport.js";

/** The server a figure belongs to: the registry, the ceiling (a bare grpc-js echo server) or etcd. */
export type Kind = "registry" | "echo" | "etcd";

/** CPU of the processes in a window, in cores (1.0 = one core busy the whole window). */
export interface CpuShare {
  readonly server: number;
  readonly client: number;
  /** Busy CPU on the machine not used by the server, the load generator or the suite: other tenants. */
  readonly other: number;
  /** Share of the window the server's main thread (the event loop) was runnable but waiting for a CPU (/proc/<pid>/schedstat). */
  readonly serverWaiting: number;
}

/** One point of the closed-loop scenario: `streams` heartbeat streams, each sending its next beat when the last is acked. */
export interface StreamResult {
  readonly target: Kind;
  readonly streams: number;
  readonly connections: number;
  readonly served: number;
  readonly throughput: number;
  readonly latency: LatencySummary;
  readonly cpu: CpuShare;
  readonly errors: number;
  readonly firstError: string | undefined;
}

/** The paced fleet on one target: every worker on its own stream, one heartbeat per second. */
export interface PacedResult {
  readonly target: Kind;
  readonly workers: number;
  readonly connections: number;
  readonly seconds: number;
  readonly opened: number;
  readonly served: number;
  readonly sent: number;
  readonly acked: number;
  readonly missed: number;
  readonly errors: number;
  readonly latency: LatencySummary;
  readonly cpu: CpuShare;
  readonly rssPeakMiB: number;
  readonly firstError: string | undefined;
  /** Whether the backlog of the opening burst drained (≤ 1% of the fleet unanswered) before the window, and when. */
  readonly settled: boolean;
  /** Seconds from opening the streams until the backlog had drained (or the 30 s wait gave up). */
  readonly settleSeconds: number;
}

/** Server-side latency of one method, from the registry's own histogram worker_registry_rpc_duration_seconds. */
export interface ServerSideLatency {
  readonly method: string;
  readonly count: number;
  /** Interpolated within the histogram's bucket. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Share of calls answered within 1 ms (the 0.001 bucket): exact. */
  readonly shareWithin1ms: number;
}

/** One unary workload against one target (selection and writes). */
export interface UnaryResult {
  readonly target: Kind;
  readonly op: UnaryOp;
  /** Workers in the registry's database; undefined for the ceiling. */
  readonly workers: number | undefined;
  readonly throughput: number;
  readonly latency: LatencySummary;
  readonly cpu: CpuShare;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly serverSide: readonly ServerSideLatency[];
}

/** Selection timed inside one process (bench/selection-inproc.ts), one line per fleet size. */
export interface InprocResult {
  readonly workers: number;
  readonly rank: LatencySummary;
  readonly acquire: LatencySummary;
  readonly release: LatencySummary;
}

/** The selection scenario: calls against the registry at each fleet size and the ceiling, and the in-process timings. */
export interface SelectionResult {
  readonly selection: UnaryResult[];
  readonly inproc: InprocResult[];
}

/** Spawn to serving, on a database of `workers` workers, for the registry and for the ceiling, once per run. */
export interface ColdStartResult {
  readonly workers: number;
  readonly seedSeconds: number;
  readonly registryMs: readonly number[];
  readonly echoMs: readonly number[];
}

/** The results file: the run's circumstances, then every scenario's results (empty when it did not run). */
export interface Results {
  readonly mode: ModeConfig;
  readonly startedAt: string;
  finishedAt: string;
  readonly commit: string;
  readonly machine: MachineInfo;
  loadAverageAtEnd: [number, number, number] | undefined;
  readonly etcd: { readonly binary: string; readonly version: string | undefined } | undefined;
  readonly phases: readonly string[];
  readonly client: ClientKind;
  closedLoop: StreamResult[];
  /** Issue 16's scenarios (bench/perf-results.ts); missing in files saved before they existed. */
  heartbeatCost?: HeartbeatCostResult;
  loadedSelection?: LoadedSelectionRun[];
  watchFanout?: WatchFanoutRun[];
  paced: PacedResult[];
  selection: UnaryResult[];
  inproc: InprocResult[];
  writes: UnaryResult[];
  coldStart: ColdStartResult | undefined;
  profiles: Record<string, ProfileSummary>;
}

/** Writes `results` as `<dir>/latest-<mode>.json` and returns that path. */
export function saveResults(results: Results, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `latest-${results.mode.name}.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  return file;
}

/** Reads a results file saved by {@link saveResults} (no validation: it is the suite's own output). */
export function loadResults(file: string): Results {
  return JSON.parse(fs.readFileSync(file, "utf8")) as Results;
}

// Lookups the report and the verdicts share.

export const closedLoopPoint = (r: Results, kind: Kind, streams: number): StreamResult | undefined =>
  r.closedLoop.find((x) => x.target === kind && x.streams === streams);

export const pacedRun = (r: Results, kind: Kind): PacedResult | undefined => r.paced.find((x) => x.target === kind);

export const selectionRun = (r: Results, kind: Kind, op: UnaryOp, workers?: number): UnaryResult | undefined =>
  r.selection.find((x) => x.target === kind && x.op === op && (workers === undefined || x.workers === workers));

export const writeRun = (r: Results, kind: Kind, op: UnaryOp): UnaryResult | undefined => r.writes.find((x) => x.target === kind && x.op === op);
