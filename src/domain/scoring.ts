/**
 * The guide's load-balancing score:
 *
 *   priority = capacityWeight x capacity + successWeight x success + speedWeight x speed
 *
 * with capacity = available slots / max slots, success = completed / total
 * completions, speed = min(1, speedReferenceMs / average duration). With the
 * default 1 s reference the guide's "1 / average seconds" is reproduced:
 * 5 s gives 0.2, 3 s gives 0.33. Before a worker's first completion the
 * success and speed scores are neutral priors (default 0.5 each), so a new
 * worker ranks between proven fast and proven slow ones and still gets work.
 */
export interface ScoringOptions {
  readonly capacityWeight: number;
  readonly successWeight: number;
  readonly speedWeight: number;
  /** The average duration that scores a speed of 1; faster workers also score 1. */
  readonly speedReferenceMs: number;
  /** Success score before the first recorded completion. */
  readonly priorSuccessRate: number;
  /** Speed score before the first recorded completion. */
  readonly priorSpeedScore: number;
}

/** The inputs of a score: what a worker's capacity and metrics are now. */
export interface ScoreInputs {
  readonly maxConcurrentTasks: number;
  readonly currentTasks: number;
  readonly tasksCompleted: number;
  readonly tasksFailed: number;
  readonly totalTaskDurationMs: number;
}

/** A priority with its parts, each in 0..1. */
export interface Score {
  readonly priority: number;
  readonly capacityScore: number;
  readonly successScore: number;
  readonly speedScore: number;
}

/** Scores a worker. Pure: the same inputs always give the same score. */
export function scoreWorker(worker: ScoreInputs, options: ScoringOptions): Score {
  const capacityScore = (worker.maxConcurrentTasks - worker.currentTasks) / worker.maxConcurrentTasks;
  const completions = worker.tasksCompleted + worker.tasksFailed;
  const successScore = completions === 0 ? options.priorSuccessRate : worker.tasksCompleted / completions;
  const speedScore = completions === 0 ? options.priorSpeedScore : speedFor(worker.totalTaskDurationMs / completions, options);
  return {
    priority:
      options.capacityWeight * capacityScore + options.successWeight * successScore + options.speedWeight * speedScore,
    capacityScore,
    successScore,
    speedScore,
  };
}

function speedFor(averageDurationMs: number, options: ScoringOptions): number {
  if (averageDurationMs <= options.speedReferenceMs) return 1;
  return options.speedReferenceMs / averageDurationMs;
}
