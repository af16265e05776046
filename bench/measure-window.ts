/**
 * One measurement window: the load generator's counts over a stretch of
 * time, with the CPU each process used meanwhile, the server's peak RSS and,
 * for a registry with a metrics port, its metrics before and after.
 */
import fs from "node:fs";
import type { LoadGenerator } from "./load-generator.js";
import type { LoadReply } from "./loadgen-protocol.js";
import { coresBetween, markCpu, rssMiB, sleep, waitingBetween } from "./proc.js";
import type { CpuShare } from "./results.js";
import type { ServerProcess } from "./servers.js";

export interface MeasuredWindow {
  readonly report: Extract<LoadReply, { type: "report" }>;
  readonly cpu: CpuShare;
  readonly rssPeakMiB: number;
  /** The server's /metrics text at the window's edges; undefined without a metrics port. */
  readonly metricsBefore: string | undefined;
  readonly metricsAfter: string | undefined;
}

/**
 * Resets the load generator's counters, waits `durationMs` (sampling the
 * server's RSS every 500 ms) and takes its report. "Other" CPU is the
 * machine's busy time less the server, the load generator and this process:
 * the neighbours.
 */
export async function measureWindow(generator: LoadGenerator, server: ServerProcess, durationMs: number): Promise<MeasuredWindow> {
  const metricsBefore = await scrape(server);
  await generator.request({ type: "reset" }, "reset");
  const pids = [server.pid, generator.pid];
  const before = markCpu(pids);
  const busyBefore = machineBusySeconds();
  const selfBefore = process.cpuUsage();
  let rssPeakMiB = rssMiB(server.pid);
  const end = performance.now() + durationMs;
  while (performance.now() < end) {
    await sleep(Math.min(500, end - performance.now()));
    rssPeakMiB = Math.max(rssPeakMiB, rssMiB(server.pid));
  }
  const report = await generator.request({ type: "report" }, "report");
  const after = markCpu(pids);
  const busyAfter = machineBusySeconds();
  const self = process.cpuUsage(selfBefore);
  const metricsAfter = await scrape(server);
  const wall = (after.atMs - before.atMs) / 1000;
  const serverCores = coresBetween(before, after, server.pid);
  const clientCores = coresBetween(before, after, generator.pid);
  const selfCores = (self.user + self.system) / 1e6 / wall;
  const other = Math.max(0, (busyAfter - busyBefore) / wall - serverCores - clientCores - selfCores);
  return {
    report,
    cpu: { server: serverCores, client: clientCores, other, serverWaiting: waitingBetween(before, after, server.pid) },
    rssPeakMiB,
    metricsBefore,
    metricsAfter,
  };
}

/** Busy CPU seconds of the whole machine, from /proc/stat (everything but idle and iowait). */
export function machineBusySeconds(): number {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

async function scrape(server: ServerProcess): Promise<string | undefined> {
  if (server.metricsPort === undefined) return undefined;
  const response = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
  return response.text();
}
