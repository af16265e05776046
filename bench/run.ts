/**
 * The benchmark suite: starts the registry, the ceiling (a bare grpc-js echo
 * server) and etcd each in a process of its own, drives them from a separate
 * load-generator process, and prints a table where every figure stands next
 * to its ratio to the ceiling.
 *
 *   node dist/bench/run.js [--quick | --full] [--only closed,paced,selection,writes,coldstart]
 *                          [--no-etcd] [--write-docs] [--profile] [--keep] [--client h2|grpc-js] [--streams 100,1000]
 *   node dist/bench/run.js --report bench/results/latest-quick.json [--write-docs]   (re-render saved results)
 *
 * --quick (default) takes 2.5-3 minutes on a shared 2-core machine; --full about twenty.
 * --write-docs rewrites the generated part of docs/benchmarks.md and the chart
 *   docs/benchmarks-throughput.svg (always done by --full).
 * --profile runs every registry under `node --cpu-prof` and summarises each profile.
 * Results are also saved as bench/results/latest-<mode>.json.
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { LoadCommand, LoadReply, Target, UnaryOp } from "./loadgen-protocol.js";
import { MODES, STREAMS_PER_CONNECTION, type ModeConfig } from "./modes.js";
import { coresBetween, describeMachine, markCpu, rssMiB, sleep, waitingBetween } from "./proc.js";
import { formatBusyStretches, formatProfile, longestBusyStretches, summarizeProfile } from "./profile-summary.js";
import { fmt, fx, log, pct } from "./progress.js";
import { renderConsole, writeDocs } from "./report.js";
import type { CpuShare, InprocResult, PacedResult, Results, ServerSideLatency, StreamResult, UnaryResult } from "./results.js";
import { seedDatabase } from "./seed.js";
import type { ClientKind } from "./transport.js";
import { etcdVersion, findEtcd, killAll, ROOT, startEcho, startEtcd, startRegistry, type ServerProcess } from "./servers.js";

/** The load generator's gRPC client (transport.ts); --client grpc-js switches. */
let client: ClientKind = "h2";

// ---------- the load generator process ----------

class LoadGenerator {
  private waiting: ((reply: LoadReply) => void) | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (reply: LoadReply) => {
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(reply);
    });
  }

  static start(): LoadGenerator {
    const child = fork(path.join(ROOT, "dist/bench/loadgen.js"), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // e.g. BENCH_LOADGEN_ARGS="--cpu-prof --cpu-prof-dir=/tmp/lg" to profile the load generator itself.
      execArgv: (process.env.BENCH_LOADGEN_ARGS ?? "").split(" ").filter(Boolean),
    });
    return new LoadGenerator(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  async request<T extends LoadReply["type"]>(command: LoadCommand, expect: T): Promise<Extract<LoadReply, { type: T }>> {
    const reply = await new Promise<LoadReply>((resolve, reject) => {
      this.waiting = resolve;
      this.child.once("exit", (code) => reject(new Error(`load generator exited (${code})`)));
      this.child.send(command);
    });
    this.child.removeAllListeners("exit");
    if (reply.type === "error") throw new Error(`load generator: ${reply.message}`);
    if (reply.type !== expect) throw new Error(`load generator answered ${reply.type}, expected ${expect}`);
    return reply as Extract<LoadReply, { type: T }>;
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.send({ type: "exit" } satisfies LoadCommand);
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  }
}

// ---------- measurement windows ----------

