/**
 * Watch fan-out (issue 16): many watchers, each receiving every event of a
 * steady stream of writes, and one watcher that never reads. A registry
 * seeded with the writer's workers gets the watchers (100 per connection,
 * from one load process: bench/watch-load.ts), then a writer doing
 * UpdateTaskCount at a fixed rate (each call one event, every watcher
 * subscribed to all of them) from another. Measured over the window: events
 * delivered against those due, the delay from each event's commit time to
 * its arrival (sampled on one watcher in ten), whether any fast watcher was
 * cut off, whether and when the slow one was (by the registry's count of
 * watchers it dropped: a client that reads nothing cannot see its own end),
 * and the server's CPU and RSS
 * (memory must stay bounded while the slow watcher's backlog grows). The
 * watchers ask for EVENTS_PER_MESSAGE events per message, and each run
 * records it.
 */
import { fork, type ChildProcess } from "node:child_process";
import { DEFAULT_WATCH_EVENTS_PER_MESSAGE } from "@sentinel/worker-registry-client";
import path from "node:path";
import { coresBetween, markCpu, rssMiB, sleep } from "../proc.js";
import { fmt, fx, log } from "../progress.js";
import type { WatchFanoutRun } from "../perf-results.js";
import { removeDatabase, seedDatabase } from "../seed.js";
import { ROOT, type ServerProcess } from "../servers.js";
import type { WatchLoadCommand, WatchLoadReply } from "../watch-load.js";
import type { ScenarioContext } from "./scenario-context.js";

const SHAPE = {
  quick: { shapes: [{ watchers: 100, perSecond: 1000 }, { watchers: 1000, perSecond: 1000 }], warmupMs: 2000, windowMs: 5000 },
  full: { shapes: [{ watchers: 100, perSecond: 1000 }, { watchers: 1000, perSecond: 1000 }], warmupMs: 3000, windowMs: 20_000 },
} as const;
/**
 * The registry's per-watcher queue (--watch-buffer; default 10,000): two
 * seconds of this writer, so that the slow watcher fills it within a quick
 * window and its cut-off is seen, and a fast one never comes near it.
 */
const WATCH_BUFFER_EVENTS = 2000;
/**
 * max_events_per_message of every watcher: the client's default, as the
 * watchers of a real deployment would ask. 1 measures one event per message.
 */
const EVENTS_PER_MESSAGE = DEFAULT_WATCH_EVENTS_PER_MESSAGE;
/** Workers the writer spreads its calls over. */
const WRITER_WORKERS = 100;

