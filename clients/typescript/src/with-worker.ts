import type { WithWorkerOptions } from "./client-options.js";
import { RegistryClientError } from "./registry-client-error.js";
import type { RankedWorkerInfo, ReleaseOutcome, TaskCompletion, WorkerAcquisition, WorkerQuery } from "./worker-info.js";

/** The two calls `withWorker` is made of. */
export interface SlotCalls {
  acquireWorker(query: WorkerQuery): Promise<WorkerAcquisition>;
  releaseWorker(reservationId: string, completion: TaskCompletion): Promise<ReleaseOutcome>;
}

/**
 * What `WorkerRegistryClient.withWorker` does: acquire, run, always release
 * with the measured duration and `success` = the task did not throw. A
 * failed release changes neither the result nor the task's error: it goes to
 * `options.onReleaseError`, or a process warning.
 */
export async function runWithWorker<T>(
  calls: SlotCalls,
  clock: () => number,
  query: WorkerQuery,
  task: (worker: RankedWorkerInfo, acquisition: WorkerAcquisition) => T | Promise<T>,
  options: WithWorkerOptions,
): Promise<T> {
  const acquisition = await calls.acquireWorker(query);
  const startedAt = clock();
  let success = false;
  try {
    const result = await task(acquisition.worker, acquisition);
    success = true;
    return result;
  } finally {
    const durationMs = Math.max(0, clock() - startedAt);
    try {
      await calls.releaseWorker(acquisition.reservationId, { success, durationMs });
    } catch (error) {
      reportReleaseFailure(RegistryClientError.from("releaseWorker", error), acquisition, options.onReleaseError);
    }
  }
}

function reportReleaseFailure(
  error: RegistryClientError,
  acquisition: WorkerAcquisition,
  onReleaseError: WithWorkerOptions["onReleaseError"],
): void {
  const warn = () =>
    process.emitWarning(
      `releaseWorker failed for reservation ${acquisition.reservationId}: ${error.message}; the registry frees the slot at ${acquisition.expiresAt.toISOString()}`,
      { type: "RegistryClientWarning", code: error.codeName },
    );
  if (onReleaseError === undefined) {
    warn();
    return;
  }
  try {
    onReleaseError(error, acquisition);
  } catch {
    // The callback's own failure must not replace the task's outcome either.
    warn();
  }
}
