/**
 * The soak: a realistic mixed load against a registry server in its own
 * process, for as long as asked, watching the server's memory, handles and
 * latency for growth.
 *
 *   npm run soak -- [--minutes 5] [--interval-seconds 10] [--workers 100] [--json FILE] [--keep]
 *
 * Three processes: the server (`worker-registry serve`, on a temporary
 * database, with short thresholds and TTLs so that cleanup, reservation
 * expiry and event-log pruning all run many times), a load generator (this
 * file with `--role load`), and this one, which probes latency and samples.
 *
 * The load: `--workers` WorkerNode runtimes, each on its own channel,
 * heartbeating every second on a stream and running tasks (UpdateTaskCount
 * +1, RecordTaskCompletion, -1); churn (a node stops and unregisters, a new
 * one registers, twice a second); crashes (a worker registers, heartbeats
 * for a few seconds and vanishes without unregistering, left to cleanup);
 * orchestrators acquiring and releasing slots (some never released, left to
 * expire; some released twice); two watchers reading every event and
 * resuming from their last revision every minute, and one watcher that
 * never reads (the server, with a watch buffer of 1000 events, drops it with
 * RESOURCE_EXHAUSTED; it comes back 20 s later); fleet reads
 * (DiscoverWorkers, GetWorkersForLoadBalancing, GetRegistryStats).
 *
 * Every `--interval-seconds` it prints the server's RSS (/proc/<pid>/status),
 * V8 heap used and open file descriptors (from its metrics endpoint:
 * `nodejs_heap_size_used_bytes`, `process_open_fds`), its open streams and
 * workers, the load's throughput, and p50/p99 of a probe call (GetWorker,
 * 40 per second, on a channel of its own).
 *
 * The verdict (exit code 0 only if every rule holds), with the samples split
 * into thirds, the first being warm-up:
 * - memory flat: the last third's mean RSS and heap are within +20% (plus a
 *   small absolute slack, 16 MiB RSS / 8 MiB heap, for small numbers) of the
 *   middle third's;
 * - no handle growth: the last third's mean open fds within +20% + 8 of the
 *   middle third's;
 * - p99 stable: the median of the last third's window p99s within 2x + 5 ms
 *   of the middle third's (the machine is shared; a leak or a queue that
 *   grows shows as a trend far beyond that);
 * - no call failed with a status the load does not expect (INTERNAL,
 *   UNKNOWN, ...), no watcher saw revisions out of order, the probe never
 *   failed, the server exited 0 on SIGTERM and the database's
 *   integrity_check is ok.
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { WorkerRegistryService } from "../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { grpcServiceDefinition } from "../clients/typescript/src/grpc-definition.js";
import { RegistryClientError } from "../clients/typescript/src/registry-client-error.js";
import { WorkerNode } from "../clients/typescript/src/worker-node.js";
import { WorkerRegistryClient } from "../clients/typescript/src/worker-registry-client.js";

const SELF = fileURLToPath(import.meta.url);
/** The repository root: dist/bench/soak.js is two levels below it. */
const ROOT = path.resolve(path.dirname(SELF), "..", "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const CAPABILITIES = ["coder", "tester", "reviewer", "gpu"] as const;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** A sleep that does not keep the process alive: for the losing side of a race. */
const timeout = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

// ---------------------------------------------------------------- load role

/** Status codes each kind of call may legitimately end with under this load, besides OK. */
const EXPECTED: Record<string, readonly string[]> = {
  // A task on a worker at capacity, or on one that churn just unregistered.
  runTask: ["FAILED_PRECONDITION", "NOT_FOUND"],
  // No worker with a free slot matches right now.
  acquireWorker: ["RESOURCE_EXHAUSTED"],
  // The worker was unregistered by churn while the slot was held.
  releaseWorker: ["NOT_FOUND"],
  // A stop() racing a reconnect; never seen in practice, harmless.
  stopNode: ["NOT_FOUND"],
  startNode: [],
  crashWorker: [],
  discoverWorkers: [],
  getWorkersForLoadBalancing: [],
  getRegistryStats: [],
  // The non-reading watcher must be dropped with RESOURCE_EXHAUSTED (counted apart); anything else is a failure.
  slowWatch: [],
  watch: ["CANCELLED"],
};

interface LoadStats {
  ok: Record<string, number>;
  errors: Record<string, number>;
  unexpected: string[];
  watchEvents: number;
  watchOrderViolations: number;
  slowWatcherDrops: number;
  slowWatcherKept: number;
  releasedTwice: number;
  leakedReservations: number;
  nodes: number;
}

type RawClient = grpc.Client & Record<string, (request: object, callback: (error: grpc.ServiceError | null, response: any) => void) => void>;

function rawClient(address: string, channelId: number): RawClient {
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(WorkerRegistryService), "WorkerRegistryService");
  return new Client(address, grpc.credentials.createInsecure(), { "grpc.channel_id": channelId }) as unknown as RawClient;
}