/** One watch-load process (bench/watch-load.ts). */
class WatchLoad {
  private waiting: ((reply: WatchLoadReply) => void) | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (reply: WatchLoadReply) => {
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(reply);
    });
  }

  static start(): WatchLoad {
    return new WatchLoad(fork(path.join(ROOT, "dist/bench/watch-load.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async request<T extends WatchLoadReply["type"]>(command: WatchLoadCommand, expect: T): Promise<Extract<WatchLoadReply, { type: T }>> {
    const reply = await new Promise<WatchLoadReply>((resolve, reject) => {
      this.waiting = resolve;
      this.child.once("exit", (code) => reject(new Error(`watch load exited (${code})`)));
      this.child.send(command);
    });
    this.child.removeAllListeners("exit");
    if (reply.type === "error") throw new Error(`watch load: ${reply.message}`);
    if (reply.type !== expect) throw new Error(`watch load answered ${reply.type}, expected ${expect}`);
    return reply as Extract<WatchLoadReply, { type: T }>;
  }

  exit(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

export async function measureWatchFanout(context: ScenarioContext): Promise<WatchFanoutRun[]> {
  const { mode, workDir, servers } = context;
  const shape = SHAPE[mode.name];
  const runs: WatchFanoutRun[] = [];
  for (const { watchers, perSecond } of shape.shapes) {
    const dbPath = path.join(workDir, `watch-${watchers}.db`);
    seedDatabase(dbPath, WRITER_WORKERS);
    const label = `watch-${watchers}`;
    const server = await servers.registry({ dbPath, label, profile: label, metrics: true, flags: { "max-watchers": String(watchers + 1), "watch-buffer": String(WATCH_BUFFER_EVENTS) } });
    const watchLoad = WatchLoad.start();
    const writer = WatchLoad.start();
    try {
      runs.push(await fanoutWindow(server, watchLoad, writer, watchers, perSecond, shape));
    } finally {
      watchLoad.exit();
      writer.exit();
      await servers.stop(server);
      removeDatabase(dbPath);
    }
  }
  return runs;
}

async function fanoutWindow(
  server: ServerProcess,
  watchLoad: WatchLoad,
  writer: WatchLoad,
  watchers: number,
  perSecond: number,
  shape: (typeof SHAPE)[keyof typeof SHAPE],
): Promise<WatchFanoutRun> {
  const rssStartMiB = rssMiB(server.pid);
  const { eventsPerMessage } = await watchLoad.request(
    { type: "watch", address: server.address, watchers, perConnection: 100, eventsPerMessage: EVENTS_PER_MESSAGE },
    "watching",
  );
  await writer.request({ type: "write", address: server.address, perSecond, workers: WRITER_WORKERS }, "writing");
  const writing = performance.now();
  // The slow watcher cannot see its own end: it reads nothing, and the registry's status waits behind the bytes
  // it did not read. The registry's count of watchers it dropped says when it was cut off (to the 250 ms poll).
  let droppedAfterMs: number | undefined;
  let rssPeakMiB = rssMiB(server.pid);
  const watchServer = async (ms: number) => {
    for (const end = performance.now() + ms; performance.now() < end; ) {
      await sleep(Math.min(250, end - performance.now()));
      rssPeakMiB = Math.max(rssPeakMiB, rssMiB(server.pid));
      if (droppedAfterMs === undefined && (await watchersDropped(server)) > 0) droppedAfterMs = performance.now() - writing;
    }
  };
  await watchServer(shape.warmupMs);
  await watchLoad.request({ type: "reset" }, "reset");
  await writer.request({ type: "reset" }, "reset");
  const pids = [server.pid, watchLoad.pid, writer.pid];
  const before = markCpu(pids);
  await watchServer(shape.windowMs);
  const dropped = await watchersDropped(server);
  const watched = await watchLoad.request({ type: "report" }, "report");
  const written = await writer.request({ type: "report" }, "report");
  const after = markCpu(pids);
  const committedPerSecond = written.written / written.seconds;
  const run: WatchFanoutRun = {
    watchers,
    eventsPerMessage,
    eventsPerSecond: perSecond,
    committedPerSecond,
    seconds: watched.seconds,
    deliveredPerSecond: watched.delivered / watched.seconds,
    dueShare: watched.delivered / Math.max(1, written.written * watchers),
    delivery: watched.delivery,
    fastCutOff: watched.fastEnded,
    fastEndReason: watched.fastEndReason,
    // Dropped by the registry with every fast watcher still open: the slow one. Its own end, if it saw one, first.
    slowCutOff: watched.slowEndedAfterMs !== undefined || (dropped > watched.fastEnded && droppedAfterMs !== undefined),
    slowCutOffAfterMs: watched.slowEndedAfterMs ?? droppedAfterMs,
    slowEndReason: watched.slowEndReason ?? (dropped > watched.fastEnded ? `the registry's watchers_dropped_total: ${dropped}, ${watched.fastEnded} fast watchers ended` : undefined),
    serverCores: coresBetween(before, after, server.pid),
    loadGeneratorCores: coresBetween(before, after, watchLoad.pid) + coresBetween(before, after, writer.pid),
    rssStartMiB,
    rssPeakMiB,
    rssEndMiB: rssMiB(server.pid),
    writeErrors: written.writeErrors,
    firstError: written.firstError ?? watched.firstError,
  };
  log(
    `watch fan-out, ${fmt(watchers)} watchers × ${fmt(perSecond)} events/s, up to ${fmt(eventsPerMessage)} per message: ${fmt(run.committedPerSecond)} events/s committed, ` +
      `${fmt(run.deliveredPerSecond)} deliveries/s (${fx(run.dueShare * 100, 1)}% of those due), delivery p50 ${fx(run.delivery.p50Ms, 2)} p99 ${fx(run.delivery.p99Ms, 2)} max ${fx(run.delivery.maxMs, 1)} ms; ` +
      `fast watchers cut off: ${run.fastCutOff}${run.fastEndReason ? ` (${run.fastEndReason})` : ""}; slow watcher: ${run.slowCutOff ? `cut off after ${fx((run.slowCutOffAfterMs ?? 0) / 1000, 1)} s (${run.slowEndReason})` : "still open"}; ` +
      `server ${fx(run.serverCores, 2)} cores, load ${fx(run.loadGeneratorCores, 2)}; RSS ${fx(rssStartMiB, 0)} → peak ${fx(rssPeakMiB, 0)} → ${fx(run.rssEndMiB, 0)} MiB` +
      (run.firstError ? `; first error: ${run.firstError}` : ""),
  );
  return run;
}

/** worker_registry_watchers_dropped_total from the registry's /metrics. */
async function watchersDropped(server: ServerProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  return Number(/^worker_registry_watchers_dropped_total (\S+)$/m.exec(text)?.[1] ?? 0);
}
