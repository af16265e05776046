import { status, type StatusObject } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryServer, ServeOptions } from "../../src/app.js";
import { WorkerEventType, type WorkerEvent } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { eventSummary as summary, openWatch, outpaceSlowWatcher, revisions, sleep, startWatchRegistry, strictlyIncreasing, waitUntil, type Watch } from "../support/watch-issue4.js";

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const startServer = (registry: ServeOptions["registry"] = {}, dbPath?: string): Promise<RegistryServer> => startWatchRegistry(dirs, { registry, dbPath });
describe("WatchWorkers from start_revision 0", () => {
  it("sees REGISTERED, UPDATED, HEALTH_CHANGED, UNREGISTERED in order, revisions strictly increasing", async () => {
    // A degraded window far wider than the registry's one-second tick: the worker is degraded, not yet unhealthy, for seconds.
    const server = await startServer({ healthyThresholdMs: 300, degradedThresholdMs: 10_000, workerTtlMs: 10_000, heartbeatIntervalMs: 100 });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const capability = "watch-seq";
    const register = async (nodeId: string) => (await client.call("registerWorker", { nodeId, capabilities: [capability], maxConcurrentTasks: 1000 })).worker;
    const probe = await register("watch-probe");
    const watch = openWatch(client, { filter: { capabilities: [capability] }, startRevision: 0n });
    try {
      // start_revision 0 means "from when the call starts": poke until the watch is live.
      await waitUntil(
        "the watch to be live",
        async () => {
          await client.call("updateTaskCount", { workerId: probe.id, delta: 1 });
          await sleep(50);
          return watch.events.length > 0;
        },
        3000,
        0,
      );
      expect(watch.events.map((e) => [e.type, e.worker?.id])).toContainEqual([WorkerEventType.UPDATED, probe.id]);
      expect(watch.events.some((e) => e.type === WorkerEventType.REGISTERED)).toBe(false);

      const worker = await register("watch-seq-node");
      await client.call("updateTaskCount", { workerId: worker.id, delta: 2 });
      // No heartbeat: the healthy threshold passes and the registry degrades it on its own.
      await watch.waitFor("HEALTH_CHANGED", (e) => e.worker?.id === worker.id && e.type === WorkerEventType.HEALTH_CHANGED, 3000);
      await client.call("unregisterWorker", { workerId: worker.id });
      await watch.waitFor("UNREGISTERED", (e) => e.worker?.id === worker.id && e.type === WorkerEventType.UNREGISTERED);

      expect(strictlyIncreasing(revisions(watch.events))).toBe(true);
      const mine = watch.events.filter((e) => e.worker?.id === worker.id).map(summary);
      expect(mine).toMatchObject([
        { type: WorkerEventType.REGISTERED, currentTasks: 0, health: HealthStatus.HEALTHY },
        { type: WorkerEventType.UPDATED, currentTasks: 2, health: HealthStatus.HEALTHY },
        { type: WorkerEventType.HEALTH_CHANGED, previous: HealthStatus.HEALTHY, health: HealthStatus.DEGRADED, currentTasks: 2 },
        { type: WorkerEventType.UNREGISTERED },
      ]);
    } finally {
      watch.cancel();
      client.close();
      await server.close();
    }
  });
});

