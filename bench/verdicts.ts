/**
 * The targets the registry is held to (docs/benchmarks.md), each judged
 * against what the run measured: met, missed, or not measured in this run.
 */
import { int, medianOf, ms, perCore, ratio, cores } from "./report-format.js";
import { closedLoopPoint, pacedRun, selectionRun, writeRun, type Results } from "./results.js";
import { perfVerdicts } from "./verdicts-perf.js";

/** One target: what was measured, and whether it met the target. */
export interface Verdict {
  readonly target: string;
  readonly measured: string;
  /** undefined: not measured in this run. */
  readonly met: boolean | undefined;
  readonly detail: string;
}

/** "missed by 23%" for a floor, or "missed: 1.8× the limit" for a ceiling. */
function atLeast(target: string, value: number | undefined, floor: number, show: (v: number) => string, shortBy = true): Verdict {
  if (value === undefined || !Number.isFinite(value)) return { target, measured: "not measured", met: undefined, detail: "" };
  const met = value >= floor;
  return { target, measured: show(value), met, detail: met ? "" : shortBy ? `${((1 - value / floor) * 100).toFixed(0)}% short` : "" };
}

function atMost(target: string, value: number | undefined, limit: number, show: (v: number) => string): Verdict {
  if (value === undefined || !Number.isFinite(value)) return { target, measured: "not measured", met: undefined, detail: "" };
  const met = value <= limit;
  return { target, measured: show(value), met, detail: met ? "" : `${(value / limit).toFixed(1)}× the limit` };
}

/** Every target this run measured something for, in the order of the table. */
export function verdicts(r: Results): Verdict[] {
  return [...heartbeatVerdicts(r), ...perfVerdicts(r), ...pacedVerdicts(r), ...selectionVerdicts(r), ...writeVerdicts(r), ...coldStartVerdicts(r)];
}

/** Every stream served (closed loop and paced fleet), and the closed loop at 1,000 streams against the ceiling and etcd. */
function heartbeatVerdicts(r: Results): Verdict[] {
  const out: Verdict[] = [];
  const reg1k = closedLoopPoint(r, "registry", 1000);
  const echo1k = closedLoopPoint(r, "echo", 1000);
  const etcd1k = closedLoopPoint(r, "etcd", 1000);
  const unserved = [...r.closedLoop, ...r.paced].filter((x) => x.served < ("streams" in x ? x.streams : x.opened));
  if (r.closedLoop.length + r.paced.length > 0) {
    out.push({
      target: "Every stream opened was served (≥ 1 ack)",
      measured: unserved.length === 0 ? "all" : unserved.map((x) => `${x.target}: ${x.served}/${"streams" in x ? x.streams : x.opened}`).join(", "),
      met: unserved.length === 0,
      detail: unserved.length === 0 ? "" : "results of those runs are not valid",
    });
  }
  if (reg1k && echo1k) {
    out.push(
      atLeast("Heartbeats, 1,000 streams: ≥ 0.8× ceiling", reg1k.throughput / echo1k.throughput, 0.8, (v) =>
        `${v.toFixed(2)}× (${int(reg1k.throughput)} vs ${int(echo1k.throughput)} acks/s; per server CPU-second ${ratio(perCore(reg1k), perCore(echo1k))})`,
      ),
    );
  }
  if (reg1k) {
    out.push(
      etcd1k
        ? atLeast("Heartbeats, 1,000 streams: more than etcd", reg1k.throughput / etcd1k.throughput, 1.0000001, (v) => `${v.toFixed(2)}× etcd (${int(reg1k.throughput)} vs ${int(etcd1k.throughput)} acks/s)`)
        : { target: "Heartbeats, 1,000 streams: more than etcd", measured: "etcd not measured (not installed, or --no-etcd)", met: undefined, detail: "" },
    );
  }
  return out;
}

function pacedVerdicts(r: Results): Verdict[] {
  const regPaced = pacedRun(r, "registry");
  const echoPaced = pacedRun(r, "echo");
  if (!regPaced) return [];
  const out: Verdict[] = [
    {
      target: `Paced fleet (${int(regPaced.workers)} × 1/s): no ack missed`,
      measured: `${int(regPaced.missed)} missed of ${int(regPaced.sent)}`,
      met: regPaced.missed === 0 && regPaced.errors === 0,
      detail: regPaced.errors > 0 ? `${regPaced.errors} stream errors` : "",
    },
    atMost("Paced fleet: p99 ack latency ≤ 50 ms", regPaced.latency.p99Ms, 50, (v) => `${v.toFixed(2)} ms`),
    atMost("Paced fleet: server CPU ≤ 0.5 core", regPaced.cpu.server, 0.5, (v) => `${v.toFixed(3)} cores (ceiling ${cores(echoPaced?.cpu.server)})`),
  ];
  if (echoPaced) {
    out.push(atMost("Paced fleet: RSS ≤ 1.5× ceiling's", regPaced.rssPeakMiB / echoPaced.rssPeakMiB, 1.5, (v) => `${v.toFixed(2)}× (${int(regPaced.rssPeakMiB)} vs ${int(echoPaced.rssPeakMiB)} MiB)`));
  }
  return out;
}

