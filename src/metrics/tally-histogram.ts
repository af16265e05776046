import type { Registry } from "prom-client";

/**
 * An unlabelled histogram for a value observed on a hot path: `observe` only
 * adds to an array of bucket counts (about 20 ns here, against about 190 ns
 * for prom-client's Histogram), and the series are built when /metrics is
 * read. The watch delivery lag is observed once per event per watcher: a
 * million times a second at a thousand watchers (issue 16). It exposes what
 * a prom-client Histogram with the same name, help and buckets would.
 */
export class TallyHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    this.counts = new Float64Array(upperBounds.length);
    // prom-client reads any metric through get(); its type names only its own four classes.
    registry.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  observe(value: number): void {
    const bounds = this.upperBounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** The series, as prom-client's registry formats them: cumulative buckets, +Inf, sum and count. */
  get(): { name: string; help: string; type: string; aggregator: string; values: Series[] } {
    const bucket = `${this.name}_bucket`;
    let cumulative = 0;
    const values: Series[] = this.upperBounds.map((le, i) => ({ value: (cumulative += this.counts[i]!), labels: { le }, metricName: bucket }));
    values.push({ value: this.count, labels: { le: "+Inf" }, metricName: bucket });
    values.push({ value: this.sum, labels: {}, metricName: `${this.name}_sum` }, { value: this.count, labels: {}, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

interface Series {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly metricName: string;
}
