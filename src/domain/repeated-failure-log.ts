import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";

/** The constant messages of a {@link RepeatedFailureLog}. */
export interface RepeatedFailureMessages {
  /** Logged at warn for the first failure and for each summary. */
  readonly failed: string;
  /** Logged at info once, at the first success after failures. */
  readonly recovered: string;
}

/**
 * Logs a failure that repeats while a background task retries it (storage
 * that refuses writes for minutes) without a line per attempt: the first
 * failure, then at most one line per `intervalMs` with how many failed since
 * the previous line (`failures`) and for how long (`failingForMs`), and the
 * recovery once, with the total (`failures`, `failedForMs`). Time is the
 * clock's monotonic time.
 */
export class RepeatedFailureLog {
  private firstFailureAtMs: number | undefined;
  private lastLineAtMs = 0;
  private total = 0;
  private sinceLastLine = 0;

  /** @param intervalMs the least time between two failure lines. Default one minute. */
  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly messages: RepeatedFailureMessages,
    private readonly intervalMs = 60_000,
  ) {}

  /** One more failure; `fields` go on the line if one is written, with the error as `err`. */
  failed(fields: object, error: unknown): void {
    const now = this.clock.monotonic();
    this.total++;
    this.sinceLastLine++;
    if (this.firstFailureAtMs === undefined) this.firstFailureAtMs = now;
    else if (now - this.lastLineAtMs < this.intervalMs) return;
    this.log.warn({ ...fields, err: error, failures: this.sinceLastLine, failingForMs: now - this.firstFailureAtMs }, this.messages.failed);
    this.lastLineAtMs = now;
    this.sinceLastLine = 0;
  }

  /** A success: logs the recovery if it ends a run of failures, else nothing. */
  succeeded(fields: object = {}): void {
    if (this.firstFailureAtMs === undefined) return;
    this.log.info({ ...fields, failures: this.total, failedForMs: this.clock.monotonic() - this.firstFailureAtMs }, this.messages.recovered);
    this.firstFailureAtMs = undefined;
    this.total = 0;
    this.sinceLastLine = 0;
  }
}
