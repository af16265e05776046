import type { LatencySummary } from "./histogram.js";
import type { ClientKind } from "./transport.js";

/** A server the load generator drives. */
export interface Target {
  readonly kind: "registry" | "echo" | "etcd";
  /** host:port */
  readonly address: string;
  /**
   * Replicas of one registry: the connections are spread over these
   * (host:port each), round robin, instead of all going to `address`.
   */
  readonly addresses?: readonly string[];
}

/** A unary workload: one call per loop iteration (AcquireRelease is an AcquireWorker then a ReleaseWorker). */
export type UnaryOp = "RegisterWorker" | "UpdateTaskCount" | "RecordTaskCompletion" | "AcquireRelease" | "GetWorkersForLoadBalancing";

/** What the orchestrator (run.ts) asks the load generator (loadgen.ts) over IPC. */
export type LoadCommand =
  | {
      readonly type: "open-streams";
      readonly client: ClientKind;
      readonly target: Target;
      readonly count: number;
      /** closed: each stream sends its next heartbeat when the previous is acked. paced: one per intervalMs, evenly staggered. */
      readonly mode: "closed" | "paced";
      readonly intervalMs: number;
      readonly streamsPerConnection: number;
      /** How long to wait for every stream's first ack. */
      readonly openTimeoutMs: number;
    }
  | {
      readonly type: "start-unary";
      readonly client: ClientKind;
      readonly target: Target;
      readonly op: UnaryOp;
      readonly concurrency: number;
      readonly connections: number;
      /** Seeded workers the calls may name (UpdateTaskCount, RecordTaskCompletion). */
      readonly workerCount: number;
    }
  | { readonly type: "reset" }
  | { readonly type: "report" }
  | { readonly type: "stop"; readonly drainMs: number }
  | { readonly type: "exit" };

export interface WindowReport {
  /** Acks (streams) or completed calls (unary) in the window. */
  readonly completed: number;
  readonly sent: number;
  readonly errors: number;
  readonly seconds: number;
  readonly latency: LatencySummary;
  /** The first error's text, if any. */
  readonly firstError: string | undefined;
  /** Heartbeats (or calls) sent and not yet answered, now. */
  readonly outstanding: number;
}

export type LoadReply =
  | {
      readonly type: "opened";
      readonly opened: number;
      /** Streams that got at least one ack. */
      readonly served: number;
      readonly connections: number;
      readonly seconds: number;
      readonly firstError: string | undefined;
    }
  | { readonly type: "started"; readonly connections: number }
  | { readonly type: "reset" }
  | ({ readonly type: "report" } & WindowReport)
  | {
      readonly type: "stopped";
      /** Since the streams opened: heartbeats sent, acked, and never acked within the drain time. */
      readonly sent: number;
      readonly acked: number;
      readonly missed: number;
      readonly errors: number;
      /** Streams that got at least one ack, of those opened. */
      readonly served: number;
      readonly opened: number;
      readonly firstError: string | undefined;
    }
  | { readonly type: "error"; readonly message: string };