describe("WatchWorkers", () => {
  let server: RegistryServer;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startServer();
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
  });
  afterAll(async () => {
    client.close();
    await server.close();
  });

  const register = async (nodeId: string, capability: string, maxConcurrentTasks = 1000) =>
    (await client.call("registerWorker", { nodeId, capabilities: [capability], maxConcurrentTasks })).worker;
  const revisionNow = async () => Number((await client.call("getRegistryStats")).revision);

  it("a watcher that reconnects with start_revision = last + 1 gets exactly what it missed while writes continued", async () => {
    const capability = "watch-resume";
    const workers = await Promise.all([0, 1, 2].map((i) => register(`watch-resume-${i}`, capability)));
    const marker = await register("watch-resume-marker", capability);
    const start = (await revisionNow()) + 1;
    const filter = { capabilities: [capability] };
    const reference = openWatch(client, { filter, startRevision: BigInt(start) });
    const first = openWatch(client, { filter, startRevision: BigInt(start) });
    let second: Watch | undefined;
    let writing = true;
    const writers = workers.map(async (worker) => {
      while (writing) {
        await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
        await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 3 });
        await client.call("updateTaskCount", { workerId: worker.id, delta: -1 });
      }
    });
    try {
      await waitUntil("the first watch to see 30 events", () => first.events.length >= 30, 5000);
      const seen = first.cancel().slice();
      const last = Number(seen[seen.length - 1]!.revision);
      await waitUntil("writes while disconnected", async () => (await revisionNow()) >= last + 60, 5000);
      const reconnectedAt = await revisionNow();
      second = openWatch(client, { filter, startRevision: BigInt(last + 1) });
      await waitUntil("the second watch to catch up", () => second!.events.length >= 60, 5000);
      writing = false;
      await Promise.all(writers);
      await client.call("unregisterWorker", { workerId: marker.id });
      const isMarker = (e: WorkerEvent) => e.worker?.id === marker.id && e.type === WorkerEventType.UNREGISTERED;
      await reference.waitFor("marker on the reference watch", isMarker);
      await second.waitFor("marker on the resumed watch", isMarker);

      const resumed = [...seen, ...second.events];
      expect(strictlyIncreasing(revisions(resumed))).toBe(true);
      expect(resumed.map(summary)).toEqual(reference.events.map(summary));
      expect(Number(second.events[0]!.revision)).toBe(last + 1);
      // The resumed watch really replayed a gap: events written while nobody listened.
      expect(second.events.filter((e) => Number(e.revision) <= reconnectedAt).length).toBeGreaterThanOrEqual(59);
      // With one capability and nothing else writing, the numbering has no holes.
      const all = revisions(reference.events);
      expect(all[all.length - 1]! - all[0]!).toBe(all.length - 1);
    } finally {
      writing = false;
      await Promise.all(writers);
      reference.cancel();
      second?.cancel();
    }
  });

  it("DiscoverWorkers' revision + 1 as start_revision yields only the later events", async () => {
    const capability = "watch-discover";
    const worker = await register("watch-discover-node", capability);
    await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
    const { revision } = await client.call("discoverWorkers", { filter: { capabilities: [capability] } });
    const listed = Number(revision);
    const after = openWatch(client, { filter: { capabilities: [capability] }, startRevision: BigInt(listed + 1) });
    // The boundary is exact: from the listed revision itself, the update the list already shows comes first.
    const from = openWatch(client, { filter: { capabilities: [capability] }, startRevision: BigInt(listed) });
    try {
      await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
      await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 7 });
      const isCompletion = (e: WorkerEvent) => e.worker?.metrics?.tasksCompleted === 1n;
      await after.waitFor("the completion", isCompletion);
      await from.waitFor("the completion", isCompletion);
      expect(after.events.map(summary)).toMatchObject([
        { revision: listed + 1, type: WorkerEventType.UPDATED, workerId: worker.id, currentTasks: 2, tasksCompleted: 0n },
        { revision: listed + 2, type: WorkerEventType.UPDATED, workerId: worker.id, currentTasks: 2, tasksCompleted: 1n },
      ]);
      expect(from.events.map(summary)).toMatchObject([{ revision: listed, currentTasks: 1 }, { revision: listed + 1 }, { revision: listed + 2 }]);
    } finally {
      after.cancel();
      from.cancel();
    }
  });

  it("refuses min_available_capacity with INVALID_ARGUMENT", async () => {
    const watch = openWatch(client, { filter: { minAvailableCapacity: 1 }, startRevision: 0n });
    const final = await watch.done;
    expect(final.code).toBe(status.INVALID_ARGUMENT);
    expect(final.details).toBe("filter.min_available_capacity is not supported by WatchWorkers: it must be 0");
    expect(watch.events).toEqual([]);
  });
});

