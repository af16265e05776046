import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { SseReader } from "./sse-reader.js";

/** Every field a dashboard worker carries: a view's other fields (a token, say) must never reach the page. */
const WORKER_FIELDS = [
  "averageTaskDurationMs",
  "capabilities",
  "currentTasks",
  "drainDeadlineMs",
  "health",
  "id",
  "labels",
  "lastHeartbeatAtMs",
  "maxConcurrentTasks",
  "nodeId",
  "priority",
  "state",
  "successRate",
  "tasksCompleted",
  "tasksFailed",
  "version",
];

describe("dashboard event stream (GET /dashboard/events)", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: RawRegistryClient;
  const readers: SseReader[] = [];
  const url = (path: string) => `http://127.0.0.1:${server.metricsPort}${path}`;
  const open = async () => {
    const reader = await SseReader.open(url("/dashboard/events"));
    readers.push(reader);
    return reader;
  };
  const register = async (nodeId: string, capabilities: string[], maxConcurrentTasks: number): Promise<string> =>
    (await client.call("registerWorker", { nodeId, capabilities, maxConcurrentTasks })).worker.id;
  /** The priorities GetWorkersForLoadBalancing ranks by, by worker id. */
  const rankedPriorities = async () =>
    new Map<string, number>((await client.call("getWorkersForLoadBalancing", { limit: 100 })).workers.map((r: any) => [r.worker.id, r.priority]));

  beforeAll(async () => {
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      // Weights other than the defaults: the page must show the priorities the registry really uses.
      registry: { scoring: { capacityWeight: 0.6, successWeight: 0.25, speedWeight: 0.15 } },
    });
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
  });
  afterEach(async () => {
    readers.splice(0).forEach((reader) => reader.close());
    await waitFor(() => server.registry.watcherCount === 0, 2000, "the pages of the test to close");
  });
  afterAll(async () => {
    client.close();
    await server.close();
    dirs.cleanup();
  });

  it("sends a snapshot of every worker with its priority and the stats, then each event with the worker's priority", async () => {
    const fast = await register("snap-1", ["cpu"], 4);
    const busy = await register("snap-2", ["gpu", "render"], 2);
    await client.call("recordTaskCompletion", { workerId: fast, success: true, durationMs: 400 });
    await client.call("recordTaskCompletion", { workerId: fast, success: false, durationMs: 2400 });
    await client.call("updateTaskCount", { workerId: busy, delta: 1 });

    const reader = await open();
    const snapshot = await reader.next();
    expect(snapshot.name).toBe("snapshot");
    const { workers, stats, revision, thresholds } = snapshot.data;
    const priorities = await rankedPriorities();
    expect(workers.map((w: any) => w.id).sort()).toEqual([...priorities.keys()].sort());
    for (const worker of workers) {
      expect(Object.keys(worker).sort()).toEqual(WORKER_FIELDS);
      expect(worker.priority).toBeCloseTo(priorities.get(worker.id)!, 12);
    }
    const fastRow = workers.find((w: any) => w.id === fast);
    expect(fastRow).toMatchObject({ nodeId: "snap-1", health: "healthy", tasksCompleted: 1, tasksFailed: 1, successRate: 0.5, averageTaskDurationMs: 1400 });
    expect(workers.find((w: any) => w.id === busy)).toMatchObject({ currentTasks: 1, maxConcurrentTasks: 2, successRate: null, averageTaskDurationMs: null });
    expect(stats).toMatchObject({ totalWorkers: workers.length, healthyWorkers: workers.length, tasksCompleted: 1, tasksFailed: 1, successRate: 0.5 });
    expect(revision).toBe(Number((await client.call("getRegistryStats")).revision));
    expect(thresholds).toEqual({ healthyThresholdMs: 600_000, degradedThresholdMs: 900_000, heartbeatIntervalMs: 300_000 });

    const late = await register("snap-3", ["cpu"], 10);
    await client.call("updateTaskCount", { workerId: late, delta: 3 });
    await client.call("unregisterWorker", { workerId: busy });
    const seen: any[] = [];
    while (seen.length < 3) {
      const message = await reader.nextNamed("events");
      seen.push(...message.data.events);
      expect(message.data.stats.revision).toBeGreaterThanOrEqual(message.data.events.at(-1).revision);
    }
    expect(seen.map((e) => [e.type, e.worker.id])).toEqual([
      ["registered", late],
      ["updated", late],
      ["unregistered", busy],
    ]);
    expect(seen.map((e) => e.revision)).toEqual([revision + 1, revision + 2, revision + 3]);
    // 7 of 10 slots free: 0.6 x 0.7 + the priors 0.25 x 0.5 + 0.15 x 0.5.
    expect(seen[1].worker.priority).toBeCloseTo(0.6 * 0.7 + 0.25 * 0.5 + 0.15 * 0.5, 12);
    expect(seen[1].worker.priority).toBeCloseTo((await rankedPriorities()).get(late)!, 12);
    for (const event of seen) expect(Object.keys(event.worker).sort()).toEqual(WORKER_FIELDS);
  });

  it("pushes, once a tick, the heartbeat times that changed since the previous tick and only those, with the server's clock", async () => {
    const beating = await register("beat-1", ["cpu"], 1);
    const quiet = await register("beat-2", ["cpu"], 1);
    const reader = await open();
    await reader.nextNamed("snapshot");
    // A tick may have been on its way already: start from a fresh one.
    await reader.nextNamed("tick", 3000);
    const beat = (await client.call("heartbeat", { workerId: beating })).worker.lastHeartbeatAt;
    const beatAtMs = Number(beat.seconds) * 1000 + Math.floor(beat.nanos / 1e6);
    const tick = await reader.nextNamed("tick", 3000);
    expect(tick.data.heartbeats).toEqual([[beating, beatAtMs]]);
    expect(tick.data.heartbeats.some(([id]: [string]) => id === quiet)).toBe(false);
    expect(Math.abs(tick.data.serverTimeMs - tick.receivedAtMs)).toBeLessThan(1000);
    expect(tick.data.stats.totalWorkers).toBe(Number((await client.call("getRegistryStats")).totalWorkers));
    // Nothing beat since: the next tick carries no heartbeat at all.
    expect((await reader.nextNamed("tick", 3000)).data.heartbeats).toEqual([]);
  });

  it("holds one watch on the registry for all open pages, and none once they close", async () => {
    expect(server.registry.watcherCount).toBe(0);
    const pages = await Promise.all([open(), open(), open()]);
    await Promise.all(pages.map((page) => page.nextNamed("snapshot")));
    expect(server.registry.watcherCount).toBe(1);
    pages.forEach((page) => page.close());
    await waitFor(() => server.registry.watcherCount === 0, 2000, "the dashboard's watch to end");
  });

  it("ends open event streams when the server closes, so shutdown does not wait for browsers", async () => {
    const own = await startRegistryServer({ host: "127.0.0.1", port: 0, metricsPort: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    const reader = await SseReader.open(`http://127.0.0.1:${own.metricsPort}/dashboard/events`);
    await reader.nextNamed("snapshot");
    const startedAt = Date.now();
    await own.close();
    await reader.ended;
    expect(Date.now() - startedAt).toBeLessThan(2000);
    await expect(reader.next(100)).rejects.toThrow(/stream ended/);
  });
});

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