/** Busy CPU seconds of the whole machine, from /proc/stat (everything but idle and iowait). */
function machineBusySeconds(): number {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

interface Window {
  readonly report: Extract<LoadReply, { type: "report" }>;
  readonly cpu: CpuShare;
  readonly rssPeakMiB: number;
  readonly metricsBefore: string | undefined;
  readonly metricsAfter: string | undefined;
}

async function scrape(server: ServerProcess): Promise<string | undefined> {
  if (server.metricsPort === undefined) return undefined;
  const response = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
  return response.text();
}

async function measureWindow(generator: LoadGenerator, server: ServerProcess, durationMs: number): Promise<Window> {
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

function serverSideLatency(before: string | undefined, after: string | undefined, method: string): ServerSideLatency | undefined {
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

// ---------- scenarios ----------

async function closedLoop(server: ServerProcess, target: Target, streams: number, mode: ModeConfig): Promise<StreamResult> {
  const generator = LoadGenerator.start();
  try {
    const opened = await generator.request(
      { type: "open-streams", client, target, count: streams, mode: "closed", intervalMs: 0, streamsPerConnection: STREAMS_PER_CONNECTION, openTimeoutMs: 30_000 },
      "opened",
    );
    // Opening thousands of streams leaves a backlog: give it time to drain (0.1 s per 1,000 streams more).
    await sleep(mode.warmupMs + streams / 10);
    const window = await measureWindow(generator, server, mode.measureMs);
    const stopped = await generator.request({ type: "stop", drainMs: 3000 }, "stopped");
    const result: StreamResult = {
      target: target.kind,
      streams,
      connections: opened.connections,
      served: opened.served,
      throughput: window.report.completed / window.report.seconds,
      latency: window.report.latency,
      cpu: window.cpu,
      errors: stopped.errors,
      firstError: stopped.firstError,
    };
    log(
      `${target.kind} closed loop ${streams} streams on ${opened.connections} connections: ${fmt(result.throughput)} acks/s, ` +
        `p50 ${fx(result.latency.p50Ms, 2)} ms, p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 2)} cores, ` +
        `client ${fx(result.cpu.client, 2)}, other ${fx(result.cpu.other, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}; served ${opened.served}/${streams}` +
        (result.firstError ? `; first error: ${result.firstError}` : ""),
    );
    return result;
  } finally {
    await generator.exit();
  }
}

async function pacedFleet(server: ServerProcess, target: Target, mode: ModeConfig): Promise<PacedResult> {
  const generator = LoadGenerator.start();
  try {
    const opened = await generator.request(
      {
        type: "open-streams",
        client,
        target,
        count: mode.pacedWorkers,
        mode: "paced",
        intervalMs: 1000,
        streamsPerConnection: STREAMS_PER_CONNECTION,
        openTimeoutMs: 10_000,
      },
      "opened",
    );
    // The opening burst (every worker connecting within a second) leaves a backlog of acks. Measure the
    // steady state: wait the warm-up, then until at most 1% of the fleet has a heartbeat unanswered (30 s at most).
    const openedAt = performance.now();
    await sleep(mode.pacedWarmupSeconds * 1000);
    let settled = false;
    for (const giveUp = performance.now() + 30_000; performance.now() < giveUp; await sleep(250)) {
      const status = await generator.request({ type: "report" }, "report");
      if (status.outstanding <= Math.max(100, mode.pacedWorkers / 100)) {
        settled = true;
        break;
      }
    }
    const settleSeconds = (performance.now() - openedAt) / 1000;
    const window = await measureWindow(generator, server, mode.pacedSeconds * 1000);
    const stopped = await generator.request({ type: "stop", drainMs: 3000 }, "stopped");
    const result: PacedResult = {
      target: target.kind,
      workers: mode.pacedWorkers,
      connections: opened.connections,
      seconds: window.report.seconds,
      opened: stopped.opened,
      served: stopped.served,
      sent: stopped.sent,
      acked: stopped.acked,
      missed: stopped.missed,
      errors: stopped.errors,
      latency: window.report.latency,
      cpu: window.cpu,
      rssPeakMiB: window.rssPeakMiB,
      firstError: stopped.firstError,
      settled,
      settleSeconds: settleSeconds + opened.seconds,
    };
    log(
      `${target.kind} paced fleet ${result.workers} × 1/s for ${result.seconds.toFixed(0)} s: ${fmt(window.report.completed / window.report.seconds)} acks/s, ` +
        `missed ${result.missed} of ${result.sent}, p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 3)} cores, ` +
        `client ${fx(result.cpu.client, 2)}, RSS ${result.rssPeakMiB.toFixed(0)} MiB, other ${fx(result.cpu.other, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}; ` +
        `served ${result.served}/${result.opened}; opening burst ${settled ? "drained" : "NOT drained"} after ${fx(result.settleSeconds, 1)} s`,
    );
    return result;
  } finally {
    await generator.exit();
  }
}

async function unaryLoad(
  server: ServerProcess,
  op: UnaryOp,
  workers: number,
  measureMs: number,
  mode: ModeConfig,
  load: { readonly concurrency: number; readonly connections: number },
): Promise<UnaryResult> {
  const generator = LoadGenerator.start();
  try {
    await generator.request(
      {
        type: "start-unary",
        client,
        target: { kind: server.kind, address: server.address },
        op,
        concurrency: load.concurrency,
        connections: load.connections,
        workerCount: workers,
      },
      "started",
    );
    await sleep(Math.min(mode.warmupMs, 1000));
    const window = await measureWindow(generator, server, measureMs);
    // Slow calls may still be queued at the server: let them finish, so they do not spill into the next window.
    const stopped = await generator.request({ type: "stop", drainMs: 15_000 }, "stopped");
    const methods = op === "AcquireRelease" ? ["AcquireWorker", "ReleaseWorker"] : [op];
    const serverSide = methods.map((m) => serverSideLatency(window.metricsBefore, window.metricsAfter, m)).filter((x) => x !== undefined);
    const result: UnaryResult = {
      target: server.kind,
      op,
      workers: server.kind === "registry" ? workers : undefined,
      throughput: window.report.completed / window.report.seconds,
      latency: window.report.latency,
      cpu: window.cpu,
      errors: stopped.errors,
      firstError: stopped.firstError,
      serverSide,
    };
    log(
      `${server.kind} ${op}${result.workers !== undefined ? ` (${fmt(workers)} workers)` : ""}: ${fmt(result.throughput)} calls/s, ` +
        `client p50 ${fx(result.latency.p50Ms, 2)} ms p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 2)} cores, client ${fx(result.cpu.client, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}` +
        serverSide.map((s) => `; ${s.method} server-side p99 ${fx(s.p99Ms, 3)} ms (${(s.shareWithin1ms * 100).toFixed(2)}% ≤ 1 ms)`).join("") +
        (result.errors > 0 ? `; ${result.errors} errors, first: ${result.firstError}` : ""),
    );
    return result;
  } finally {
    await generator.exit();
  }
}

// ---------- the run ----------

const PHASES = ["closed", "paced", "selection", "coldstart", "writes"] as const;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      full: { type: "boolean", default: false },
      only: { type: "string" },
      "no-etcd": { type: "boolean", default: false },
      "write-docs": { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      client: { type: "string", default: "h2" },
      streams: { type: "string" },
      report: { type: "string" },
    },
  });
  if (values.report) {
    // Re-render the tables (and, with --write-docs, the doc and chart) from saved results, without measuring.
    const saved = JSON.parse(fs.readFileSync(values.report, "utf8")) as Results;
    console.log(renderConsole(saved));
    if (values["write-docs"]) writeDocs(saved, ROOT);
    return;
  }
  const base = values.full ? MODES.full : MODES.quick;
  // --streams 100,1000 measures only those closed-loop points (for a quick look while developing).
  const mode: ModeConfig = values.streams ? { ...base, closedLoopStreams: values.streams.split(",").map(Number) } : base;
  if (values.client !== "h2" && values.client !== "grpc-js") throw new Error(`--client must be h2 or grpc-js, not ${values.client}`);
  client = values.client;
  const phases = values.only ? values.only.split(",").map((p) => p.trim()) : [...PHASES];
  for (const phase of phases) if (!(PHASES as readonly string[]).includes(phase)) throw new Error(`unknown phase ${phase}; phases: ${PHASES.join(", ")}`);
  const etcdBinary = values["no-etcd"] ? undefined : findEtcd();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-bench-"));
  const machine = describeMachine();
  const results: Results = {
    mode,
    startedAt: new Date().toISOString(),
    finishedAt: "",
    commit: gitDescribe(),
    machine,
    loadAverageAtEnd: undefined,
    etcd: etcdBinary ? { binary: etcdBinary, version: await etcdVersion(etcdBinary) } : undefined,
    phases,
    client,
    closedLoop: [],
    paced: [],
    selection: [],
    inproc: [],
    writes: [],
    coldStart: undefined,
    profiles: {},
  };
  log(`${mode.name} mode; ${machine.cores} cores, ${machine.cpuModel}; load average ${machine.loadAverage.join(" ")}; work dir ${workDir}`);
  log(
    etcdBinary
      ? `etcd ${results.etcd?.version ?? "?"} at ${etcdBinary}`
      : values["no-etcd"]
        ? "etcd: skipped (--no-etcd)"
        : "etcd: not found (apt-get install etcd-server); the etcd column stays empty",
  );

  const profileDir = (label: string): string | undefined => {
    if (!values.profile) return undefined;
    const dir = path.join(workDir, "profiles", label);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
  /** Stops a server; under --profile, summarises the profile it wrote (registry and echo; never etcd). */
  const stopRegistry = async (server: ServerProcess, label: string) => {
    await server.stop();
    const dir = path.join(workDir, "profiles", label);
    if (!values.profile || !fs.existsSync(dir)) return;
    const file = fs.readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) return;
    const summary = summarizeProfile(path.join(dir, file), 20);
    results.profiles[label] = summary;
    log(`profile ${label}: ${path.join(dir, file)}\n${formatProfile(summary)}\n\n${formatBusyStretches(longestBusyStretches(path.join(dir, file), 4))}`);
  };

  try {
    const streamDb = path.join(workDir, "streams.db");
    const streamWorkers = Math.max(...mode.closedLoopStreams, mode.pacedWorkers);
    if (phases.includes("closed") || phases.includes("paced")) {
      log(`seeding ${fmt(streamWorkers)} workers for the heartbeat streams (${seedDatabase(streamDb, streamWorkers).toFixed(2)} s)`);
    }

    if (phases.includes("closed")) {
      // Every target is up at once (an idle server costs nothing), and each stream count is measured on
      // all of them back to back, round after round: a neighbour's burst then hits the ratios less.
      const servers: ServerProcess[] = [
        await startRegistry({ dbPath: streamDb, workDir, cpuProfDir: profileDir("closed-loop"), label: "closed" }),
        await startEcho({ workDir, cpuProfDir: profileDir("echo-closed-loop") }),
      ];
      if (etcdBinary) servers.push(await startEtcd({ binary: etcdBinary, workDir }));
      const runs = new Map<string, StreamResult[]>();
      for (let round = 1; round <= mode.rounds; round++) {
        for (const streams of mode.closedLoopStreams) {
          for (const server of servers) {
            const result = await closedLoop(server, { kind: server.kind, address: server.address }, streams, mode);
            const key = `${server.kind}/${streams}`;
            runs.set(key, [...(runs.get(key) ?? []), result]);
          }
        }
      }
      // The median round of each point, whole (its latency and CPU belong to its throughput).
      for (const series of runs.values()) results.closedLoop.push([...series].sort((a, b) => a.throughput - b.throughput)[Math.floor((series.length - 1) / 2)]!);
      for (const server of servers) await stopRegistry(server, server.kind === "registry" ? "closed-loop" : `${server.kind}-closed-loop`);
    }

    if (phases.includes("paced")) {
      const targets: (() => Promise<ServerProcess>)[] = [
        () => startRegistry({ dbPath: streamDb, workDir, cpuProfDir: profileDir("paced"), label: "paced" }),
        () => startEcho({ workDir, cpuProfDir: profileDir("echo-paced") }),
      ];
      if (etcdBinary && mode.pacedEtcd) targets.push(() => startEtcd({ binary: etcdBinary, workDir }));
      for (const start of targets) {
        const server = await start();
        results.paced.push(await pacedFleet(server, { kind: server.kind, address: server.address }, mode));
        await stopRegistry(server, server.kind === "registry" ? "paced" : `${server.kind}-paced`);
      }
    }

    if (phases.includes("selection") || phases.includes("coldstart")) {
      const sizes = phases.includes("selection") ? [...mode.selectionSizes] : [];
      if (phases.includes("coldstart") && !sizes.includes(mode.coldStartWorkers)) sizes.push(mode.coldStartWorkers);
      for (const size of sizes) {
        const db = path.join(workDir, `selection-${size}.db`);
        const seedSeconds = seedDatabase(db, size);
        log(`seeded ${fmt(size)} workers in ${seedSeconds.toFixed(2)} s`);
        if (phases.includes("coldstart") && size === mode.coldStartWorkers) {
          const registryMs: number[] = [];
          const echoMs: number[] = [];
          for (let run = 0; run < mode.coldStartRuns; run++) {
            const label = `coldstart-${run}`;
            const registry = await startRegistry({ dbPath: db, workDir, logLevel: "info", label, cpuProfDir: profileDir(label) });
            registryMs.push(registry.startMs);
            await stopRegistry(registry, label);
            const echo = await startEcho({ workDir });
            echoMs.push(echo.startMs);
            await echo.stop();
          }
          results.coldStart = { workers: size, seedSeconds, registryMs, echoMs };
          log(`cold start with ${fmt(size)} workers: ${registryMs.map((ms) => `${ms.toFixed(0)} ms`).join(", ")} (bare grpc-js server: ${echoMs.map((ms) => `${ms.toFixed(0)} ms`).join(", ")})`);
        }
        if (phases.includes("selection") && mode.selectionSizes.includes(size)) {
          const label = `selection-${size}`;
          const server = await startRegistry({ dbPath: db, workDir, metrics: true, cpuProfDir: profileDir(label), label });
          for (const op of ["GetWorkersForLoadBalancing", "AcquireRelease"] as const) {
            results.selection.push(await unaryLoad(server, op, size, mode.selectionMeasureMs, mode, mode.selectionLoad));
          }
          await stopRegistry(server, label);
        }
        fs.rmSync(db, { force: true });
        fs.rmSync(`${db}-wal`, { force: true });
        fs.rmSync(`${db}-shm`, { force: true });
      }
      if (phases.includes("selection")) {
        const echo = await startEcho({ workDir });
        for (const op of ["GetWorkersForLoadBalancing", "AcquireRelease"] as const) {
          results.selection.push(await unaryLoad(echo, op, 0, mode.selectionMeasureMs, mode, mode.selectionLoad));
        }
        await echo.stop();
        results.inproc = await runInproc(mode, workDir);
      }
    }

    if (phases.includes("writes")) {
      const db = path.join(workDir, "writes.db");
      seedDatabase(db, 1000);
      // One load generator is one peer address; a fleet registers from many. Lift the per-peer
      // registration rate limit (and the worker cap) so the store, not the limiter, is measured.
      const registry = await startRegistry({
        dbPath: db,
        workDir,
        cpuProfDir: profileDir("writes"),
        label: "writes",
        flags: { "max-registrations-per-second": "1000000", "max-workers": "10000000" },
      });
      const echo = await startEcho({ workDir });
      for (const op of ["RegisterWorker", "UpdateTaskCount", "RecordTaskCompletion"] as const) {
        results.writes.push(await unaryLoad(registry, op, 1000, mode.writesMeasureMs, mode, mode.writesLoad));
        results.writes.push(await unaryLoad(echo, op, 1000, mode.writesMeasureMs, mode, mode.writesLoad));
      }
      await echo.stop();
      await stopRegistry(registry, "writes");
    }
  } finally {
    killAll();
    if (!values.keep && !values.profile) fs.rmSync(workDir, { recursive: true, force: true });
  }

  results.finishedAt = new Date().toISOString();
  results.loadAverageAtEnd = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number) as [number, number, number];
  const resultsDir = path.join(ROOT, "bench", "results");
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `latest-${mode.name}.json`), JSON.stringify(results, null, 2) + "\n");
  console.log("\n" + renderConsole(results));
  if (values["write-docs"] || mode.name === "full") writeDocs(results, ROOT);
  log(`results saved to bench/results/latest-${mode.name}.json`);
}