describe("WatchWorkers against the retention window", () => {
  it("answers OUT_OF_RANGE for a start_revision that has been pruned, and serves one from a fresh listing", async () => {
    const server = await startServer({ eventTtlMs: 200 });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    try {
      const worker = (await client.call("registerWorker", { nodeId: "ttl", capabilities: ["watch-ttl"], maxConcurrentTasks: 10 })).worker;
      const oldest = Number((await client.call("getRegistryStats")).revision);
      for (let i = 0; i < 5; i++) await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
      // While the events are young, a watch from the oldest replays them.
      const young = openWatch(client, { startRevision: BigInt(oldest) });
      await waitUntil("the young replay", () => young.events.length >= 6, 2000);
      expect(revisions(young.events).slice(0, 6)).toEqual([0, 1, 2, 3, 4, 5].map((i) => oldest + i));
      young.cancel();

      await sleep(1200);
      for (let i = 0; i < 3; i++) await client.call("updateTaskCount", { workerId: worker.id, delta: -1 });
      const stale = openWatch(client, { startRevision: BigInt(oldest) });
      const final = await stale.done;
      expect(final.code).toBe(status.OUT_OF_RANGE);
      expect(final.details).toMatch(new RegExp(`^revision ${oldest} is no longer in the event log \\(the oldest kept is \\d+\\); list the workers again`));
      expect(stale.events).toEqual([]);

      const { revision } = await client.call("discoverWorkers", {});
      const fresh = openWatch(client, { startRevision: revision + 1n });
      await client.call("recordTaskCompletion", { workerId: worker.id, success: false, durationMs: 1 });
      const event = await fresh.waitFor("the completion", () => true);
      expect(Number(event.revision)).toBe(Number(revision) + 1);
      fresh.cancel();
    } finally {
      client.close();
      await server.close();
    }
  });

  it("keeps revisions across a restart, and replays pre-restart events still inside the window", async () => {
    const dbPath = join(dirs.make(), "registry.db");
    const before = await startServer({}, dbPath);
    let client = new RawRegistryClient(`127.0.0.1:${before.port}`);
    const worker = (await client.call("registerWorker", { nodeId: "restart", capabilities: ["watch-restart"], maxConcurrentTasks: 10 })).worker;
    const firstRevision = Number((await client.call("getRegistryStats")).revision);
    const recorder = openWatch(client, { startRevision: BigInt(firstRevision) });
    for (let i = 0; i < 4; i++) await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
    await waitUntil("the pre-restart events", () => recorder.events.length >= 5, 2000);
    const preRestart = recorder.events.map(summary);
    const lastBefore = Number((await client.call("getRegistryStats")).revision);
    expect(preRestart[preRestart.length - 1]!.revision).toBe(lastBefore);
    client.close();
    await before.close();
    expect((await recorder.done).code).toBe(status.UNAVAILABLE);

    const after = await startServer({}, dbPath);
    client = new RawRegistryClient(`127.0.0.1:${after.port}`);
    try {
      expect(Number((await client.call("getRegistryStats")).revision)).toBe(lastBefore);
      const update = await client.call("updateTaskCount", { workerId: worker.id, delta: -1 });
      expect(update.worker.currentTasks).toBe(3);
      // Replays from before the restart (the second pre-restart event) into the events after it.
      const replay = openWatch(client, { startRevision: BigInt(firstRevision + 1) });
      await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 2 });
      await replay.waitFor("the post-restart completion", (e) => e.worker?.metrics?.tasksCompleted === 1n);
      const seen = replay.events.map(summary);
      expect(seen.slice(0, preRestart.length - 1)).toEqual(preRestart.slice(1));
      const newer = seen.slice(preRestart.length - 1);
      expect(newer).toMatchObject([
        { revision: lastBefore + 1, type: WorkerEventType.UPDATED, currentTasks: 3 },
        { revision: lastBefore + 2, type: WorkerEventType.UPDATED, tasksCompleted: 1n },
      ]);
      expect(strictlyIncreasing(seen.map((e) => e.revision))).toBe(true);
      replay.cancel();
    } finally {
      client.close();
      await after.close();
    }
  });
});

