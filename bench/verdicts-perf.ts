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
  return [...costVerdicts(r)];
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
