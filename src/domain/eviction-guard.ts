import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";

/** Options of an {@link EvictionGuard}, all required (the registry's options fill them in). */
export interface EvictionGuardOptions {
  /** Length of an intake window: a live worker heartbeats at least once in each (the suggested interval). */
  readonly intakeWindowMs: number;
  /** Intake below this share of the recent level is a collapse. */
  readonly collapseRatio: number;
  /** A recent level below this many workers is too small to judge a collapse by. */
  readonly collapseMinWorkers: number;
  /** How many past windows make up the recent level; a collapse that lasts longer becomes the new normal. */
  readonly historyWindows: number;
  /** A gap this long between two ticks means the registry itself was paused or starved. */
  readonly stallThresholdMs: number;
  /** Most of the fleet one cleanup pass may remove, as a share. */
  readonly maxEvictionShare: number;
  /**
   * The longest a collapse pause lasts. Silence that outlasts it is believed:
   * the level is learnt afresh from what is heard now, and eviction resumes
   * at its per-pass limit. A brake that never lets go would be a lock.
   */
  readonly maxPauseMs: number;
}

/** Whether eviction is held back, and why. */
export interface EvictionStatus {
  readonly paused: boolean;
  readonly reason: string;
  /** Wall-clock ms the pause began, or undefined. */
  readonly pausedSinceMs: number | undefined;
  readonly pausesTotal: number;
  /** Distinct workers heard from in the last complete window. */
  readonly lastWindowIntake: number;
  /** The level that intake is compared with: the best recent window, capped at the fleet's size. */
  readonly expectedIntake: number;
  /** Wall-clock ms at which the pause ends by itself if nothing changes, or undefined when not paused. */
  readonly resumesAtMs: number | undefined;
}

/** A worker as the guard tracks it: the index of the last window it was counted in. */
export interface IntakeMark {
  intakeWindow: number;
}

/**
 * Keeps a registry that was cut off or paused from evicting its live fleet.
 *
 * - Intake: each window (at least the suggested heartbeat interval, closed at
 *   the registry's tick) counts the distinct workers heard from. When the last complete window falls below
 *   `collapseRatio` of the recent level (the best of the previous
 *   `historyWindows` windows, capped at the current fleet size), intake has
 *   collapsed across the fleet: the registry is probably the one cut off, and
 *   eviction pauses. The recent level is recomputed every window from what was
 *   heard, so a fleet that really shrank becomes the new normal once the
 *   history has rolled over; unlike Eureka's threshold, which follows
 *   registrations, it cannot stay stuck. Windows of total silence during a
 *   pause are not learnt: while nothing at all is heard, eviction stays
 *   paused, and the first worker heard again (a heartbeat or a registration)
 *   restarts the comparison. A fleet smaller than `collapseMinWorkers` is
 *   not judged: its silent workers are more likely dead than cut off.
 * - Bound: a collapse pause ends by itself after `maxPauseMs` (Eureka's
 *   self-preservation has no such bound and can hold dead instances for
 *   ever). The silence is then believed: the recent level is forgotten, so the
 *   comparison restarts from what is heard now, and cleanup removes the
 *   expired workers at its per-pass limit. An admin may end a pause sooner
 *   with {@link resume}.
 * - Stall: a gap of `stallThresholdMs` between ticks means the registry itself
 *   was paused (SIGSTOP, a VM freeze, a GC storm). {@link tick} returns the
 *   gap so the registry can give every worker that time back, and eviction
 *   pauses; the windows spanning the stall are discarded, not counted as silence.
 * - After intake recovers or the stall ends, eviction stays held for one more
 *   window, so workers whose heartbeats come a little later than the rest are
 *   not evicted in the gap.
 * - Otherwise a cleanup pass may remove at most `maxEvictionShare` of the fleet.
 */
