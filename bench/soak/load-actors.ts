/**
 * The actors of the soak's load, each a loop that runs until the load
 * stops: worker nodes and their churn, crashing workers, tasks,
 * orchestrators, fleet reads, watchers, and a watcher that never reads.
 */
import * as grpc from "@grpc/grpc-js";
import { WorkerNode } from "@sentinel/worker-registry-client";
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { sleep, timeout } from "../proc.js";
import type { LoadTally } from "./load-tally.js";
import { call, rawClient, type WatchClient } from "./raw-client.js";

const CAPABILITIES = ["coder", "tester", "reviewer", "gpu"] as const;

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** What the actors share: the server, the tally, the live nodes and streams, and the loops to wait for on stop. */
export interface LoadRun {
  readonly address: string;
  readonly tally: LoadTally;
  readonly nodes: Set<WorkerNode>;
  readonly openStreams: Set<grpc.ClientReadableStream<any>>;
  readonly loops: Promise<void>[];
  /** Clients the actors opened, closed once the loops have ended. */
  readonly clients: { close(): void }[];
  running(): boolean;
  /** A fresh `grpc.channel_id`: each actor's client is a connection of its own, like a separate process. */
  nextChannelId(): number;
}

/** Runs `body` every `periodMs` (less the time it took) until the load stops. */
function every(run: LoadRun, periodMs: number, body: () => Promise<void>): void {
  run.loops.push(
    (async () => {
      while (run.running()) {
        const started = performance.now();
        await body();
        await sleep(Math.max(0, periodMs - (performance.now() - started)));
      }
    })(),
  );
}

/** A WorkerNode on a connection of its own, like a separate worker process: registers, heartbeats every second. */
export async function startNode(run: LoadRun): Promise<void> {
  const channelId = run.nextChannelId();
  const node = new WorkerNode({
    registration: { nodeId: `soak-${channelId}`, capabilities: [pick(CAPABILITIES), pick(CAPABILITIES)].filter((c, i, a) => a.indexOf(c) === i), maxConcurrentTasks: 4 },
    heartbeatIntervalMs: 1000,
    reconnectBaseMs: 200,
    reconnectMaxMs: 2000,
    clientOptions: { address: run.address, channelOptions: { "grpc.channel_id": channelId } },
  });
  await run.tally.track("startNode", async () => {
    await node.start();
    run.nodes.add(node);
  });
}

/** Churn: one node leaves gracefully and a new one joins, twice a second. */
export function churn(run: LoadRun): void {
  every(run, 500, async () => {
    const leaving = pick([...run.nodes]);
    if (leaving !== undefined) {
      run.nodes.delete(leaving);
      await run.tally.track("stopNode", () => leaving.stop());
    }
    await startNode(run);
  });
}

