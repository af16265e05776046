import type { Clock } from "../../src/domain/clock.js";

/** A clock that moves only when told: tests cross a 15-minute threshold in microseconds. */
export class FakeClock implements Clock {
  private wallMs: number;
  private monotonicMs = 1_000;

  constructor(startWallMs = Date.UTC(2026, 0, 1)) {
    this.wallMs = startWallMs;
  }

  now(): number {
    return this.wallMs;
  }

  monotonic(): number {
    return this.monotonicMs;
  }

  /** Time passes: both clocks move. */
  advance(ms: number): void {
    this.wallMs += ms;
    this.monotonicMs += ms;
  }

  /** The wall clock is set forwards or backwards (NTP step, operator); monotonic time does not move. */
  jumpWall(ms: number): void {
    this.wallMs += ms;
  }
}
