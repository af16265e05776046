import type { HealthStatus } from "./health.js";
import type { Labels } from "./labels.js";
import type { WorkerState } from "./worker-record.js";
import type { Score } from "./scoring.js";

/** A worker as callers see it, with its health as of the moment it was read. */
export interface WorkerView {
  readonly id: string;
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  readonly currentTasks: number;
  readonly availableCapacity: number;
  readonly successRate: number;
  readonly healthStatus: HealthStatus;
  readonly registeredAtMs: number;
  readonly lastHeartbeatAtMs: number;
  readonly labels: Labels;
  readonly version: string;
  readonly state: WorkerState;
  /** Wall-clock ms; null unless draining. */
  readonly drainDeadlineMs: number | null;
  readonly metrics: {
    readonly tasksCompleted: number;
    readonly tasksFailedCount: number;
    readonly averageTaskDurationMs: number;
  };
}

/** A worker with its load-balancing score. */
export interface RankedWorkerView extends Score {
  readonly worker: WorkerView;
}