describe("WatchWorkers from the future", () => {
  it("a start_revision beyond the current revision + 1 answers OUT_OF_RANGE naming the current revision, instead of waiting silently", async () => {
    const server = await startServer();
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    try {
      await client.call("registerWorker", { nodeId: "future", capabilities: ["watch-future"], maxConcurrentTasks: 1 });
      const current = Number((await client.call("getRegistryStats")).revision);
      const far = openWatch(client, { startRevision: BigInt(current + 1000) });
      const outcome = await Promise.race([far.done, sleep(2000).then(() => undefined)]);
      expect(outcome === undefined ? "still open after 2 s, silent" : `${status[outcome.code]}: ${outcome.details}`).toBe(
        `OUT_OF_RANGE: start_revision ${current + 1000} is beyond the current revision ${current}: ` +
          `watch from at most ${current + 1} (the next event), or from 0 for new events only`,
      );
      far.cancel();
      // current + 1 is where a watch resumes after a listing: accepted.
      const next = openWatch(client, { startRevision: BigInt(current + 1) });
      await client.call("registerWorker", { nodeId: "future-2", capabilities: ["watch-future"], maxConcurrentTasks: 1 });
      expect(Number((await next.waitFor("the next event", () => true)).revision)).toBe(current + 1);
      next.cancel();
    } finally {
      client.close();
      await server.close();
    }
  });
});