function call<T = any>(client: RawClient, method: string, request: object, deadlineMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = client[method]!;
    (fn as unknown as (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void).call(
      client,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}

async function runLoad(address: string, workerCount: number): Promise<void> {
  const stats: LoadStats = {
    ok: {},
    errors: {},
    unexpected: [],
    watchEvents: 0,
    watchOrderViolations: 0,
    slowWatcherDrops: 0,
    slowWatcherKept: 0,
    releasedTwice: 0,
    leakedReservations: 0,
    nodes: 0,
  };
  let channelIds = 10_000;
  let running = true;
  const ok = (kind: string) => (stats.ok[kind] = (stats.ok[kind] ?? 0) + 1);
  const failed = (kind: string, error: unknown) => {
    const code = error instanceof RegistryClientError ? error.codeName : (grpc.status[(error as grpc.StatusObject).code] ?? String(error));
    const key = `${kind}:${code}`;
    stats.errors[key] = (stats.errors[key] ?? 0) + 1;
    if (!(EXPECTED[kind] ?? []).includes(code) && stats.unexpected.length < 50) {
      stats.unexpected.push(`${key} ${(error as Error).message ?? (error as grpc.StatusObject).details}`);
    }
  };
  const track = async (kind: string, work: () => Promise<unknown>) => {
    try {
      await work();
      ok(kind);
    } catch (error) {
      failed(kind, error);
    }
  };

  // Worker nodes, each on its own connection like separate worker processes.
  const nodes = new Set<WorkerNode>();
  const startNode = async () => {
    const node = new WorkerNode({
      registration: { nodeId: `soak-${channelIds}`, capabilities: [pick(CAPABILITIES), pick(CAPABILITIES)].filter((c, i, a) => a.indexOf(c) === i), maxConcurrentTasks: 4 },
      heartbeatIntervalMs: 1000,
      reconnectBaseMs: 200,
      reconnectMaxMs: 2000,
      clientOptions: { address, channelOptions: { "grpc.channel_id": channelIds++ } },
    });
    await track("startNode", async () => {
      await node.start();
      nodes.add(node);
    });
  };
  const stopNode = async (node: WorkerNode) => {
    nodes.delete(node);
    await track("stopNode", () => node.stop());
  };
  for (let i = 0; i < workerCount; i++) {
    await startNode();
    if (i % 10 === 9) await sleep(50);
  }

  const loops: Promise<void>[] = [];
  const every = (periodMs: number, body: () => Promise<void>) =>
    loops.push(
      (async () => {
        while (running) {
          const started = performance.now();
          await body();
          await sleep(Math.max(0, periodMs - (performance.now() - started)));
        }
      })(),
    );

  // Churn: one node leaves gracefully and a new one joins, twice a second.
  every(500, async () => {
    const leaving = pick([...nodes]);
    if (leaving !== undefined) await stopNode(leaving);
    await startNode();
  });

  // Crashes: a worker that heartbeats for a while, then vanishes without a word; cleanup removes it after its TTL.
  const crashClient = () => new WorkerRegistryClient({ address, channelOptions: { "grpc.channel_id": channelIds++ } });
  every(5000, () =>
    track("crashWorker", async () => {
      const client = crashClient();
      const worker = await client.registerWorker({ nodeId: `soak-crash-${channelIds}`, capabilities: [pick(CAPABILITIES)], maxConcurrentTasks: 2 });
      const stream = await client.openHeartbeatStream(worker.id);
      stream.on("error", () => undefined);
      stream.on("data", () => undefined);
      let sequence = 0;
      const beat = setInterval(() => stream.write({ workerId: worker.id, sequence: ++sequence } as never), 500);
      setTimeout(() => {
        clearInterval(beat);
        stream.cancel();
        client.close();
      }, 3000);
    }),
  );

  // Tasks on random nodes: the WorkerNode's own bookkeeping (+1, completion, -1).
  for (let lane = 0; lane < 4; lane++) {
    every(50, async () => {
      const node = pick([...nodes]);
      if (node === undefined || node.state !== "running") return;
      await track("runTask", () => node.runTask(() => sleep(Math.random() * 100)));
    });
  }

  // Orchestrators: acquire a slot, work, release; 2% never released (left to expire), 2% released twice.
  const orchestrator = rawClient(address, channelIds++);
  for (let lane = 0; lane < 4; lane++) {
    every(40, async () => {
      let reservationId: string;
      try {
        const acquired = await call(orchestrator, "acquireWorker", { filter: { capabilities: [pick(CAPABILITIES)] } });
        reservationId = acquired.reservationId as string;
        ok("acquireWorker");
      } catch (error) {
        failed("acquireWorker", error);
        return;
      }
      const dice = Math.random();
      if (dice < 0.02) {
        stats.leakedReservations++;
        return;
      }
      const durationMs = Math.random() * 100;
      await sleep(durationMs);
      await track("releaseWorker", () => call(orchestrator, "releaseWorker", { reservationId, success: Math.random() < 0.9, durationMs }));
      if (dice > 0.98) {
        await track("releaseWorker", async () => {
          const again = await call(orchestrator, "releaseWorker", { reservationId, success: true, durationMs });
          if (again.outcome === 2) stats.releasedTwice++;
        });
      }
    });
  }

  // Fleet reads, as dashboards and schedulers do.
  const reader = new WorkerRegistryClient({ address, retry: false, channelOptions: { "grpc.channel_id": channelIds++ } });
  every(200, async () => {
    await track("discoverWorkers", () => reader.discoverWorkers());
    await track("getWorkersForLoadBalancing", () => reader.getWorkersForLoadBalancing({ capabilities: [pick(CAPABILITIES)] }, { limit: 10 }));
    await track("getRegistryStats", () => reader.getRegistryStats());
  });

  // Watchers that read every event and resume from their last revision every minute.
  const watchers = rawClient(address, channelIds++) as unknown as { watchWorkers(request: object): grpc.ClientReadableStream<any> } & grpc.Client;
  const openStreams = new Set<grpc.ClientReadableStream<any>>();
  for (const capabilities of [[], ["coder"]]) {
    loops.push(
      (async () => {
        let last = 0;
        while (running) {
          const stream = watchers.watchWorkers({ filter: { capabilities }, startRevision: last === 0 ? 0 : last + 1 });
          openStreams.add(stream);
          stream.on("data", (response: { event: { revision: bigint } }) => {
            const revision = Number(response.event.revision);
            if (revision <= last) stats.watchOrderViolations++;
            last = revision;
            stats.watchEvents++;
          });
          const ended = new Promise<void>((resolve) => stream.on("status", (s: grpc.StatusObject) => {
            if (s.code !== grpc.status.CANCELLED) failed("watch", s);
            resolve();
          }));
          stream.on("error", () => undefined);
          const resumeAt = performance.now() + 60_000;
          while (running && performance.now() < resumeAt) await Promise.race([sleep(500), ended]);
          stream.cancel();
          await ended;
          openStreams.delete(stream);
        }
      })(),
    );
  }

  // A watcher that never reads: the server must drop it (RESOURCE_EXHAUSTED) rather than buffer for it. grpc-js
  // hands the status over only after the messages before it, so after a while it reads, to learn how it ended.
  const slow = rawClient(address, channelIds++) as unknown as { watchWorkers(request: object): grpc.ClientReadableStream<any> } & grpc.Client;
  loops.push(
    (async () => {
      while (running) {
        const stream = slow.watchWorkers({ filter: {}, startRevision: 0 });
        openStreams.add(stream);
        stream.on("error", () => undefined);
        const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
        // One read(0) fills the stream's buffer and then stops taking messages off the connection.
        stream.read(0);
        const readAt = performance.now() + 20_000;
        while (running && performance.now() < readAt) await sleep(200);
        stream.on("data", () => undefined);
        const status = await Promise.race([ended, timeout(5000).then(() => undefined)]);
        if (status === undefined) stream.cancel();
        openStreams.delete(stream);
        // Not dropped: fewer events than its buffer came while it read nothing, so the server had no reason to.
        if (status === undefined) stats.slowWatcherKept++;
        else if (status.code === grpc.status.RESOURCE_EXHAUSTED) stats.slowWatcherDrops++;
        else if (status.code !== grpc.status.CANCELLED || running) failed("slowWatch", status);
      }
    })(),
  );

  const report = () => ({ ...stats, nodes: nodes.size });
  process.on("message", (message: { type: string }) => {
    if (message.type === "stats") process.send?.({ type: "stats", stats: report() });
    if (message.type === "stop") {
      running = false;
      void (async () => {
        for (const stream of openStreams) stream.cancel();
        await Promise.race([Promise.allSettled(loops), timeout(15_000)]);
        await Promise.race([Promise.allSettled([...nodes].map((node) => node.stop())), timeout(15_000)]);
        orchestrator.close();
        reader.close();
        watchers.close();
        slow.close();
        process.send?.({ type: "stopped", stats: report() }, () => process.exit(0));
      })();
    }
  });
  process.send?.({ type: "ready" });
}

// ---------------------------------------------------------------- driver role

interface Sample {
  readonly elapsedS: number;
  readonly rssMiB: number;
  readonly heapMiB: number;
  readonly openFds: number;
  readonly heartbeatStreams: number;
  readonly watchStreams: number;
  readonly workers: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly probes: number;
  readonly opsPerS: number;
  /** The machine's 1-minute load average: latency on a shared machine means little without it. */
  readonly loadAvg: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : Number.NaN;
}

/** The value of an unlabelled series, or the sum of a labelled one matching `labels`. */
function metric(text: string, name: string, labels = ""): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(" ") || rest.startsWith("{"))) continue;
    if (labels !== "" && !rest.includes(labels)) continue;
    sum += Number(rest.slice(rest.lastIndexOf(" ") + 1));
    found = true;
  }
  return found ? sum : Number.NaN;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const median = (values: readonly number[]) => percentile([...values].sort((a, b) => a - b), 50);

