/**
 * The targets of issue 16, judged on what the run measured: heartbeat CPU
 * per ack and throughput against the bare transport, PostgreSQL against
 * SQLite per heartbeat, selection under load, watch fan-out.
 */
import { costSamples, medianRatio } from "./report-perf.js";
import type { Results } from "./results.js";

/** One target and what the run measured for it: verdicts.ts's Verdict (which lists these with its own). */
export interface PerfVerdict {
  readonly target: string;
  readonly measured: string;
  /** undefined: not measured in this run. */
  readonly met: boolean | undefined;
  readonly detail: string;
}

function judged(target: string, value: number | undefined, ok: (v: number) => boolean, show: (v: number) => string, miss: (v: number) => string): PerfVerdict {
  if (value === undefined || !Number.isFinite(value)) return { target, measured: "not measured", met: undefined, detail: "" };
  const met = ok(value);
  return { target, measured: show(value), met, detail: met ? "" : miss(value) };
}

/** Every issue-16 target this run measured something for. */
export function perfVerdicts(r: Results): PerfVerdict[] {
  return [...costVerdicts(r), ...loadedSelectionVerdicts(r), ...watchVerdicts(r)];
}

/** Server-side p99 ≤ 2 ms at 10k workers under load (exact: the share within the 2 ms bucket), and p99 growth 10k → 100k under 1.5×. */
function loadedSelectionVerdicts(r: Results): PerfVerdict[] {
  const out: PerfVerdict[] = [];
  for (const method of ["AcquireWorker", "GetWorkersForLoadBalancing"]) {
    const at = (workers: number) => (r.loadedSelection ?? []).flatMap((x) => (x.workers === workers ? x.serverSide.filter((s) => s.method === method) : []))[0];
    const small = at(10_000);
    const large = at(100_000);
    if (small === undefined) continue;
    out.push(
      judged(`${method} under load, 10k workers: server-side p99 ≤ 2 ms`, small.shareWithin2ms, (v) => v >= 0.99, (v) =>
        `p99 ≈ ${small.p99Ms.toFixed(3)} ms; ${(v * 100).toFixed(2)}% within 2 ms`, () => `${(small.p99Ms / 2).toFixed(1)}× the limit`),
    );
    if (large !== undefined) {
      out.push(
        judged(`${method} under load: p99 at 100k workers < 1.5× 10k`, large.p99Ms / small.p99Ms, (v) => v < 1.5, (v) =>
          `${v.toFixed(2)}× (server-side p99 ${small.p99Ms.toFixed(3)} → ${large.p99Ms.toFixed(3)} ms, median ${small.p50Ms.toFixed(3)} → ${large.p50Ms.toFixed(3)} ms)`, (v) => `${(v / 1.5).toFixed(2)}× the limit`),
      );
    }
  }
  return out;
}

/** At 1,000 watchers: delivery p99 under 50 ms with every event delivered to every fast watcher, none cut off, the slow one cut off, memory back down. */
function watchVerdicts(r: Results): PerfVerdict[] {
  const run = (r.watchFanout ?? []).find((x) => x.watchers === 1000);
  if (run === undefined) return [];
  const complete = run.fastCutOff === 0 && run.dueShare >= 0.99;
  // With nothing delivered there is no percentile (NaN, saved as null).
  const p99: number | null = run.delivery.p99Ms;
  const delivered = typeof p99 === "number" && Number.isFinite(p99);
  return [
    {
      target: "Watch fan-out, 1,000 watchers × 1,000 events/s: delivery p99 < 50 ms, none lost",
      measured: `p99 ${delivered ? `${p99.toFixed(1)} ms` : "— (nothing delivered)"}, ${(run.dueShare * 100).toFixed(1)}% of due events delivered at ${Math.round(run.committedPerSecond)} events/s committed`,
      met: complete && delivered && p99 < 50,
      detail: !complete || !delivered ? `${run.fastCutOff} fast watchers cut off, ${(run.dueShare * 100).toFixed(1)}% delivered` : p99 < 50 ? "" : `${(p99 / 50).toFixed(2)}× the limit`,
    },
    {
      target: "Watch fan-out: the slow watcher is cut off, memory bounded",
      measured: `slow watcher ${run.slowCutOff ? `cut off after ${((run.slowCutOffAfterMs ?? 0) / 1000).toFixed(1)} s` : "still open"}; RSS ${run.rssStartMiB.toFixed(0)} → peak ${run.rssPeakMiB.toFixed(0)} → ${run.rssEndMiB.toFixed(0)} MiB`,
      met: run.slowCutOff,
      detail: run.slowCutOff ? "" : "the slow watcher was still open at the end of the window",
    },
  ];
}

function costVerdicts(r: Results): PerfVerdict[] {
  if (!r.heartbeatCost) return [];
  const out: PerfVerdict[] = [];
  const rounds = r.heartbeatCost.rounds;
  for (const streams of [100, 1000]) {
    if (costSamples(r, "registry", streams).length === 0) continue;
    const cpu = medianRatio(r, "registry", "echo-bare", streams, (x) => x.cpuUsPerAck);
    const reg = costSamples(r, "registry", streams);
    const bare = costSamples(r, "echo-bare", streams);
    const us = (xs: typeof reg) => (xs.length === 0 ? "—" : [...xs.map((x) => x.cpuUsPerAck)].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!.toFixed(1));
    out.push(
      judged(`Heartbeat CPU per ack, ${streams.toLocaleString("en-US")} streams: ≤ 1.25× bare grpc-js`, cpu, (v) => v <= 1.25, (v) =>
        `${v.toFixed(2)}× (${us(reg)} vs ${us(bare)} µs; median of ${rounds} rounds)`, (v) => `${(v / 1.25).toFixed(2)}× the limit`),
    );
    const tput = medianRatio(r, "registry", "echo-bare", streams, (x) => x.acksPerSecond);
    out.push(judged(`Heartbeat throughput, ${streams.toLocaleString("en-US")} streams: ≥ 0.85× bare grpc-js`, tput, (v) => v >= 0.85, (v) => `${v.toFixed(2)}×`, (v) => `${((1 - v / 0.85) * 100).toFixed(0)}% short`));
  }
  for (const load of ["closed", "paced"] as const) {
    const n = load === "closed" ? 1000 : r.heartbeatCost.samples.find((x) => x.load === "paced")?.streams;
    if (n === undefined || costSamples(r, "registry-postgres", n, load).length === 0) continue;
    const ratio = medianRatio(r, "registry-postgres", "registry", n, (x) => x.cpuUsPerAck, load);
    out.push(
      judged(`PostgreSQL store: CPU per heartbeat (registry + PostgreSQL) ≤ 1.15× SQLite's, ${load === "closed" ? "closed loop" : "paced 1/s"}, ${n.toLocaleString("en-US")} streams`, ratio, (v) => v <= 1.15, (v) =>
        `${v.toFixed(2)}×`, (v) => `${(v / 1.15).toFixed(2)}× the limit`),
    );
  }
  return out;
}