export class EvictionGuard {
  private windowIndex = 0;
  private windowStartMono: number;
  private windowIntake = 0;
  private readonly history: number[] = [];
  private lastTickMono: number;
  private pause: { reason: string; sinceMs: number; sinceMono: number; holdUntilMono: number | undefined } | undefined;
  private pausesTotal = 0;
  private lastWindowIntake = 0;
  private expectedIntake = 0;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly options: EvictionGuardOptions,
  ) {
    this.windowStartMono = clock.monotonic();
    this.lastTickMono = this.windowStartMono;
  }

  /** Counts a sign of life (a heartbeat or a registration): O(1), once per worker per window. */
  recordHeartbeat(worker: IntakeMark): void {
    if (worker.intakeWindow === this.windowIndex) return;
    worker.intakeWindow = this.windowIndex;
    this.windowIntake++;
  }

  /**
   * Advances the windows and the pause state; call about once a second.
   * Resolves to the length of a stall just detected (ms), or 0.
   */
  tick(fleetSize: number): number {
    const now = this.clock.monotonic();
    const gap = now - this.lastTickMono;
    this.lastTickMono = now;
    if (gap >= this.options.stallThresholdMs) {
      this.startWindow(now);
      // The stall is over by the time it is seen: only the hold window remains.
      this.enterPause(`the registry itself was paused or starved for ${Math.round(gap / 1000)}s`, now + this.options.intakeWindowMs);
      return gap;
    }
    // At most one window per tick, and the next one starts now: intake is counted only between ticks, so a
    // second window closed in the same tick would always look empty (when the window is shorter than a tick).
    if (now - this.windowStartMono >= this.options.intakeWindowMs) {
      this.closeWindow(fleetSize);
      this.windowStartMono = now;
    }
    if (this.pause?.holdUntilMono !== undefined && now >= this.pause.holdUntilMono) {
      this.log.info({ pausedForMs: this.clock.now() - this.pause.sinceMs }, "eviction resumed");
      this.pause = undefined;
    } else if (this.pause !== undefined && this.pause.holdUntilMono === undefined && now - this.pause.sinceMono >= this.options.maxPauseMs) {
      this.log.warn(
        { pausedForMs: now - this.pause.sinceMono, maxPauseMs: this.options.maxPauseMs, lastWindowIntake: this.lastWindowIntake },
        "eviction resumed: the silence outlasted the pause bound and is believed",
      );
      this.forgetLevel();
    }
    return 0;
  }

  /**
   * Ends a pause now (an admin's decision): what is heard from now on is the
   * level a later collapse is judged against. Returns whether eviction was
   * paused.
   */
  resume(): boolean {
    if (this.pause === undefined) return false;
    this.log.warn({ pausedForMs: this.clock.now() - this.pause.sinceMs, reason: this.pause.reason }, "eviction resumed by an admin");
    this.forgetLevel();
    return true;
  }

  /** How many workers one cleanup pass may remove now: 0 while paused. */
  evictionBudget(fleetSize: number): number {
    if (this.pause !== undefined) return 0;
    return Math.max(1, Math.ceil(this.options.maxEvictionShare * fleetSize));
  }

  status(): EvictionStatus {
    const pause = this.pause;
    let resumesAtMs: number | undefined;
    if (pause !== undefined) {
      const endMono = pause.holdUntilMono ?? pause.sinceMono + this.options.maxPauseMs;
      // A wall-clock time in whole milliseconds, as every other: the monotonic clock has fractions.
      resumesAtMs = Math.round(this.clock.now() + Math.max(0, endMono - this.clock.monotonic()));
    }
    return {
      paused: pause !== undefined,
      reason: pause?.reason ?? "",
      pausedSinceMs: pause?.sinceMs,
      pausesTotal: this.pausesTotal,
      lastWindowIntake: this.lastWindowIntake,
      expectedIntake: this.expectedIntake,
      resumesAtMs,
    };
  }

  private forgetLevel(): void {
    this.pause = undefined;
    this.history.length = 0;
    this.expectedIntake = 0;
  }

  private closeWindow(fleetSize: number): void {
    const intake = this.windowIntake;
    const recent = this.history.length === 0 ? 0 : Math.min(fleetSize, Math.max(...this.history));
    // Total silence during a pause is not a level to learn: the registry, not the whole fleet, is the likely
    // casualty, so the pre-collapse level is kept until something is heard again.
    if (!(intake === 0 && this.pause !== undefined)) {
      this.history.push(intake);
      if (this.history.length > this.options.historyWindows) this.history.shift();
    }
    this.windowIndex++;
    this.windowIntake = 0;
    this.lastWindowIntake = intake;
    this.expectedIntake = recent;
    if (recent >= this.options.collapseMinWorkers && intake < this.options.collapseRatio * recent) {
      this.enterPause(`heartbeat intake collapsed: ${intake} workers heard from in the last window, against ${recent} recently`, undefined);
    } else if (this.pause !== undefined && this.pause.holdUntilMono === undefined) {
      // Intake is back: hold one more window for the stragglers.
      this.pause.holdUntilMono = this.clock.monotonic() + this.options.intakeWindowMs;
      this.log.info({ intake, expected: recent, holdMs: this.options.intakeWindowMs }, "heartbeat intake recovered; holding eviction one more window");
    }
  }

  private startWindow(now: number): void {
    this.windowIndex++;
    this.windowIntake = 0;
    this.windowStartMono = now;
  }

  /** Pauses (or keeps paused) eviction; `holdUntilMono` undefined means until intake recovers. */
  private enterPause(reason: string, holdUntilMono: number | undefined): void {
    if (this.pause === undefined) {
      this.pausesTotal++;
      this.pause = { reason, sinceMs: this.clock.now(), sinceMono: this.clock.monotonic(), holdUntilMono };
      this.log.warn({ reason }, "eviction paused");
    } else {
      this.pause.reason = reason;
      this.pause.holdUntilMono = holdUntilMono;
    }
  }
}
