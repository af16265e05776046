/** How long and how wide each scenario runs: `--quick` (the default) or `--full`. */
export interface ModeConfig {
  readonly name: "quick" | "full";
  readonly closedLoopStreams: readonly number[];
  /** Closed-loop rounds over every target; the median round of each point is reported. */
  readonly rounds: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly pacedWorkers: number;
  readonly pacedSeconds: number;
  /** Paced fleet: seconds after every stream's first ack before the window opens (the opening burst settles). */
  readonly pacedWarmupSeconds: number;
  readonly pacedEtcd: boolean;
  readonly selectionSizes: readonly number[];
  readonly selectionMeasureMs: number;
  readonly inprocBudgetMs: number;
  readonly writesMeasureMs: number;
  /** Unary calls in flight, and the connections they are spread over: selection (orchestrators asking for workers) and writes. */
  readonly selectionLoad: UnaryLoadShape;
  readonly writesLoad: UnaryLoadShape;
  readonly coldStartWorkers: number;
  readonly coldStartRuns: number;
  /** Replicas: paced heartbeat streams (one beat per second each), spread over the replicas, and as many seeded workers. */
  readonly replicaStreams: number;
  /** Replicas: the measurement window, and the settling after the streams opened (as the paced fleet's warm-up). */
  readonly replicaSeconds: number;
  readonly replicaWarmupSeconds: number;
  /** Replicas: AcquireWorker + ReleaseWorker kept in flight, one orchestrator per connection, the connections spread over the replicas. */
  readonly replicaLoad: UnaryLoadShape;
}

/** Unary calls kept in flight, spread over this many connections. */
export interface UnaryLoadShape {
  readonly concurrency: number;
  readonly connections: number;
}

export const MODES: Record<"quick" | "full", ModeConfig> = {
  quick: {
    name: "quick",
    closedLoopStreams: [100, 1000, 10_000],
    rounds: 1,
    warmupMs: 700,
    measureMs: 2000,
    pacedWorkers: 10_000,
    pacedSeconds: 8,
    pacedWarmupSeconds: 3,
    pacedEtcd: false,
    selectionSizes: [1000, 10_000, 100_000],
    selectionMeasureMs: 1500,
    inprocBudgetMs: 600,
    writesMeasureMs: 1500,
    selectionLoad: { concurrency: 16, connections: 4 },
    writesLoad: { concurrency: 64, connections: 8 },
    coldStartWorkers: 100_000,
    coldStartRuns: 1,
    replicaStreams: 3000,
    replicaSeconds: 10,
    replicaWarmupSeconds: 2,
    replicaLoad: { concurrency: 12, connections: 6 },
  },
  full: {
    name: "full",
    closedLoopStreams: [100, 1000, 10_000],
    rounds: 3,
    warmupMs: 3000,
    measureMs: 15_000,
    pacedWorkers: 10_000,
    pacedSeconds: 60,
    pacedWarmupSeconds: 10,
    pacedEtcd: true,
    selectionSizes: [1000, 10_000, 100_000],
    selectionMeasureMs: 10_000,
    inprocBudgetMs: 5000,
    writesMeasureMs: 10_000,
    selectionLoad: { concurrency: 16, connections: 4 },
    writesLoad: { concurrency: 64, connections: 8 },
    coldStartWorkers: 100_000,
    coldStartRuns: 3,
    replicaStreams: 10_000,
    replicaSeconds: 60,
    replicaWarmupSeconds: 10,
    replicaLoad: { concurrency: 12, connections: 6 },
  },
};

/** Heartbeat streams multiplexed on one connection, as a fleet of worker processes would open them. */
export const STREAMS_PER_CONNECTION = 100;