async function runInproc(mode: ModeConfig, workDir: string): Promise<InprocResult[]> {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "dist/bench/selection-inproc.js"), "--sizes", mode.selectionSizes.join(","), "--budget-ms", String(mode.inprocBudgetMs), "--dir", workDir],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`selection-inproc exited with ${code}`);
  const results = out
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as InprocResult);
  for (const r of results) {
    log(
      `in-process ${fmt(r.workers)} workers: GetWorkersForLoadBalancing p50 ${fx(r.rank.p50Ms, 3)} p99 ${fx(r.rank.p99Ms, 3)} ms; ` +
        `AcquireWorker p50 ${fx(r.acquire.p50Ms, 3)} p99 ${fx(r.acquire.p99Ms, 3)} ms`,
    );
  }
  return results;
}

function gitDescribe(): string {
  try {
    const head = fs.readFileSync(path.join(ROOT, ".git", "HEAD"), "utf8").trim();
    if (!head.startsWith("ref: ")) return head.slice(0, 12);
    const ref = head.slice(5);
    const file = path.join(ROOT, ".git", ref);
    if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim().slice(0, 12);
    const packed = fs.readFileSync(path.join(ROOT, ".git", "packed-refs"), "utf8");
    return packed.split("\n").find((line) => line.endsWith(` ${ref}`))?.slice(0, 12) ?? "unknown";
  } catch {
    return "unknown";
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

main().catch((error: unknown) => {
  killAll();
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
