import { Metadata, status, type StatusObject } from "@grpc/grpc-js";
import {
  FirstHeartbeatTimeoutError,
  FutureRevisionError,
  InvalidArgumentError,
  LimitExceededError,
  NoWorkerAvailableError,
  PermissionDeniedError,
  RemovedWorkerTokenError,
  ReservationNotFoundError,
  RevisionCompactedError,
  ShuttingDownError,
  StoreUnavailableError,
  TaskCountOutOfRangeError,
  WorkerDrainingError,
  UnauthenticatedError,
  WatcherTooSlowError,
  WorkerNotFoundError,
} from "../domain/errors.js";
import type { Logger } from "../domain/logger.js";

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * The one table from domain errors to gRPC status codes. Every handler goes
 * through it: grpc-js would otherwise answer UNKNOWN with the raw message.
 */
const STATUS_BY_ERROR: ReadonlyArray<readonly [ErrorClass, status]> = [
  [InvalidArgumentError, status.INVALID_ARGUMENT],
  [WorkerNotFoundError, status.NOT_FOUND],
  [ReservationNotFoundError, status.NOT_FOUND],
  [TaskCountOutOfRangeError, status.FAILED_PRECONDITION],
  [WorkerDrainingError, status.FAILED_PRECONDITION],
  [NoWorkerAvailableError, status.RESOURCE_EXHAUSTED],
  [WatcherTooSlowError, status.RESOURCE_EXHAUSTED],
  [RevisionCompactedError, status.OUT_OF_RANGE],
  [FutureRevisionError, status.OUT_OF_RANGE],
  [LimitExceededError, status.RESOURCE_EXHAUSTED],
  [FirstHeartbeatTimeoutError, status.DEADLINE_EXCEEDED],
  [UnauthenticatedError, status.UNAUTHENTICATED],
  [PermissionDeniedError, status.PERMISSION_DENIED],
  [StoreUnavailableError, status.UNAVAILABLE],
  [ShuttingDownError, status.UNAVAILABLE],
];

/**
 * The trailer a NOT_FOUND carries when the registry knows why the worker
 * left (`unregistered`, `expired`, `replaced`, `drained`, `drain_deadline`):
 * a worker node told `drained` or `drain_deadline` stops instead of
 * registering again.
 */
export const REMOVAL_REASON_TRAILER = "sentinel-removal-reason";

export function removalTrailer(reason: string): Metadata {
  const metadata = new Metadata();
  metadata.set(REMOVAL_REASON_TRAILER, reason);
  return metadata;
}

/**
 * The status to answer for an error thrown by the domain. Anything not in the
 * table is a bug: it becomes INTERNAL with a generic message, and the cause is
 * logged, never sent to the caller.
 */
export function statusForError(error: unknown, log: Logger, method: string): Pick<StatusObject, "code" | "details"> & { metadata?: Metadata } {
  for (const [errorClass, code] of STATUS_BY_ERROR) {
    if (error instanceof errorClass) {
      if (code === status.UNAVAILABLE) log.warn({ method, err: error }, "request refused: service unavailable");
      if ((error instanceof WorkerNotFoundError || error instanceof RemovedWorkerTokenError) && error.reason !== undefined) {
        return { code, details: error.message, metadata: removalTrailer(error.reason) };
      }
      return { code, details: error.message };
    }
  }
  log.error({ method, err: error }, "request failed unexpectedly");
  return { code: status.INTERNAL, details: "internal error" };
}
