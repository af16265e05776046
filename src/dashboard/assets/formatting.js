// @ts-check
// Figures as the page writes them. Pure functions of their argument: no DOM, no state.

const countFormat = new Intl.NumberFormat("en");

/** A count with thousands separators: 10,000. @param {number} n */
export function formatCount(n) {
  return countFormat.format(n);
}

/** A share in 0..1 as a percentage with one decimal: 95.0 %. @param {number} share */
export function formatPercent(share) {
  return `${(share * 100).toFixed(1)} %`;
}

/** A priority as GetWorkersForLoadBalancing's callers see it, to three decimals. @param {number} priority */
export function formatPriority(priority) {
  return priority.toFixed(3);
}

/** A duration in the largest unit that keeps it readable: 980 ms, 2.8 s, 15 s, 1.5 min, 2.0 h. @param {number} ms */
export function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/**
 * A heartbeat's age in whole seconds: ages move once a second, and a finer
 * figure would be noise.
 * @param {number} ms
 */
export function formatAge(ms) {
  if (ms < 1000) return "<1 s";
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}
