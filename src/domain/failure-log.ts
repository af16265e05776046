import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";

/** While a repeating task keeps failing, a failure is logged at most this often. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * The log of a task that repeats every second or so (a heartbeat flush, a
 * tick): its first failure is logged, then at most once a minute with the
 * count since, and its recovery once. A storage outage then makes a few log
 * lines, not one per second.
 */
export class FailureLog {
  private failingSinceMs: number | undefined;
  private lastLoggedMs = 0;
  private failuresSinceLog = 0;

  /** `message` is logged on failure; its part before ";" with ": recovered" on recovery. */
  constructor(private readonly message: string) {}

  failed(log: Logger, clock: Clock, error: unknown, fields: object = {}): void {
    const now = clock.now();
    this.failuresSinceLog++;
    if (this.failingSinceMs !== undefined && now - this.lastLoggedMs < FAILURE_LOG_INTERVAL_MS) return;
    this.failingSinceMs ??= now;
    log.warn({ ...fields, err: error, failures: this.failuresSinceLog, failingForMs: now - this.failingSinceMs }, this.message);
    this.lastLoggedMs = now;
    this.failuresSinceLog = 0;
  }

  succeeded(log: Logger, clock: Clock): void {
    if (this.failingSinceMs === undefined) return;
    log.info({ failedForMs: clock.now() - this.failingSinceMs }, `${this.message.split(";")[0]}: recovered`);
    this.failingSinceMs = undefined;
    this.failuresSinceLog = 0;
  }

  /** Whether the task is failing now. */
  get failing(): boolean {
    return this.failingSinceMs !== undefined;
  }
}
