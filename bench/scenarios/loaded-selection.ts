/**
 * Selection under load (issue 16): AcquireWorker (with its ReleaseWorker)
 * and GetWorkersForLoadBalancing as orchestrators call them while a fleet
 * heartbeats, at 10,000 and 100,000 workers. For each fleet size, a freshly
 * seeded registry (with metrics) gets 10,000 paced heartbeat streams (one
 * beat a second each, from a load generator of their own), then 8
 * orchestrators (8 connections, one call in flight each, from a second load
 * generator) doing one of the two calls for a window, then the other. The
 * figures are the registry's own histogram (handler start to answer sent),
 * whose 2 ms bucket bound makes "p99 ≤ 2 ms" exact: the share of calls
 * within it.
 */
import path from "node:path";
import type { LoadGenerator } from "../load-generator.js";
import type { UnaryOp } from "../loadgen-protocol.js";
import { measureWindow } from "../measure-window.js";
import type { LoadedSelectionRun } from "../perf-results.js";
import { sleep } from "../proc.js";
import { fmt, fx, log, pct } from "../progress.js";
import { removeDatabase, seedDatabase } from "../seed.js";
import { serverSideLatency, shareWithin } from "../server-side-latency.js";
import type { ServerProcess } from "../servers.js";
import { openPacedFleet } from "./paced-fleet.js";
import type { ScenarioContext } from "./scenario-context.js";

const SHAPE = {
  quick: { sizes: [10_000, 100_000], streams: 10_000, orchestrators: 8, warmupSeconds: 3, windowMs: 5000 },
  full: { sizes: [10_000, 100_000], streams: 10_000, orchestrators: 8, warmupSeconds: 10, windowMs: 20_000 },
} as const;

const OPS: readonly UnaryOp[] = ["AcquireRelease", "GetWorkersForLoadBalancing"];

export async function measureLoadedSelection(context: ScenarioContext): Promise<LoadedSelectionRun[]> {
  const { mode, workDir, servers, loadGenerators } = context;
  const shape = SHAPE[mode.name];
  const runs: LoadedSelectionRun[] = [];
  for (const workers of shape.sizes) {
    const dbPath = path.join(workDir, `loaded-selection-${workers}.db`);
    log(`selection under load: seeded ${fmt(workers)} workers in ${seedDatabase(dbPath, workers).toFixed(2)} s`);
    const label = `loaded-selection-${workers}`;
    const server = await servers.registry({ dbPath, label, profile: label, metrics: true });
    try {
      await loadGenerators.use(async (fleet) => {
        await openPacedFleet(fleet, { kind: "registry", address: server.address }, shape.streams, shape.warmupSeconds);
        for (const op of OPS) runs.push(await loadedWindow(context, fleet, server, op, workers, shape));
        await fleet.request({ type: "stop", drainMs: 3000 }, "stopped");
      });
    } finally {
      await servers.stop(server);
      removeDatabase(dbPath);
    }
  }
  return runs;
}

async function loadedWindow(
  context: ScenarioContext,
  fleet: LoadGenerator,
  server: ServerProcess,
  op: UnaryOp,
  workers: number,
  shape: (typeof SHAPE)[keyof typeof SHAPE],
): Promise<LoadedSelectionRun> {
  return context.loadGenerators.use(async (orchestrators) => {
    await orchestrators.request(
      {
        type: "start-unary",
        client: orchestrators.client,
        target: { kind: "registry", address: server.address },
        op,
        concurrency: shape.orchestrators,
        connections: shape.orchestrators,
        workerCount: workers,
      },
      "started",
    );
    await sleep(1000);
    await fleet.request({ type: "reset" }, "reset");
    const window = await measureWindow(orchestrators, server, shape.windowMs);
    const beats = await fleet.request({ type: "report" }, "report");
    const stopped = await orchestrators.request({ type: "stop", drainMs: 15_000 }, "stopped");
    const methods = op === "AcquireRelease" ? ["AcquireWorker", "ReleaseWorker"] : [op];
    const serverSide = methods.flatMap((method) => {
      const latency = serverSideLatency(window.metricsBefore, window.metricsAfter, method);
      return latency === undefined ? [] : [{ ...latency, shareWithin2ms: shareWithin(window.metricsBefore, window.metricsAfter, method, 0.002) }];
    });
    const run: LoadedSelectionRun = {
      workers,
      op,
      streams: shape.streams,
      orchestrators: shape.orchestrators,
      seconds: window.report.seconds,
      serverSide,
      callsPerSecond: window.report.completed / window.report.seconds,
      latency: window.report.latency,
      errors: stopped.errors,
      firstError: stopped.firstError,
      heartbeats: { acksPerSecond: beats.completed / beats.seconds, latency: beats.latency, errors: beats.errors },
      serverCores: window.cpu.server,
      otherCores: window.cpu.other,
      serverWaiting: window.cpu.serverWaiting,
    };
    log(
      `selection under load, ${fmt(workers)} workers, ${fmt(shape.streams)} paced streams, ${shape.orchestrators} orchestrators, ${op}: ${fmt(run.callsPerSecond)} calls/s` +
        serverSide.map((s) => `; ${s.method} server-side p50 ${fx(s.p50Ms, 3)} p99 ${fx(s.p99Ms, 3)} ms, ${pct(s.shareWithin2ms)} ≤ 2 ms`).join("") +
        `; heartbeats ${fmt(run.heartbeats.acksPerSecond)}/s p99 ${fx(run.heartbeats.latency.p99Ms, 2)} ms; server ${fx(run.serverCores, 2)} cores, other ${fx(run.otherCores, 2)}, ` +
        `server waited for a CPU ${pct(run.serverWaiting)}` +
        (run.errors > 0 ? `; ${run.errors} errors, first: ${run.firstError}` : ""),
    );
    return run;
  });
}
