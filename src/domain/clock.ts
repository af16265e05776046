/**
 * The registry's only source of time. Deadlines inside the process use
 * `monotonic()`, so a wall-clock jump cannot expire or revive workers;
 * timestamps that are shown to users or stored use `now()`.
 */
export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  now(): number;
  /** Milliseconds on a clock that never goes backwards; its origin is arbitrary. */
  monotonic(): number;
}

/** The process clock: `Date.now()` and `performance.now()`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};
