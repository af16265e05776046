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

/** No worker with this id is registered (never was, unregistered, or cleaned up). */
export class WorkerNotFoundError extends RegistryError {
  constructor(readonly workerId: string) {
    super(`worker ${workerId} not found`);
  }
}

/** A task-count change would leave 0..max_concurrent_tasks; nothing was changed. */
export class TaskCountOutOfRangeError extends RegistryError {
  constructor(
    readonly workerId: string,
    readonly currentTasks: number,
    readonly delta: number,
    readonly maxConcurrentTasks: number,
  ) {
    super(
      `delta ${delta} would take current_tasks of worker ${workerId} from ${currentTasks} to ${currentTasks + delta}, ` +
        `outside 0..${maxConcurrentTasks}`,
    );
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