/** For each selection call: server-side p99 at 10k workers, and the cost from 10k to 100k workers. */
function selectionVerdicts(r: Results): Verdict[] {
  const out: Verdict[] = [];
  for (const [op, method, label] of [
    ["AcquireRelease", "AcquireWorker", "AcquireWorker"],
    ["GetWorkersForLoadBalancing", "GetWorkersForLoadBalancing", "GetWorkersForLoadBalancing (limit 10)"],
  ] as const) {
    const at10k = selectionRun(r, "registry", op, 10_000)?.serverSide.find((s) => s.method === method);
    if (at10k) {
      out.push({
        target: `${label}, 10k workers: server-side p99 ≤ 1 ms`,
        measured: `p99 ≈ ${at10k.p99Ms.toFixed(3)} ms; ${(at10k.shareWithin1ms * 100).toFixed(2)}% within 1 ms`,
        met: at10k.shareWithin1ms >= 0.99,
        detail: at10k.shareWithin1ms >= 0.99 ? "" : `${(at10k.p99Ms / 1).toFixed(1)}× the limit`,
      });
    }
    const key = op === "AcquireRelease" ? "acquire" : "rank";
    const in10k = r.inproc.find((x) => x.workers === 10_000)?.[key];
    const in100k = r.inproc.find((x) => x.workers === 100_000)?.[key];
    if (in10k && in100k) {
      // The median call is the cost; p99 is shown too, but on a shared machine it is mostly the neighbours' noise.
      const serverSide100k = selectionRun(r, "registry", op, 100_000)?.serverSide.find((s) => s.method === method);
      out.push(
        atMost(`${label}: 100k workers cost ≤ 3× 10k`, in100k.p50Ms / in10k.p50Ms, 3, (v) =>
          `${v.toFixed(1)}× (in-process median ${in10k.p50Ms.toFixed(3)} → ${in100k.p50Ms.toFixed(3)} ms, p99 ${(in100k.p99Ms / in10k.p99Ms).toFixed(1)}×; ` +
          `server-side median ${ms(at10k?.p50Ms, 3)} → ${ms(serverSide100k?.p50Ms, 3)} ms)`,
        ),
      );
    }
  }
  return out;
}

function writeVerdicts(r: Results): Verdict[] {
  return (["RegisterWorker", "UpdateTaskCount", "RecordTaskCompletion"] as const).flatMap((op) => {
    const reg = writeRun(r, "registry", op);
    const echo = writeRun(r, "echo", op);
    if (!reg || !echo) return [];
    return [atLeast(`${op}: ≥ 0.7× ceiling's unary throughput`, reg.throughput / echo.throughput, 0.7, (v) => `${v.toFixed(2)}× (${int(reg.throughput)} vs ${int(echo.throughput)} calls/s)`)];
  });
}

function coldStartVerdicts(r: Results): Verdict[] {
  if (!r.coldStart) return [];
  const median = medianOf(r.coldStart.registryMs);
  return [atMost(`Cold start, ${int(r.coldStart.workers)} workers: serving within 2 s`, median / 1000, 2, (v) => `${v.toFixed(2)} s`)];
}

const VISIBLE = "Replicas: a write is visible on another replica within 1 s (worst probe)";

/** The replica scenario's targets (issue 13), judged on the PostgreSQL run; none when it did not run. */
export function replicaVerdicts(r: Results): Verdict[] {
  const pg = (r.replicas ?? []).find((x) => x.store === "postgres");
  if (pg === undefined) return [];
  const { heartbeats, lag, statements, converged } = pg;
  const out: Verdict[] = [
    {
      target: `Replicas: every stream served, no heartbeat ack missed (${int(pg.streams)} streams over ${pg.replicas})`,
      measured: `${int(heartbeats.served)}/${int(heartbeats.opened)} served, ${int(heartbeats.missed)} missed of ${int(heartbeats.sent)}`,
      met: heartbeats.served === heartbeats.opened && heartbeats.missed === 0 && heartbeats.errors === 0,
      detail: heartbeats.errors > 0 ? `${heartbeats.errors} stream errors` : "",
    },
    lag !== undefined && lag.probed.failed > 0
      ? { target: VISIBLE, measured: `${lag.probed.failed} of ${lag.probed.failed + lag.probed.samples} probes not seen within 5 s`, met: false, detail: "" }
      : atMost(VISIBLE, lag === undefined ? undefined : lag.probed.maxMs / 1000, 1, (v) => `${(v * 1000).toFixed(1)} ms (median ${ms(lag?.probed.p50Ms, 1)} ms, ${lag?.probed.samples} probes)`),
    atMost("Replicas: heartbeats cost a few statements (≤ 5) per replica per second", statements?.heartbeatPerReplica, 5, (v) => `${v.toFixed(1)} per replica per second`),
  ];
  if (converged) {
    const agree = converged.revisions.every((x) => x === converged.revisions[0]) && converged.workers.every((x) => x === converged.workers[0]);
    out.push({
      target: "Replicas: agree on the revision and the fleet once writes stop",
      measured: `revision ${converged.revisions.map((x) => int(x)).join(" / ")}, workers ${converged.workers.map((x) => int(x)).join(" / ")}, after ${int(converged.afterMs)} ms`,
      met: agree,
      detail: agree ? "" : "still apart after 5 s",
    });
  }
  return out;
}

/** The verdict column: met, missed (and by how much), or not measured. */
export const verdictText = (v: Verdict) => (v.met === undefined ? "not measured" : v.met ? "**met**" : `**missed**${v.detail ? ` (${v.detail})` : ""}`);
