import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { TallyHistogram } from "../../src/metrics/tally-histogram.js";

describe("TallyHistogram", () => {
  it("exposes exactly what a prom-client Histogram with the same buckets exposes for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const theirs = new Registry();
    const ours = new Registry();
    const reference = new Histogram({ name: "lag_seconds", help: "Lag.", buckets, registers: [theirs] });
    const tally = new TallyHistogram("lag_seconds", "Lag.", buckets, ours);
    // On a bound, between bounds, above the last, and zero.
    for (const value of [0, 0.001, 0.0015, 0.05, 0.1, 0.7, 1, 3, 42]) {
      reference.observe(value);
      tally.observe(value);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("exposes zeros before any observation, as prom-client does for a histogram without labels", async () => {
    const theirs = new Registry();
    const ours = new Registry();
    new Histogram({ name: "idle_seconds", help: "Idle.", buckets: [0.5, 5], registers: [theirs] });
    new TallyHistogram("idle_seconds", "Idle.", [0.5, 5], ours);
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});
