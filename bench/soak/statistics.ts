/** The p-th percentile of sorted values (nearest rank, rounded down); NaN for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
export const median = (values: readonly number[]): number => percentile([...values].sort((a, b) => a - b), 50);