describe("a watcher that never reads", () => {
  it("is ended with RESOURCE_EXHAUSTED once its buffer of watchBufferEvents fills, and the server keeps serving", async () => {
    const server = await startServer({ watchBufferEvents: 50 });
    const address = `127.0.0.1:${server.port}`;
    const client = new RawRegistryClient(address);
    const slowClient = new RawRegistryClient(address, { "grpc.channel_id": 77 });
    const readerClient = new RawRegistryClient(address, { "grpc.channel_id": 78 });
    try {
      const { slow, reader, workers, start, total, dropped } = await outpaceSlowWatcher(
        { writer: client, slow: slowClient, reader: readerClient },
        server.registry,
        { nodePrefix: "busy", capability: "watch-slow", writesPerWorker: 750 },
      );
      // Dropped while the writes were still going, not at the end.
      expect(dropped).toBeGreaterThan(50);
      expect(dropped).toBeLessThan(total);
      expect(server.registry.watcherCount).toBe(1);
      await waitUntil("the reading watcher to see every event", () => reader.events.length >= total, 5000);
      expect(revisions(reader.events)).toEqual(reader.events.map((_, i) => start + i));
      reader.cancel();

      // The server keeps serving, watches included.
      const stats = await client.call("getRegistryStats");
      expect(Number(stats.revision)).toBe(start - 1 + total);
      const healthy = openWatch(client, { startRevision: stats.revision + 1n });
      await client.call("updateTaskCount", { workerId: workers[0]!.id, delta: -1 });
      expect(Number((await healthy.waitFor("a live event", () => true)).revision)).toBe(Number(stats.revision) + 1);
      healthy.cancel();

      // Reading now drains what reached the client, then the status. (grpc-js discards messages it
      // had not handed over yet when a non-OK status arrives, so the client may see fewer than were sent.)
      slow.startReading();
      const final = await slow.done;
      expect(final.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(final.details).toBe("watcher fell 50 events behind and was dropped; resume from the last revision you received + 1, or list again");
      // What it did get is the log from `start` in order, without a gap: resuming after the last one loses nothing.
      expect(revisions(slow.events)).toEqual(slow.events.map((_, i) => start + i));
      expect(slow.events.length).toBeLessThan(dropped);
    } finally {
      slowClient.close();
      readerClient.close();
      client.close();
      await server.close();
    }
  });
});

describe("a watcher resuming far back", () => {
  it("a watcher resuming more than watchBufferEvents back catches up at its reader's pace, then follows live events", async () => {
    const server = await startServer({ watchBufferEvents: 16 });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const watchClient = new RawRegistryClient(`127.0.0.1:${server.port}`, { "grpc.channel_id": 91 });
    const pausedClient = new RawRegistryClient(`127.0.0.1:${server.port}`, { "grpc.channel_id": 92 });
    try {
      const worker = (await client.call("registerWorker", { nodeId: "far-back", capabilities: ["watch-far"], maxConcurrentTasks: 10 })).worker;
      const start = Number((await client.call("getRegistryStats")).revision);
      const write = (i: number) => client.call("updateTaskCount", { workerId: worker.id, delta: i % 2 === 0 ? 1 : -1 });
      for (let i = 0; i < 1500; i++) await write(i);
      // 1501 events back, nearly a hundred times the buffer; writes go on while it replays.
      const watch = openWatch(watchClient, { startRevision: BigInt(start) });
      // A reader that pauses: it takes nothing until told, and is not dropped for it while it replays.
      const paused = openWatch(pausedClient, { startRevision: BigInt(start) }, { read: false });
      let ended: StatusObject | undefined;
      let pausedEnded: StatusObject | undefined;
      void watch.done.then((s) => (ended = s));
      void paused.done.then((s) => (pausedEnded = s));
      for (let i = 0; i < 300; i++) await write(i);
      const last = Number((await client.call("getRegistryStats")).revision);
      await waitUntil("the replay to reach the current revision", () => ended !== undefined || watch.events.length >= last - start + 1, 10_000);
      expect(ended).toBeUndefined();
      // Then it is live: a new event arrives on its own.
      await write(0);
      await watch.waitFor("the next live event", (e) => Number(e.revision) === last + 1);
      const expected = Array.from({ length: last - start + 2 }, (_, i) => start + i);
      expect(revisions(watch.events)).toEqual(expected);
      expect(ended).toBeUndefined();
      watch.cancel();

      expect(pausedEnded).toBeUndefined();
      paused.startReading();
      await waitUntil("the paused reader to catch up", () => pausedEnded !== undefined || paused.events.length >= expected.length, 10_000);
      expect(pausedEnded).toBeUndefined();
      expect(revisions(paused.events)).toEqual(expected);
      paused.cancel();
    } finally {
      pausedClient.close();
      watchClient.close();
      client.close();
      await server.close();
    }
  });
});

describe("health events come from deadlines, not reads", () => {
  it("a worker that never heartbeats goes healthy -> degraded -> unhealthy on the watch with nobody reading it", async () => {
    const server = await startServer({ healthyThresholdMs: 300, degradedThresholdMs: 600, workerTtlMs: 600, heartbeatIntervalMs: 100 });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    try {
      const start = Number((await client.call("getRegistryStats")).revision) + 1;
      const watch = openWatch(client, { startRevision: BigInt(start) });
      const registeredAt = performance.now();
      const worker = (await client.call("registerWorker", { nodeId: "silent", capabilities: ["watch-deadline"], maxConcurrentTasks: 1 })).worker;
      // No GetWorker, no stats: only the registry's own schedule can produce these.
      await watch.waitFor("unhealthy", (e) => e.type === WorkerEventType.HEALTH_CHANGED && e.worker?.healthStatus === HealthStatus.UNHEALTHY, 4000);
      const elapsed = performance.now() - registeredAt;
      expect(watch.events.map(summary)).toMatchObject([
        { type: WorkerEventType.REGISTERED, workerId: worker.id },
        { type: WorkerEventType.HEALTH_CHANGED, previous: HealthStatus.HEALTHY, health: HealthStatus.DEGRADED },
        { type: WorkerEventType.HEALTH_CHANGED, previous: HealthStatus.DEGRADED, health: HealthStatus.UNHEALTHY },
      ]);
      expect(elapsed).toBeLessThan(2600);
      watch.cancel();
    } finally {
      client.close();
      await server.close();
    }
  });
});
