/** What the soak's load counts: calls by outcome, failures it did not expect, and what the watchers saw. */
import * as grpc from "@grpc/grpc-js";
import { RegistryClientError } from "@sentinel/worker-registry-client";

/** Status codes each kind of call may legitimately end with under this load, besides OK. */
const EXPECTED: Record<string, readonly string[]> = {
  // A task on a worker at capacity, or on one that churn just unregistered.
  runTask: ["FAILED_PRECONDITION", "NOT_FOUND"],
  // No worker with a free slot matches right now.
  acquireWorker: ["RESOURCE_EXHAUSTED"],
  // The worker was unregistered by churn while the slot was held.
  releaseWorker: ["NOT_FOUND"],
  // A stop() racing a reconnect; never seen in practice, harmless.
  stopNode: ["NOT_FOUND"],
  startNode: [],
  crashWorker: [],
  discoverWorkers: [],
  getWorkersForLoadBalancing: [],
  getRegistryStats: [],
  // The non-reading watcher must be dropped with RESOURCE_EXHAUSTED (counted apart); anything else is a failure.
  slowWatch: [],
  watch: ["CANCELLED"],
};

/** The load's counters, sent to the driver on request (over IPC, so plain data). */
export interface LoadStats {
  ok: Record<string, number>;
  errors: Record<string, number>;
  unexpected: string[];
  watchEvents: number;
  watchOrderViolations: number;
  slowWatcherDrops: number;
  slowWatcherKept: number;
  releasedTwice: number;
  leakedReservations: number;
  nodes: number;
}

/** Calls made, successful or not. */
export const totalOps = (stats: LoadStats): number => Object.values(stats.ok).reduce((a, b) => a + b, 0) + Object.values(stats.errors).reduce((a, b) => a + b, 0);

export interface LoadTally {
  readonly stats: LoadStats;
  ok(kind: string): void;
  /** Counts the failure by kind and status code; one the kind does not expect is also kept (the first 50) for the verdict. */
  failed(kind: string, error: unknown): void;
  /** Runs `work` and counts its outcome under `kind`. */
  track(kind: string, work: () => Promise<unknown>): Promise<void>;
}

export function createLoadTally(): LoadTally {
  const stats: LoadStats = {
    ok: {},
    errors: {},
    unexpected: [],
    watchEvents: 0,
    watchOrderViolations: 0,
    slowWatcherDrops: 0,
    slowWatcherKept: 0,
    releasedTwice: 0,
    leakedReservations: 0,
    nodes: 0,
  };
  const ok = (kind: string) => {
    stats.ok[kind] = (stats.ok[kind] ?? 0) + 1;
  };
  const failed = (kind: string, error: unknown) => {
    const code = error instanceof RegistryClientError ? error.codeName : (grpc.status[(error as grpc.StatusObject).code] ?? String(error));
    const key = `${kind}:${code}`;
    stats.errors[key] = (stats.errors[key] ?? 0) + 1;
    if (!(EXPECTED[kind] ?? []).includes(code) && stats.unexpected.length < 50) {
      stats.unexpected.push(`${key} ${(error as Error).message ?? (error as grpc.StatusObject).details}`);
    }
  };
  return {
    stats,
    ok,
    failed,
    async track(kind, work) {
      try {
        await work();
        ok(kind);
      } catch (error) {
        failed(kind, error);
      }
    },
  };
}
