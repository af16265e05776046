/**
 * Domain errors. Each names what went wrong in the caller's terms; the
 * transport maps each class to one gRPC status in `transport/status.ts`.
 */
export abstract class RegistryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A request field breaks a rule. The message names the field and the rule. */
export class InvalidArgumentError extends RegistryError {
  constructor(
    readonly field: string,
    rule: string,
  ) {
    super(`${field} ${rule}`);
  }
}

/** Why a removed worker left, as a NOT_FOUND explains it. */
const LEFT_BECAUSE: Record<string, string> = {
  unregistered: "it was unregistered",
  expired: "cleanup removed it after its heartbeats stopped",
  replaced: "a new registration of its node_id replaced it",
  drained: "it was drained and removed once its tasks finished",
  drain_deadline: "it was drained and removed at its drain deadline",
};

/**
 * No worker with this id is registered (never was, unregistered, or cleaned
 * up). `reason`, when this process saw the worker leave recently, says why:
 * a worker told `drained` must not register again, one told `expired` should.
 */
export class WorkerNotFoundError extends RegistryError {
  constructor(
    readonly workerId: string,
    readonly reason?: string,
  ) {
    super(`worker ${workerId} not found${reason === undefined ? "" : `: ${LEFT_BECAUSE[reason] ?? reason}`}`);
  }
}

/**
 * A task-count change would leave reserved..max_concurrent_tasks (reserved:
 * slots held by AcquireWorker reservations, usually 0); nothing was changed.
 */
export class TaskCountOutOfRangeError extends RegistryError {
  constructor(
    readonly workerId: string,
    readonly currentTasks: number,
    readonly delta: number,
    readonly maxConcurrentTasks: number,
    readonly reservedTasks = 0,
  ) {
    super(
      `delta ${delta} would take current_tasks of worker ${workerId} from ${currentTasks} to ${currentTasks + delta}, ` +
        `outside ${reservedTasks}..${maxConcurrentTasks}` +
        (reservedTasks > 0 && currentTasks + delta < reservedTasks
          ? ` (${reservedTasks} held by AcquireWorker reservations: free them with ReleaseWorker)`
          : ""),
    );
  }
}

/** The worker is draining: it cannot be cordoned or uncordoned; only a new registration undoes a drain. */
export class WorkerDrainingError extends RegistryError {
  constructor(
    readonly workerId: string,
    action: string,
  ) {
    super(`worker ${workerId} is draining and cannot be ${action}: only its re-registration undoes a drain`);
  }
}

/** The store cannot take writes right now (read-only file, full disk, locked database). Retry later. */
export class StoreUnavailableError extends RegistryError {
  constructor(operation: string, cause: unknown) {
    super(`storage unavailable while trying to ${operation}; retry later`, { cause });
  }
}

/** The registry is shutting down; the caller should reconnect to another instance or retry. */
export class ShuttingDownError extends RegistryError {
  constructor() {
    super("registry is shutting down; reconnect and retry");
  }
}

/** Invalid configuration given at start-up. */
export class ConfigError extends RegistryError {}

/** AcquireWorker found no worker to give a slot: none matched, or none that matched had a free slot. */
export class NoWorkerAvailableError extends RegistryError {}

/** No reservation with this id is known: never granted, pruned long after it ended, or its worker was removed. */
export class ReservationNotFoundError extends RegistryError {
  constructor(readonly reservationId: string) {
    super(`reservation ${reservationId} not found: never granted, ended long ago, or its worker was removed`);
  }
}

/** A watcher asked for events the log no longer keeps: it must list again and watch from the list's revision. */
export class RevisionCompactedError extends RegistryError {
  constructor(
    readonly requested: number,
    readonly oldestAvailable: number,
  ) {
    super(
      `revision ${requested} is no longer in the event log (the oldest kept is ${oldestAvailable}); ` +
        `list the workers again with DiscoverWorkers and watch from its revision + 1`,
    );
  }
}

/** A watcher asked to start after the next revision: events that do not exist yet, and might never be numbered so. */
export class FutureRevisionError extends RegistryError {
  constructor(
    readonly requested: number,
    readonly currentRevision: number,
  ) {
    super(
      `start_revision ${requested} is beyond the current revision ${currentRevision}: ` +
        `watch from at most ${currentRevision + 1} (the next event), or from 0 for new events only`,
    );
  }
}

/** A watcher could not keep up with the events and its buffer filled. */
export class WatcherTooSlowError extends RegistryError {
  constructor(
    readonly bufferedEvents: number,
    readonly lastSentRevision: number,
  ) {
    // The revision sent last is not the one received last: grpc-js drops what the client had not read yet.
    super(`watcher fell ${bufferedEvents} events behind and was dropped; resume from the last revision you received + 1, or list again`);
  }
}

/** A heartbeat stream sent no first heartbeat in time: it held a stream slot without naming a worker. */
export class FirstHeartbeatTimeoutError extends RegistryError {
  constructor(readonly timeoutMs: number) {
    super(`no first heartbeat within ${timeoutMs} ms of opening the stream: send a heartbeat naming the worker as soon as the stream opens`);
  }
}

/** The call carries no valid credentials. */
export class UnauthenticatedError extends RegistryError {}

/**
 * A worker token names a worker that is gone: the token went with it. The
 * message says "not found" (so a worker cleaned up registers again, as the
 * guide's error handling does) and, when known, why it left: a drained one
 * must not register again.
 */
export class RemovedWorkerTokenError extends UnauthenticatedError {
  constructor(
    readonly workerId: string,
    readonly reason?: string,
  ) {
    super(
      reason === "drained" || reason === "drain_deadline"
        ? `worker ${workerId} not found: ${LEFT_BECAUSE[reason]}; its token is no longer valid`
        : `worker ${workerId} not found: ${reason === undefined ? "" : `${LEFT_BECAUSE[reason] ?? reason}; `}its token is no longer valid; register again`,
    );
  }
}

/** The caller's credentials do not allow this call. */
export class PermissionDeniedError extends RegistryError {}

/** A configured limit (workers, streams, watchers, registration rate) is reached; retry later or raise the limit. */
export class LimitExceededError extends RegistryError {}

/**
 * A write made on the strength of a lease was refused: another registry
 * process holds the lease now. The schedules stop on this process; callers
 * never see it.
 */
export class LeaseLostError extends RegistryError {
  constructor() {
    super("this registry process no longer holds the lease that runs the fleet-wide schedules");
  }
}
