import { Metadata, status, type StatusObject } from "@grpc/grpc-js";
import type { RemovalReason } from "./worker-event.js";

/**
 * The trailer of a NOT_FOUND (or of an UNAUTHENTICATED for a removed
 * worker's own token) that says why the registry no longer has the worker.
 */
const REMOVAL_REASON_TRAILER = "sentinel-removal-reason";

const REMOVAL_REASONS: ReadonlyMap<string, RemovalReason> = new Map([
  ["unregistered", "unregistered"],
  ["expired", "expired"],
  ["replaced", "replaced"],
  ["drained", "drained"],
  ["drain_deadline", "drain-deadline"],
]);

/**
 * A failed registry call. `message` is the server's status details verbatim
 * (e.g. `worker worker-1-abc not found`), so code written against the usage
 * guide's `error.message.includes('not found')` keeps working; `code` is the
 * gRPC status number for callers that branch on the kind of failure.
 */
export class RegistryClientError extends Error {
  /** The gRPC status code, e.g. `status.NOT_FOUND` (5). */
  readonly code: status;
  /** The status details as sent by the server (same text as `message`). */
  readonly details: string;
  /** Trailing metadata of the failed call; empty when the call never reached a server. */
  readonly metadata: Metadata;
  /** The RPC's local name, e.g. `heartbeat` or `heartbeatStream`. */
  readonly method: string;

  constructor(method: string, code: status, details: string, metadata: Metadata = new Metadata(), options?: { cause?: unknown }) {
    // grpc-js fills in a generic text when a status carries no details.
    super(details === "" ? `${method} failed with ${status[code] ?? code}` : details, options);
    this.name = "RegistryClientError";
    this.code = code;
    this.details = details;
    this.metadata = metadata;
    this.method = method;
  }

  /** The status name, e.g. `NOT_FOUND`. */
  get codeName(): string {
    return status[this.code] ?? String(this.code);
  }

  /**
   * Why the registry no longer has the worker the call named, when it says
   * so (a NOT_FOUND for a worker it saw leave recently): `'drained'` and
   * `'drain-deadline'` mean the worker must not register again; the others
   * (`'unregistered'`, `'expired'`, `'replaced'`) that it may. Undefined
   * otherwise.
   */
  get removalReason(): RemovalReason | undefined {
    const [value] = this.metadata.get(REMOVAL_REASON_TRAILER);
    return typeof value === "string" ? REMOVAL_REASONS.get(value) : undefined;
  }

  /**
   * Wraps whatever a call failed with. A ServiceError keeps its code and
   * details; anything else (a serializer or the metadata hook throwing)
   * becomes INTERNAL with its own message, which is never retried, and is
   * kept as `cause`.
   */
  static from(method: string, error: unknown): RegistryClientError {
    if (error instanceof RegistryClientError) {
      return error;
    }
    if (isStatusLike(error)) {
      return new RegistryClientError(method, error.code, error.details, error.metadata ?? new Metadata(), { cause: error });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new RegistryClientError(method, status.INTERNAL, message, new Metadata(), { cause: error });
  }

  /** Builds the error from the final status of a stream. */
  static fromStatus(method: string, finalStatus: StatusObject): RegistryClientError {
    return new RegistryClientError(method, finalStatus.code, finalStatus.details, finalStatus.metadata);
  }
}

/**
 * `acquireWorker` found no worker to give a slot: none matched the query, or
 * none that matched had a free slot (the message says which). The registry
 * answered RESOURCE_EXHAUSTED; nothing was reserved. Test for it with
 * `error instanceof NoWorkerAvailableError`; it is also a
 * {@link RegistryClientError} with `codeName` `'RESOURCE_EXHAUSTED'`, so code
 * that handles every registry failure alike keeps working.
 */
export class NoWorkerAvailableError extends RegistryClientError {
  constructor(method: string, details: string, metadata: Metadata = new Metadata(), options?: { cause?: unknown }) {
    super(method, status.RESOURCE_EXHAUSTED, details, metadata, options);
    this.name = "NoWorkerAvailableError";
  }
}

function isStatusLike(error: unknown): error is { code: status; details: string; metadata?: Metadata } {
  if (typeof error !== "object" || error === null) {
    return false;
  }
  const candidate = error as { code?: unknown; details?: unknown };
  return typeof candidate.code === "number" && typeof candidate.details === "string";
}
