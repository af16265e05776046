/**
 * The tables of the scenarios of issue 16 (heartbeat cost, selection under
 * load, watch fan-out), for the console and the generated part of
 * docs/benchmarks.md. Reads results only.
 */
import { cores, int, medianOf, ms, pct, table } from "./report-format.js";
import type { CostSample, CostTarget } from "./perf-results.js";
import type { Results } from "./results.js";

const LABEL: Record<CostTarget, string> = {
  registry: "registry (SQLite)",
  "registry-postgres": "registry (PostgreSQL)",
  "echo-bare": "bare grpc-js (no protobuf)",
  echo: "protobuf-es echo",
};

/** The samples of one target at one closed-loop stream count, by round. */
export const costSamples = (r: Results, target: CostTarget, streams: number, load: "closed" | "paced" = "closed"): CostSample[] =>
  (r.heartbeatCost?.samples ?? []).filter((x) => x.target === target && x.streams === streams && x.load === load);

/**
 * The median over rounds of a per-round ratio `of(a) / of(b)` between two targets (rounds measured both, back to back);
 * undefined when no round has both.
 */
export function medianRatio(r: Results, a: CostTarget, b: CostTarget, streams: number, of: (x: CostSample) => number, load: "closed" | "paced" = "closed"): number | undefined {
  const bs = costSamples(r, b, streams, load);
  const ratios = costSamples(r, a, streams, load).flatMap((x) => {
    const y = bs.find((s) => s.round === x.round);
    return y === undefined ? [] : [of(x) / of(y)];
  });
  return ratios.length === 0 ? undefined : medianOf(ratios);
}

const med = (xs: readonly CostSample[], of: (x: CostSample) => number) => (xs.length === 0 ? Number.NaN : medianOf(xs.map(of)));
const times = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "—" : `${x.toFixed(2)}×`);

function costTable(r: Results): string {
  const samples = r.heartbeatCost?.samples ?? [];
  const points = [...new Set(samples.map((x) => `${x.load}/${x.streams}`))];
  const rows: string[][] = [];
  for (const point of points) {
    const [load, streamsText] = point.split("/") as ["closed" | "paced", string];
    const streams = Number(streamsText);
    for (const target of Object.keys(LABEL) as CostTarget[]) {
      const xs = costSamples(r, target, streams, load);
      if (xs.length === 0) continue;
      const vsBare = target === "echo-bare" || load === "paced" ? undefined : medianRatio(r, target, "echo-bare", streams, (x) => x.cpuUsPerAck);
      const vsSqlite = target === "registry-postgres" ? medianRatio(r, target, "registry", streams, (x) => x.cpuUsPerAck, load) : undefined;
      const tputVsBare = target === "echo-bare" || load === "paced" ? undefined : medianRatio(r, target, "echo-bare", streams, (x) => x.acksPerSecond);
      rows.push([
        `${load === "paced" ? "paced 1/s" : "closed"}, ${int(streams)}`,
        LABEL[target],
        `${xs.length}`,
        int(med(xs, (x) => x.acksPerSecond)),
        ms(med(xs, (x) => x.cpuUsPerAck), 1),
        times(vsBare),
        times(tputVsBare),
        times(vsSqlite),
        `${cores(med(xs, (x) => x.serverCores))}${target === "registry-postgres" ? ` + ${cores(med(xs, (x) => x.databaseCores))}` : ""}`,
        `${ms(med(xs, (x) => x.latency.p50Ms))} / ${ms(med(xs, (x) => x.latency.p99Ms))}`,
        cores(med(xs, (x) => x.loadGeneratorCores)),
        cores(med(xs, (x) => x.otherCores)),
        pct(med(xs, (x) => x.serverWaiting)),
        xs.every((x) => x.served === x.streams && x.errors === 0) ? "✓" : `✗ ${xs.map((x) => `${x.served}/${x.streams}, ${x.errors} errors`).join("; ")}`,
      ]);
    }
  }
  return table(
    [
      "load, streams",
      "target",
      "rounds",
      "acks/s (median)",
      "CPU µs per ack (median)",
      "CPU per ack ÷ bare (median of rounds)",
      "acks/s ÷ bare",
      "CPU per ack ÷ SQLite",
      "server cores (+ PostgreSQL)",
      "p50 / p99 ms",
      "load-gen cores",
      "other load, cores",
      "server waited for a CPU",
      "served",
    ],
    rows,
  );
}

