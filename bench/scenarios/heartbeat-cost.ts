/**
 * Heartbeat cost (issue 16): the server CPU each acknowledged heartbeat
 * costs, on the registry and on the bare transport, measured side by side.
 *
 * Closed loop at 100 and 1,000 streams (each stream beats again once
 * acked), round after round, on:
 * - the registry on SQLite;
 * - the bare transport, `echo-server --bare`: grpc-js with no protobuf at
 *   all, answering each heartbeat with its own bytes and a constant tail,
 *   an ack of the same size as the registry's;
 * - the suite's protobuf echo (the same messages, encoded by protobuf-es);
 * - the registry on PostgreSQL (one process, a throwaway cluster), when
 *   PostgreSQL is installed, its CPU counted with every PostgreSQL process's.
 * Within a round every target of a stream count runs back to back, in an
 * order that rotates from round to round, so a neighbour's burst hits one
 * round's ratios rather than one target. Then a paced fleet (one beat per
 * second per stream) on both stores: the rate a fleet really beats at, where
 * the store's batched writes weigh the most per heartbeat.
 */
import path from "node:path";
import type { LoadGenerators } from "../load-generator.js";
import { measureWindow } from "../measure-window.js";
import { STREAMS_PER_CONNECTION } from "../modes.js";
import type { CostSample, CostTarget, HeartbeatCostResult } from "../perf-results.js";
import { PostgresBenchStore } from "../postgres-bench-store.js";
import { cpuSeconds, sleep } from "../proc.js";
import { fmt, fx, log, pct } from "../progress.js";
import { seedDatabase } from "../seed.js";
import type { ServerProcess } from "../servers.js";
import type { ScenarioContext } from "./scenario-context.js";

/** Rounds, window and warm-up per mode; the issue asks for the median of 5 rounds. */
const SHAPE = {
  quick: { rounds: 3, windowMs: 2000, warmupMs: 700, streams: [100, 1000], pacedStreams: 5000, pacedSeconds: 6 },
  full: { rounds: 5, windowMs: 6000, warmupMs: 2000, streams: [100, 1000], pacedStreams: 10_000, pacedSeconds: 20 },
} as const;

interface Running {
  readonly target: CostTarget;
  readonly server: ServerProcess;
  readonly database?: PostgresBenchStore;
}

/**
 * Every target up at once (an idle server costs nothing): the registry on a
 * SQLite database seeded with a worker for every stream and, when installed,
 * on a fresh PostgreSQL seeded alike.
 */
export async function measureHeartbeatCost(context: ScenarioContext): Promise<HeartbeatCostResult> {
  const { mode, servers, workDir } = context;
  const shape = SHAPE[mode.name];
  const workers = Math.max(...shape.streams, shape.pacedStreams);
  const dbPath = path.join(workDir, "cost.db");
  log(`heartbeat cost: seeded ${fmt(workers)} workers in SQLite in ${seedDatabase(dbPath, workers).toFixed(2)} s`);
  const running: Running[] = [
    { target: "registry", server: await servers.registry({ dbPath, label: "cost", profile: "cost-registry" }) },
    { target: "echo-bare", server: await servers.echo({ bare: true, profile: "cost-echo-bare" }) },
    { target: "echo", server: await servers.echo({ profile: "cost-echo" }) },
  ];
  let postgresSkipped: string | undefined;
  let database: PostgresBenchStore | undefined;
  if (PostgresBenchStore.available()) {
    database = await PostgresBenchStore.start(workers);
    running.push({ target: "registry-postgres", server: await servers.registry({ dbPath: database.url, label: "cost-postgres", profile: "cost-registry-postgres" }), database });
  } else {
    postgresSkipped = "PostgreSQL's server binaries were not found (apt-get install postgresql)";
    log(`heartbeat cost: PostgreSQL skipped, ${postgresSkipped}`);
  }
  const samples: CostSample[] = [];
  try {
    for (let round = 1; round <= shape.rounds; round++) {
      for (const streams of shape.streams) {
        for (let i = 0; i < running.length; i++) {
          const entry = running[(i + round - 1) % running.length]!;
          samples.push(await costWindow(context.loadGenerators, entry, { load: "closed", streams, round, windowMs: shape.windowMs, warmupMs: shape.warmupMs }));
        }
      }
    }
    // The paced fleet: the two stores only (the echo's cost per ack is the closed loop's).
    for (const entry of running.filter((r) => r.target.startsWith("registry"))) {
      samples.push(await costWindow(context.loadGenerators, entry, { load: "paced", streams: shape.pacedStreams, round: 1, windowMs: shape.pacedSeconds * 1000, warmupMs: shape.warmupMs }));
    }
  } finally {
    for (const { server } of running) await servers.stop(server);
    database?.destroy();
  }
  return { rounds: shape.rounds, windowMs: shape.windowMs, samples, postgresSkipped };
}

