const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/**
 * Parses a duration written like `500ms`, `10s`, `1.5m` or `2h` into
 * milliseconds. A bare number is refused: the unit is what makes `10` mean
 * something.
 * @throws Error naming the text when it is not a positive duration with a unit.
 */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  const ms = match ? Number(match[1]) * UNITS[match[2]!]! : NaN;
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: write a positive number with a unit, like 500ms, 10s, 10m or 1h`);
  }
  return Math.round(ms);
}

/** Writes milliseconds as `parseDuration` reads them, in the largest unit that divides them: 600000 is `10m`. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