function loadedSelectionTable(r: Results): string {
  const share = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "—" : `${(x * 100).toFixed(2)}%`);
  return table(
    ["call", "workers", "paced streams", "orchestrators", "calls/s", "server-side p50 / p99 ms (histogram)", "server-side ≤ 2 ms", "client p50 / p99 ms", "heartbeat acks/s, p99 ms", "server cores", "other load, cores", "server waited for a CPU"],
    (r.loadedSelection ?? []).flatMap((x) =>
      x.serverSide.map((s) => [
        s.method,
        int(x.workers),
        int(x.streams),
        `${x.orchestrators}`,
        int(x.callsPerSecond),
        `${ms(s.p50Ms, 3)} / ${ms(s.p99Ms, 3)}`,
        share(s.shareWithin2ms),
        `${ms(x.latency.p50Ms)} / ${ms(x.latency.p99Ms)}`,
        `${int(x.heartbeats.acksPerSecond)}, ${ms(x.heartbeats.latency.p99Ms)}`,
        cores(x.serverCores),
        cores(x.otherCores),
        pct(x.serverWaiting),
      ]),
    ),
  );
}

function watchFanoutTable(r: Results): string {
  return table(
    ["watchers", "events per message, at most", "events/s asked, committed", "deliveries/s (share of those due)", "delivery p50 / p99 / max ms", "fast watchers cut off", "slow watcher", "server cores", "load generators, cores", "server RSS start → peak → end MiB", "errors"],
    (r.watchFanout ?? []).map((x) => [
      int(x.watchers),
      int(x.eventsPerMessage ?? 1),
      `${int(x.eventsPerSecond)}, ${int(x.committedPerSecond)}`,
      `${int(x.deliveredPerSecond)} (${pct(x.dueShare)})`,
      `${ms(x.delivery.p50Ms)} / ${ms(x.delivery.p99Ms)} / ${ms(x.delivery.maxMs, 1)}`,
      `${x.fastCutOff}`,
      x.slowCutOff ? `cut off after ${ms((x.slowCutOffAfterMs ?? 0) / 1000, 1)} s (${x.slowEndReason ?? "?"})` : "still open",
      cores(x.serverCores),
      cores(x.loadGeneratorCores),
      `${ms(x.rssStartMiB, 0)} → ${ms(x.rssPeakMiB, 0)} → ${ms(x.rssEndMiB, 0)}`,
      x.writeErrors > 0 || x.firstError ? `${x.writeErrors}; ${x.firstError ?? ""}` : "0",
    ]),
  );
}

/** The parts of the report for the scenarios of issue 16 that ran; empty when none did. */
export function renderPerfTables(r: Results): string[] {
  const parts: string[] = [];
  const cost = r.heartbeatCost;
  if (cost && cost.samples.length > 0) {
    parts.push(
      "",
      `#### Heartbeat cost: server CPU per acknowledged heartbeat (${cost.rounds} rounds of ${cost.windowMs / 1000} s windows, targets back to back in a rotating order; ratios are per round, then the median)` +
        (cost.postgresSkipped ? `; PostgreSQL not measured: ${cost.postgresSkipped}` : ""),
      "",
      costTable(r),
    );
  }
  const loaded = r.loadedSelection ?? [];
  if (loaded.length > 0) {
    parts.push(
      "",
      `#### Selection under load: ${int(loaded[0]!.streams)} paced heartbeat streams (1/s each) and ${loaded[0]!.orchestrators} orchestrators (one call in flight each), ${ms(loaded[0]!.seconds, 0)} s per window; filter: capability "general", which every worker has`,
      "",
      loadedSelectionTable(r),
    );
  }
  const watch = r.watchFanout ?? [];
  if (watch.length > 0) {
    parts.push(
      "",
      `#### Watch fan-out: every watcher subscribed to every event (UpdateTaskCount at a fixed rate), one more that never reads, ${ms(watch[0]!.seconds, 0)} s per window; delivery from the event's occurred_at, on one watcher in ten`,
      "",
      watchFanoutTable(r),
    );
  }
  return parts;
}