async function costWindow(
  loadGenerators: LoadGenerators,
  { target, server, database }: Running,
  run: { readonly load: "closed" | "paced"; readonly streams: number; readonly round: number; readonly windowMs: number; readonly warmupMs: number },
): Promise<CostSample> {
  return loadGenerators.use(async (generator) => {
    const opened = await generator.request(
      {
        type: "open-streams",
        client: generator.client,
        target: { kind: target.startsWith("registry") ? "registry" : "echo", address: server.address },
        count: run.streams,
        mode: run.load,
        intervalMs: run.load === "paced" ? 1000 : 0,
        streamsPerConnection: STREAMS_PER_CONNECTION,
        openTimeoutMs: 30_000,
      },
      "opened",
    );
    await settle(generator, run);
    const databaseBefore = database === undefined ? undefined : cpuOf(database.pids());
    const window = await measureWindow(generator, server, run.windowMs);
    const databaseCores = database === undefined || databaseBefore === undefined ? 0 : cpuGrowth(databaseBefore, cpuOf(database.pids())) / window.report.seconds;
    const stopped = await generator.request({ type: "stop", drainMs: 3000 }, "stopped");
    const acksPerSecond = window.report.completed / window.report.seconds;
    const sample: CostSample = {
      target,
      load: run.load,
      streams: run.streams,
      round: run.round,
      acksPerSecond,
      serverCores: window.cpu.server,
      databaseCores,
      cpuUsPerAck: ((window.cpu.server + databaseCores) / acksPerSecond) * 1e6,
      latency: window.report.latency,
      loadGeneratorCores: window.cpu.client,
      otherCores: Math.max(0, window.cpu.other - databaseCores),
      serverWaiting: window.cpu.serverWaiting,
      served: opened.served,
      errors: stopped.errors,
      missed: stopped.missed,
      firstError: stopped.firstError,
    };
    log(
      `cost ${target} ${run.load} ${run.streams} streams, round ${run.round}: ${fmt(acksPerSecond)} acks/s, ${fx(sample.cpuUsPerAck, 1)} µs CPU per ack ` +
        `(server ${fx(sample.serverCores, 2)}${database ? ` + PostgreSQL ${fx(databaseCores, 2)}` : ""} cores), p99 ${fx(sample.latency.p99Ms, 2)} ms, ` +
        `load generator ${fx(sample.loadGeneratorCores, 2)}, other ${fx(sample.otherCores, 2)}, server waited for a CPU ${pct(sample.serverWaiting)}; served ${opened.served}/${run.streams}` +
        (sample.firstError ? `; first error: ${sample.firstError}` : ""),
    );
    return sample;
  });
}

/** Closed loop: the warm-up (0.1 s more per 1,000 streams). Paced: the warm-up, then until ≤ 1% of the fleet waits for an ack (30 s at most). */
async function settle(generator: Parameters<Parameters<LoadGenerators["use"]>[0]>[0], run: { readonly load: string; readonly streams: number; readonly warmupMs: number }): Promise<void> {
  await sleep(run.warmupMs + run.streams / 10);
  if (run.load !== "paced") return;
  await sleep(2000);
  for (const giveUp = performance.now() + 30_000; performance.now() < giveUp; await sleep(250)) {
    const status = await generator.request({ type: "report" }, "report");
    if (status.outstanding <= Math.max(100, run.streams / 100)) return;
  }
}

/** CPU seconds of each process that is still there. */
function cpuOf(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      out.set(pid, cpuSeconds(pid));
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

/** CPU seconds used between two readings; a process started meanwhile counts from 0 (one that ended is lost: PostgreSQL's pool keeps its sessions). */
function cpuGrowth(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}