/** Crashes: a worker that heartbeats for a while, then vanishes without a word; cleanup removes it after its TTL. */
export function crashWorkers(run: LoadRun): void {
  every(run, 5000, () =>
    run.tally.track("crashWorker", async () => {
      const channelId = run.nextChannelId();
      const client = new WorkerRegistryClient({ address: run.address, channelOptions: { "grpc.channel_id": channelId } });
      const worker = await client.registerWorker({ nodeId: `soak-crash-${channelId}`, capabilities: [pick(CAPABILITIES)], maxConcurrentTasks: 2 });
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
}

/** Tasks on random nodes, four lanes: the WorkerNode's own bookkeeping (+1, completion, -1). */
export function runTasks(run: LoadRun): void {
  for (let lane = 0; lane < 4; lane++) {
    every(run, 50, async () => {
      const node = pick([...run.nodes]);
      if (node === undefined || node.state !== "running") return;
      await run.tally.track("runTask", () => node.runTask(() => sleep(Math.random() * 100)));
    });
  }
}

/** Orchestrators, four lanes: acquire a slot, work, release; 2% never released (left to expire), 2% released twice. */
export function orchestrate(run: LoadRun): void {
  const { tally } = run;
  const orchestrator = rawClient(run.address, run.nextChannelId());
  run.clients.push(orchestrator);
  for (let lane = 0; lane < 4; lane++) {
    every(run, 40, async () => {
      let reservationId: string;
      try {
        const acquired = await call(orchestrator, "acquireWorker", { filter: { capabilities: [pick(CAPABILITIES)] } });
        reservationId = acquired.reservationId as string;
        tally.ok("acquireWorker");
      } catch (error) {
        tally.failed("acquireWorker", error);
        return;
      }
      const dice = Math.random();
      if (dice < 0.02) {
        tally.stats.leakedReservations++;
        return;
      }
      const durationMs = Math.random() * 100;
      await sleep(durationMs);
      await tally.track("releaseWorker", () => call(orchestrator, "releaseWorker", { reservationId, success: Math.random() < 0.9, durationMs }));
      if (dice > 0.98) {
        await tally.track("releaseWorker", async () => {
          const again = await call(orchestrator, "releaseWorker", { reservationId, success: true, durationMs });
          if (again.outcome === 2) tally.stats.releasedTwice++;
        });
      }
    });
  }
}

/** Fleet reads, as dashboards and schedulers do, five times a second. */
export function readFleet(run: LoadRun): void {
  const reader = new WorkerRegistryClient({ address: run.address, retry: false, channelOptions: { "grpc.channel_id": run.nextChannelId() } });
  run.clients.push(reader);
  every(run, 200, async () => {
    await run.tally.track("discoverWorkers", () => reader.discoverWorkers());
    await run.tally.track("getWorkersForLoadBalancing", () => reader.getWorkersForLoadBalancing({ capabilities: [pick(CAPABILITIES)] }, { limit: 10 }));
    await run.tally.track("getRegistryStats", () => reader.getRegistryStats());
  });
}

/** Two watchers (every worker; "coder" only) that read every event, check revisions rise, and resume from their last one every minute. */
export function watch(run: LoadRun): void {
  const watchers = rawClient(run.address, run.nextChannelId()) as unknown as WatchClient;
  run.clients.push(watchers);
  for (const capabilities of [[], ["coder"]]) run.loops.push(watchLoop(run, watchers, capabilities));
}

async function watchLoop(run: LoadRun, watchers: WatchClient, capabilities: string[]): Promise<void> {
  const { stats } = run.tally;
  let last = 0;
  while (run.running()) {
    const stream = watchers.watchWorkers({ filter: { capabilities }, startRevision: last === 0 ? 0 : last + 1 });
    run.openStreams.add(stream);
    stream.on("data", (response: { event: { revision: bigint } }) => {
      const revision = Number(response.event.revision);
      if (revision <= last) stats.watchOrderViolations++;
      last = revision;
      stats.watchEvents++;
    });
    const ended = new Promise<void>((resolve) =>
      stream.on("status", (s: grpc.StatusObject) => {
        if (s.code !== grpc.status.CANCELLED) run.tally.failed("watch", s);
        resolve();
      }),
    );
    stream.on("error", () => undefined);
    const resumeAt = performance.now() + 60_000;
    while (run.running() && performance.now() < resumeAt) await Promise.race([sleep(500), ended]);
    stream.cancel();
    await ended;
    run.openStreams.delete(stream);
  }
}

/**
 * A watcher that never reads: the server must drop it (RESOURCE_EXHAUSTED) rather than buffer for it. grpc-js
 * hands the status over only after the messages before it, so after a while it reads, to learn how it ended.
 */
export function watchWithoutReading(run: LoadRun): void {
  const slow = rawClient(run.address, run.nextChannelId()) as unknown as WatchClient;
  run.clients.push(slow);
  const { stats } = run.tally;
  run.loops.push(
    (async () => {
      while (run.running()) {
        const stream = slow.watchWorkers({ filter: {}, startRevision: 0 });
        run.openStreams.add(stream);
        stream.on("error", () => undefined);
        const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
        // One read(0) fills the stream's buffer and then stops taking messages off the connection.
        stream.read(0);
        const readAt = performance.now() + 20_000;
        while (run.running() && performance.now() < readAt) await sleep(200);
        stream.on("data", () => undefined);
        const status = await Promise.race([ended, timeout(5000).then(() => undefined)]);
        if (status === undefined) stream.cancel();
        run.openStreams.delete(stream);
        // Not dropped: fewer events than its buffer came while it read nothing, so the server had no reason to.
        if (status === undefined) stats.slowWatcherKept++;
        else if (status.code === grpc.status.RESOURCE_EXHAUSTED) stats.slowWatcherDrops++;
        else if (status.code !== grpc.status.CANCELLED || run.running()) run.tally.failed("slowWatch", status);
      }
    })(),
  );
}