interface Rule {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The verdict on the samples: see the rules at the top of this file. */
export function judge(samples: readonly Sample[]): Rule[] {
  const third = Math.floor(samples.length / 3);
  if (third < 1) return [{ name: "enough samples", ok: false, detail: `${samples.length} samples; need at least 3` }];
  const middle = samples.slice(third, samples.length - third);
  const last = samples.slice(samples.length - third);
  const flat = (name: string, of: (s: Sample) => number, slack: number, unit: string): Rule => {
    const before = mean(middle.map(of));
    const after = mean(last.map(of));
    const limit = before * 1.2 + slack;
    return { name, ok: after <= limit, detail: `middle third ${before.toFixed(1)} ${unit}, last third ${after.toFixed(1)} ${unit} (limit ${limit.toFixed(1)})` };
  };
  const p99Before = median(middle.map((s) => s.p99Ms));
  const p99After = median(last.map((s) => s.p99Ms));
  const p99Limit = p99Before * 2 + 5;
  return [
    flat("RSS flat", (s) => s.rssMiB, 16, "MiB"),
    flat("heap flat", (s) => s.heapMiB, 8, "MiB"),
    flat("open fds flat", (s) => s.openFds, 8, "fds"),
    {
      name: "probe p99 stable",
      ok: p99After <= p99Limit,
      detail: `median window p99: middle third ${p99Before.toFixed(2)} ms, last third ${p99After.toFixed(2)} ms (limit ${p99Limit.toFixed(2)})`,
    },
  ];
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`metrics endpoint answered ${response.status}`);
  return response.text();
}

