/**
 * Exponential backoff with full jitter ("Exponential Backoff And Jitter",
 * AWS Architecture Blog, 2015): the wait before retry `attempt` is drawn
 * uniformly from `[0, min(maxMs, baseMs * multiplier^attempt))`. Full jitter
 * rather than a fixed schedule because every worker of a fleet sees a server
 * restart at the same instant; a shared schedule would bring them all back in
 * the same millisecond.
 */
export interface BackoffPolicy {
  /** Ceiling of the first wait (attempt 0), in milliseconds. Must be >= 0. */
  baseMs: number;
  /** The ceiling never grows past this, in milliseconds. Must be >= baseMs. */
  maxMs: number;
  /** Growth of the ceiling per attempt. Default 2. Must be >= 1. */
  multiplier?: number;
}

/** A source of uniform numbers in [0, 1), like `Math.random`. */
export type RandomSource = () => number;

/**
 * The largest wait allowed before retry `attempt` (0-based):
 * `min(maxMs, baseMs * multiplier^attempt)`.
 *
 * @throws RangeError if `attempt` is negative or not an integer, or the policy
 *   breaks its documented bounds.
 */
export function backoffCeilingMs(attempt: number, policy: BackoffPolicy): number {
  const multiplier = policy.multiplier ?? 2;
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`attempt must be a non-negative integer, got ${attempt}`);
  }
  if (!(policy.baseMs >= 0) || !(policy.maxMs >= policy.baseMs) || !(multiplier >= 1)) {
    throw new RangeError(
      `backoff policy must satisfy 0 <= baseMs <= maxMs and multiplier >= 1, got baseMs=${policy.baseMs} maxMs=${policy.maxMs} multiplier=${multiplier}`,
    );
  }
  // Past ~1000 attempts the power overflows to Infinity; min() still caps it.
  return Math.min(policy.maxMs, policy.baseMs * multiplier ** attempt);
}

/**
 * The wait before retry `attempt` (0-based), drawn with full jitter from
 * `[0, backoffCeilingMs(attempt, policy))`, rounded down to whole milliseconds.
 *
 * @param random - Uniform source in [0, 1); injected so tests and callers
 *   can make the schedule deterministic.
 * @throws RangeError as {@link backoffCeilingMs}, or if `random` returns a
 *   value outside [0, 1).
 */
export function fullJitterDelayMs(attempt: number, policy: BackoffPolicy, random: RandomSource): number {
  const ceiling = backoffCeilingMs(attempt, policy);
  const draw = random();
  if (!(draw >= 0 && draw < 1)) {
    throw new RangeError(`random source must return a number in [0, 1), got ${draw}`);
  }
  return Math.floor(draw * ceiling);
}
