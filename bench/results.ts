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

/** A distribution of replication lags, in ms. */
export interface LagSummary {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** How far the replicas trail each other, measured two ways during the window. */
export interface ReplicaLag {
  /**
   * GetRegistryStats' `replica.replication_lag` of every replica, asked every 500 ms: by the replicas' own clocks, from
   * the event's time (when the writing call began, so the writer's own transaction is included) until it was applied.
   */
  readonly reported: LagSummary;
  /** RegisterWorker answered by one replica → GetWorker finds the worker on the next one (asked every 2 ms): what a client sees. */
  readonly probed: LagSummary & { readonly failed: number };
}

/** One statement (normalised by pg_stat_statements), all replicas together. */
export interface StatementRate {
  readonly statement: string;
  readonly perSecond: number;
  /** Rows the statement returned or changed, per second. */
  readonly rowsPerSecond: number;
}

/** What the replicas asked of PostgreSQL during the window, per second of it. */
export interface StatementRates {
  /** pg_stat_statements when the extension could be created, else pg_stat_database (transactions only, no per-replica figures). */
  readonly source: "pg_stat_statements" | "pg_stat_database";
  /** Statements (BEGIN and COMMIT included) per second, every replica together; transactions per second from pg_stat_database. */
  readonly perSecond: number;
  /** Statements per second of each replica (each connects as a database user of its own); empty from pg_stat_database. */
  readonly perReplica: readonly { readonly replica: string; readonly perSecond: number }[];
  /** The heartbeat batch write and the read of other replicas' heartbeats, per replica per second. */
  readonly heartbeatPerReplica: number | undefined;
  /** The statements called most, and those that returned or changed the most rows, most called first. */
  readonly top: readonly StatementRate[];
  /** The replicas' sessions that were not idle, on average over samples every 100 ms, by state and wait (pg_stat_activity), most first. */
  readonly sessions: readonly { readonly state: string; readonly average: number }[];
  /** pg_stat_database, per second: commits, rollbacks, rows returned, fetched, inserted, updated, deleted. */
  readonly database: Readonly<Record<"commits" | "rollbacks" | "returned" | "fetched" | "inserted" | "updated" | "deleted", number>>;
}

/** One store under the replica scenario's load: one registry on SQLite, or replicas on one PostgreSQL. */
export interface ReplicaRun {
  readonly store: "sqlite" | "postgres";
  readonly replicas: number;
  /** Paced heartbeat streams, one beat per second each, spread over the replicas. */
  readonly streams: number;
  readonly seconds: number;
  readonly heartbeats: {
    readonly acksPerSecond: number;
    readonly latency: LatencySummary;
    /** Since the streams opened: sent, acked, never acked within the drain time. */
    readonly sent: number;
    readonly missed: number;
    readonly served: number;
    readonly opened: number;
    readonly errors: number;
    readonly firstError: string | undefined;
    readonly settled: boolean;
    readonly settleSeconds: number;
  };
  readonly acquisitions: {
    /** AcquireWorker + ReleaseWorker pairs per second, all orchestrators together. */
    readonly perSecond: number;
    readonly latency: LatencySummary;
    readonly orchestrators: number;
    readonly inFlight: number;
    readonly errors: number;
    readonly firstError: string | undefined;
  };
  readonly cpu: {
    /** Each registry process, in cores. */
    readonly replicas: readonly number[];
    /** Share of the window each registry's main thread (its event loop) was runnable but waiting for a CPU. */
    readonly replicasWaiting: readonly number[];
    /** Every PostgreSQL process; undefined for SQLite (it runs inside the registry). */
    readonly database: number | undefined;
    readonly loadGenerators: number;
    readonly other: number;
  };
  readonly rssPeakMiB: readonly number[];
  /** The replica that led at the end of the window ("" for none), as they reported it. */
  readonly leader: string;
  readonly lag: ReplicaLag | undefined;
  readonly statements: StatementRates | undefined;
  /** Once the load stopped: each replica's applied revision and worker count, and how long until they agreed. */
  readonly converged: { readonly revisions: readonly number[]; readonly workers: readonly number[]; readonly afterMs: number } | undefined;
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
  /** Missing in files saved before the scenario existed. */
  replicas?: ReplicaRun[];
  /** Why the replica scenario was not measured (no PostgreSQL), when it was chosen. */
  replicasSkipped?: string;
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
