/** Server-side latency of a window, from the registry's own histogram (worker_registry_rpc_duration_seconds) scraped at its edges. */
import type { ServerSideLatency } from "./results.js";

/**
 * p50, p99 and the share within 1 ms of `method`'s successful calls between
 * two scrapes; undefined when the histogram is absent or saw no call.
 */
export function serverSideLatency(before: string | undefined, after: string | undefined, method: string): ServerSideLatency | undefined {
  const a = histogramBuckets(before, method);
  const b = histogramBuckets(after, method);
  if (b.size === 0) return undefined;
  const bounds = [...b.keys()].sort((x, y) => x - y);
  const cumulative = bounds.map((le) => (b.get(le) ?? 0) - (a.get(le) ?? 0));
  const total = cumulative.at(-1) ?? 0;
  if (total === 0) return undefined;
  const quantile = (q: number) => {
    const rank = q * total;
    for (let i = 0; i < bounds.length; i++) {
      if (cumulative[i]! >= rank) {
        const lower = i === 0 ? 0 : bounds[i - 1]!;
        const upper = bounds[i]!;
        if (!Number.isFinite(upper)) return lower * 1000;
        const below = i === 0 ? 0 : cumulative[i - 1]!;
        const inBucket = cumulative[i]! - below;
        return (lower + ((upper - lower) * (rank - below)) / Math.max(1, inBucket)) * 1000;
      }
    }
    return Number.NaN;
  };
  const within1ms = cumulative[bounds.indexOf(0.001)] ?? Number.NaN;
  return { method, count: total, p50Ms: quantile(0.5), p99Ms: quantile(0.99), shareWithin1ms: within1ms / total };
}

/** The share of `method`'s successful calls between two scrapes answered within `boundSeconds`, which must be a bucket bound; NaN otherwise. */
export function shareWithin(before: string | undefined, after: string | undefined, method: string, boundSeconds: number): number {
  const a = histogramBuckets(before, method);
  const b = histogramBuckets(after, method);
  const total = (b.get(Infinity) ?? 0) - (a.get(Infinity) ?? 0);
  const within = b.get(boundSeconds);
  return within === undefined || total === 0 ? Number.NaN : (within - (a.get(boundSeconds) ?? 0)) / total;
}

/** Cumulative bucket counts of worker_registry_rpc_duration_seconds{method, code="OK"} by upper bound (seconds). */
function histogramBuckets(text: string | undefined, method: string): Map<number, number> {
  const buckets = new Map<number, number>();
  if (text === undefined) return buckets;
  for (const line of text.split("\n")) {
    if (!line.startsWith("worker_registry_rpc_duration_seconds_bucket{")) continue;
    const labels = line.slice(line.indexOf("{") + 1, line.lastIndexOf("}"));
    if (!labels.includes(`method="${method}"`) || !labels.includes(`code="OK"`)) continue;
    const le = /le="([^"]+)"/.exec(labels)?.[1];
    if (le === undefined) continue;
    buckets.set(le === "+Inf" ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return buckets;
}