async function drive(options: { minutes: number; intervalS: number; workers: number; json: string | undefined; keep: boolean }): Promise<number> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-soak-"));
  const dbPath = path.join(dir, "registry.db");
  const [port, metricsPort] = [await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const serverArgs = [
    ...["--host", "127.0.0.1", "--port", String(port), "--metrics-port", String(metricsPort), "--db", dbPath, "--log-level", "warn"],
    // Short thresholds and TTLs, so that cleanup, expiry and pruning run throughout the soak.
    ...["--healthy-threshold", "10s", "--degraded-threshold", "20s", "--worker-ttl", "30s", "--cleanup-interval", "5s"],
    ...["--heartbeat-interval", "2s", "--reservation-ttl", "20s", "--event-ttl", "30s", "--watch-buffer", "1000"],
  ];
  const server = spawn(process.execPath, [CLI, "serve", ...serverArgs], { stdio: ["ignore", "pipe", "pipe"] });
  const serverExit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => server.once("exit", (code, signal) => resolve({ code, signal })));
  const logCounts = new Map<string, number>();
  let stderr = "";
  let pending = "";
  server.stdout!.on("data", (chunk: Buffer) => {
    pending += chunk.toString("utf8");
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      try {
        const entry = JSON.parse(line) as { level: number; msg: string };
        const key = `${entry.level >= 50 ? "error" : "warn"}: ${entry.msg}`;
        logCounts.set(key, (logCounts.get(key) ?? 0) + 1);
      } catch {
        logCounts.set(`unparsed: ${line.slice(0, 80)}`, (logCounts.get(`unparsed: ${line.slice(0, 80)}`) ?? 0) + 1);
      }
    }
  });
  server.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)));
  const killServer = () => server.exitCode === null && server.signalCode === null && server.kill("SIGKILL");
  process.once("exit", killServer);

  let load: ChildProcess | undefined;
  try {
    for (let waited = 0; ; waited += 100) {
      if (server.exitCode !== null) throw new Error(`the server exited before serving: ${stderr}`);
      try {
        await scrape(metricsPort);
        break;
      } catch {
        if (waited > 30_000) throw new Error(`the server did not serve within 30 s: ${stderr}`);
        await sleep(100);
      }
    }

    // The probe: its own worker, kept alive with unary heartbeats, read with GetWorker on its own channel.
    const probe = new WorkerRegistryClient({ address, retry: false, deadlineMs: 5000, channelOptions: { "grpc.channel_id": 1 } });
    const probeWorker = await probe.registerWorker({ nodeId: "soak-probe", capabilities: ["probe"], maxConcurrentTasks: 1 });
    let latencies: number[] = [];
    let probeFailures = 0;
    let probing = true;
    const probeLoop = (async () => {
      let beats = 0;
      while (probing) {
        const started = performance.now();
        try {
          if (++beats % 40 === 0) await probe.heartbeat(probeWorker.id);
          else {
            await probe.getWorker(probeWorker.id);
            latencies.push(performance.now() - started);
          }
        } catch (error) {
          probeFailures++;
          if (probeFailures <= 5) console.error(`probe failed: ${(error as Error).message}`);
        }
        await sleep(Math.max(0, 25 - (performance.now() - started)));
      }
    })();

    load = fork(SELF, ["--role", "load", "--address", address, "--workers", String(options.workers)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const loadChild = load;
    const loadMessages: Array<(message: any) => void> = [];
    loadChild.on("message", (message) => loadMessages.splice(0).forEach((resolve) => resolve(message)));
    const nextLoadMessage = (timeoutMs: number) =>
      Promise.race([
        new Promise<any>((resolve) => loadMessages.push(resolve)),
        timeout(timeoutMs).then(() => {
          throw new Error(`the load generator did not answer within ${timeoutMs} ms`);
        }),
      ]);
    const ready = await nextLoadMessage(120_000);
    if (ready.type !== "ready") throw new Error(`unexpected message from the load generator: ${JSON.stringify(ready)}`);
    const loadStats = async (): Promise<LoadStats> => {
      loadChild.send({ type: "stats" });
      return (await nextLoadMessage(10_000)).stats as LoadStats;
    };
    const totalOps = (stats: LoadStats) => Object.values(stats.ok).reduce((a, b) => a + b, 0) + Object.values(stats.errors).reduce((a, b) => a + b, 0);

    console.log(
      `soak: ${options.minutes} min against ${address} (pid ${server.pid}, metrics :${metricsPort}), ${options.workers} worker nodes, db ${dbPath}`,
    );
    console.log("  elapsed     RSS    heap  fds  hb-streams watch workers  ops/s   probe p50    p99   load");
    const samples: Sample[] = [];
    const startedAt = performance.now();
    const endAt = startedAt + options.minutes * 60_000;
    let previousOps = totalOps(await loadStats());
    let previousAt = performance.now();
    latencies = [];
    while (performance.now() < endAt) {
      await sleep(Math.min(options.intervalS * 1000, Math.max(0, endAt - performance.now())));
      const window = latencies.sort((a, b) => a - b);
      latencies = [];
      const text = await scrape(metricsPort);
      const stats = await loadStats();
      const now = performance.now();
      const ops = totalOps(stats);
      const sample: Sample = {
        elapsedS: (now - startedAt) / 1000,
        rssMiB: rssMiB(server.pid!),
        heapMiB: metric(text, "nodejs_heap_size_used_bytes") / 2 ** 20,
        openFds: metric(text, "process_open_fds"),
        heartbeatStreams: metric(text, "worker_registry_open_streams", 'kind="heartbeat"'),
        watchStreams: metric(text, "worker_registry_open_streams", 'kind="watch"'),
        workers: metric(text, "worker_registry_workers"),
        p50Ms: percentile(window, 50),
        p99Ms: percentile(window, 99),
        probes: window.length,
        opsPerS: (ops - previousOps) / ((now - previousAt) / 1000),
        loadAvg: os.loadavg()[0] ?? Number.NaN,
      };
      previousOps = ops;
      previousAt = now;
      samples.push(sample);
      console.log(
        `  ${sample.elapsedS.toFixed(0).padStart(6)} s ${sample.rssMiB.toFixed(1).padStart(6)} ${sample.heapMiB.toFixed(1).padStart(7)} ${String(sample.openFds).padStart(4)}` +
          ` ${String(sample.heartbeatStreams).padStart(10)} ${String(sample.watchStreams).padStart(5)} ${String(sample.workers).padStart(7)}` +
          ` ${sample.opsPerS.toFixed(0).padStart(6)} ${sample.p50Ms.toFixed(2).padStart(8)} ms ${sample.p99Ms.toFixed(2).padStart(6)} ms ${sample.loadAvg.toFixed(1).padStart(5)}`,
      );
    }

    probing = false;
    await probeLoop;
    loadChild.send({ type: "stop" });
    const final = (await nextLoadMessage(60_000)).stats as LoadStats;
    await new Promise<void>((resolve) => (loadChild.exitCode !== null ? resolve() : loadChild.once("exit", () => resolve())));
    await probe.unregisterWorker(probeWorker.id).catch(() => undefined);
    probe.close();
    server.kill("SIGTERM");
    const exit = await Promise.race([serverExit, timeout(30_000).then(() => ({ code: null, signal: "timeout" as NodeJS.Signals }))]);
    killServer();

    const db = new Database(dbPath, { readonly: true });
    const integrity = String(db.pragma("integrity_check", { simple: true }));
    db.close();

    const rules = [
      ...judge(samples),
      { name: "no unexpected call failures", ok: final.unexpected.length === 0, detail: final.unexpected.slice(0, 10).join("; ") || "none" },
      { name: "watch revisions in order", ok: final.watchOrderViolations === 0, detail: `${final.watchEvents} events, ${final.watchOrderViolations} out of order` },
      { name: "probe never failed", ok: probeFailures === 0, detail: `${probeFailures} failures` },
      { name: "server exited 0 on SIGTERM", ok: exit.code === 0, detail: `code ${exit.code}, signal ${exit.signal}` },
      { name: "integrity_check ok", ok: integrity === "ok", detail: integrity },
    ];
    const allLatencies = samples.map((s) => s.p99Ms);
    console.log("\nsummary");
    console.log(`  duration ${(samples.at(-1)?.elapsedS ?? 0).toFixed(0)} s, ${samples.length} samples, ${totalOps(final)} load calls (${Object.entries(final.ok).map(([k, v]) => `${k} ${v}`).join(", ")})`);
    console.log(`  expected refusals: ${Object.entries(final.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"}`);
    console.log(`  watch events ${final.watchEvents}, slow watcher dropped ${final.slowWatcherDrops} times (kept ${final.slowWatcherKept}), reservations leaked to expiry ${final.leakedReservations}, double releases answered ALREADY_RELEASED ${final.releasedTwice}`);
    console.log(`  RSS min/max ${Math.min(...samples.map((s) => s.rssMiB)).toFixed(1)}/${Math.max(...samples.map((s) => s.rssMiB)).toFixed(1)} MiB, heap min/max ${Math.min(...samples.map((s) => s.heapMiB)).toFixed(1)}/${Math.max(...samples.map((s) => s.heapMiB)).toFixed(1)} MiB, fds min/max ${Math.min(...samples.map((s) => s.openFds))}/${Math.max(...samples.map((s) => s.openFds))}`);
    console.log(`  probe window p99 min/median/max ${Math.min(...allLatencies).toFixed(2)}/${median(allLatencies).toFixed(2)}/${Math.max(...allLatencies).toFixed(2)} ms`);
    console.log(`  machine load average min/median/max ${Math.min(...samples.map((s) => s.loadAvg)).toFixed(1)}/${median(samples.map((s) => s.loadAvg)).toFixed(1)}/${Math.max(...samples.map((s) => s.loadAvg)).toFixed(1)} on ${os.cpus().length} cores`);
    console.log(`  server warnings: ${[...logCounts].map(([k, v]) => `${k} x${v}`).join("; ") || "none"}`);
    for (const rule of rules) console.log(`  ${rule.ok ? "PASS" : "FAIL"} ${rule.name}: ${rule.detail}`);
    const passed = rules.every((rule) => rule.ok);
    console.log(passed ? "soak passed" : "soak FAILED");
    if (options.json !== undefined) {
      fs.writeFileSync(options.json, JSON.stringify({ options, samples, final, rules, logCounts: Object.fromEntries(logCounts), passed }, null, 2));
    }
    return passed ? 0 : 1;
  } finally {
    if (load !== undefined && load.exitCode === null) load.kill("SIGKILL");
    killServer();
    if (!options.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- entry

const { values } = parseArgs({
  options: {
    role: { type: "string", default: "drive" },
    address: { type: "string" },
    minutes: { type: "string", default: "5" },
    "interval-seconds": { type: "string", default: "10" },
    workers: { type: "string", default: "100" },
    json: { type: "string" },
    keep: { type: "boolean", default: false },
  },
  strict: true,
});
const number = (name: string, text: string | undefined): number => {
  const value = Number(text);
  if (!(value > 0)) throw new Error(`--${name} must be a number > 0, got ${JSON.stringify(text)}`);
  return value;
};

if (values.role === "load") {
  if (values.address === undefined) throw new Error("--address is required with --role load");
  await runLoad(values.address, number("workers", values.workers));
} else {
  process.exitCode = await drive({
    minutes: number("minutes", values.minutes),
    intervalS: number("interval-seconds", values["interval-seconds"]),
    workers: Math.floor(number("workers", values.workers)),
    json: values.json,
    keep: values.keep,
  });
}
