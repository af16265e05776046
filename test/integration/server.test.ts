import { status, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { createLogger } from "../../src/log.js";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { LogCapture } from "../security/support.js";

const coder = { nodeId: "coder-1", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 };

/** Collects a heartbeat stream's replies and its final status. */
function collect(stream: ClientDuplexStream<object, any>): { replies: any[]; done: Promise<StatusObject> } {
  const replies: any[] = [];
  stream.on("data", (reply) => replies.push(reply));
  // The status event carries the outcome; the error event repeats it for non-OK and must be handled.
  stream.on("error", () => {});
  const done = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
  return { replies, done };
}

describe("registry server over gRPC", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
  });
  afterAll(async () => {
    client.close();
    await server.close();
    dirs.cleanup();
  });

  const register = async (request: object = coder) => (await client.call("registerWorker", request)).worker;
  const totalWorkers = async () => (await client.call("getRegistryStats")).totalWorkers as number;

  it("runs the guide's flow: register, heartbeat, count, complete, discover, rank, stats, unregister", async () => {
    const worker = await register();
    expect(worker).toMatchObject({ nodeId: "coder-1", capabilities: ["coder", "tester"], healthStatus: HealthStatus.HEALTHY, availableCapacity: 5 });
    expect((await client.call("heartbeat", { workerId: worker.id })).worker.id).toBe(worker.id);
    expect((await client.call("updateTaskCount", { workerId: worker.id, delta: 1 })).worker.currentTasks).toBe(1);
    const completed = (await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 5000 })).worker;
    expect(completed.metrics).toMatchObject({ tasksCompleted: 1n, tasksFailedCount: 0n, averageTaskDurationMs: 5000 });
    const discovered = await client.call("discoverWorkers", { filter: { capabilities: ["coder"], healthStatuses: [HealthStatus.HEALTHY], minAvailableCapacity: 2 } });
    expect(discovered.workers.map((w: any) => w.id)).toContain(worker.id);
    const ranked = await client.call("getWorkersForLoadBalancing", { filter: { capabilities: ["coder"] }, limit: 5 });
    const mine = ranked.workers.find((r: any) => r.worker.id === worker.id);
    // 4/5 free, one success, 5 s average: 0.5 x 0.8 + 0.3 x 1 + 0.2 x 0.2.
    expect(mine.priority).toBeCloseTo(0.74, 10);
    const stats = await client.call("getRegistryStats");
    expect(stats.totalWorkers).toBeGreaterThanOrEqual(1);
    expect(stats.tasksCompleted).toBeGreaterThanOrEqual(1n);
    await client.call("unregisterWorker", { workerId: worker.id });
    const gone = await client.fail("getWorker", { workerId: worker.id });
    expect(gone).toEqual({ code: status.NOT_FOUND, details: `worker ${worker.id} not found: it was unregistered` });
  });

  it("ranks the guide's worker B (0.77) above worker A (0.71) over the wire", async () => {
    const a = await register({ nodeId: "guide-a", capabilities: ["guide-example"], maxConcurrentTasks: 10 });
    const b = await register({ nodeId: "guide-b", capabilities: ["guide-example"], maxConcurrentTasks: 5 });
    await client.call("updateTaskCount", { workerId: a.id, delta: 2 });
    await client.call("updateTaskCount", { workerId: b.id, delta: 1 });
    for (let i = 0; i < 50; i++) await client.call("recordTaskCompletion", { workerId: a.id, success: i < 45, durationMs: 5000 });
    for (let i = 0; i < 10; i++) await client.call("recordTaskCompletion", { workerId: b.id, success: true, durationMs: 3000 });
    const { workers } = await client.call("getWorkersForLoadBalancing", { filter: { capabilities: ["guide-example"], minAvailableCapacity: 1 } });
    expect(workers.map((r: any) => [r.worker.nodeId, r.priority.toFixed(2)])).toEqual([
      ["guide-b", "0.77"],
      ["guide-a", "0.71"],
    ]);
  });

  describe("HeartbeatStream", () => {
    it("answers each heartbeat with health, server time and the next interval, and ends OK on half-close", async () => {
      const worker = await register();
      const stream = client.grpc.heartbeatStream();
      const { replies, done } = collect(stream);
      for (let sequence = 1; sequence <= 3; sequence++) stream.write({ workerId: worker.id, sequence });
      stream.end();
      const final = await done;
      expect(final.code).toBe(status.OK);
      expect(replies.map((r) => r.sequence)).toEqual([1, 2, 3]);
      expect(replies[0]).toMatchObject({ workerId: worker.id, healthStatus: HealthStatus.HEALTHY });
      expect(Number(replies[0].nextHeartbeatInterval.seconds)).toBe(300);
      expect(Math.abs(Number(replies[0].serverTime.seconds) * 1000 - Date.now())).toBeLessThan(5000);
    });

    it("ends with NOT_FOUND for an unknown worker, so the worker knows to re-register", async () => {
      const stream = client.grpc.heartbeatStream();
      const { replies, done } = collect(stream);
      stream.write({ workerId: "worker-1-unknown", sequence: 1 });
      const final = await done;
      expect(final.code).toBe(status.NOT_FOUND);
      expect(final.details).toContain("not found");
      expect(replies).toEqual([]);
    });

    it("refuses a second worker id on a stream bound to the first", async () => {
      const first = await register();
      const second = await register({ ...coder, nodeId: "coder-2" });
      const stream = client.grpc.heartbeatStream();
      const { replies, done } = collect(stream);
      stream.write({ workerId: first.id, sequence: 1 });
      stream.write({ workerId: second.id, sequence: 2 });
      const final = await done;
      expect(final.code).toBe(status.INVALID_ARGUMENT);
      expect(final.details).toMatch(/^worker_id must stay /);
      expect(replies).toHaveLength(1);
    });

    it("ends with INVALID_ARGUMENT for a malformed id", async () => {
      const stream = client.grpc.heartbeatStream();
      const { done } = collect(stream);
      stream.write({ workerId: "", sequence: 1 });
      expect(await done).toMatchObject({ code: status.INVALID_ARGUMENT, details: "worker_id is required" });
    });

    it("a heartbeat on the stream makes a worker's heartbeat fresh", async () => {
      const worker = await register();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const stream = client.grpc.heartbeatStream();
      const { done } = collect(stream);
      stream.write({ workerId: worker.id, sequence: 1 });
      stream.end();
      await done;
      const after = (await client.call("getWorker", { workerId: worker.id })).worker;
      expect(Number(after.lastHeartbeatAt.seconds) * 1000 + after.lastHeartbeatAt.nanos / 1e6).toBeGreaterThan(
        Number(worker.lastHeartbeatAt.seconds) * 1000 + worker.lastHeartbeatAt.nanos / 1e6,
      );
    });
  });

  describe("bad input gets INVALID_ARGUMENT naming the field, and stores nothing", () => {
    const badRegistrations: Array<[string, object, RegExp]> = [
      ["empty node_id", { ...coder, nodeId: "" }, /^node_id must not be empty$/],
      ["oversized node_id", { ...coder, nodeId: "n".repeat(300) }, /^node_id must be at most 253 characters, got 300$/],
      ["control characters", { ...coder, nodeId: "evil\u001b[31m" }, /^node_id must not contain control, format or line-separator characters, got U\+001B in "evil\\u001b\[31m"$/],
      ["a bidi override in node_id", { ...coder, nodeId: "node-\u202egpj.exe" }, /^node_id must not contain control, format or line-separator characters, got U\+202E in "node-\\u202egpj\.exe"$/],
      ["a zero-width space in a capability", { ...coder, capabilities: ["coder\u200b"] }, /^capabilities\[0\] must not contain white space, control, format or line-separator characters, got U\+200B/],
      ["an all-space node_id", { ...coder, nodeId: "   " }, /^node_id must not be blank$/],
      ["254 characters of node_id written in 508 UTF-16 units", { ...coder, nodeId: "💥".repeat(254) }, /^node_id must be at most 253 characters, got 254$/],
      ["no capabilities", { ...coder, capabilities: [] }, /^capabilities must name at least one capability$/],
      ["too many capabilities", { ...coder, capabilities: Array.from({ length: 100 }, (_, i) => `c${i}`) }, /^capabilities must have at most 64 entries, got 100$/],
      ["empty capability", { ...coder, capabilities: [""] }, /^capabilities\[0\] must not be empty$/],
      ["oversized capability", { ...coder, capabilities: ["x".repeat(65)] }, /^capabilities\[0\] must be at most 64 characters/],
      ["duplicate capability", { ...coder, capabilities: ["coder", "coder"] }, /^capabilities\[1\] repeats "coder"$/],
      ["max_concurrent_tasks 0", { ...coder, maxConcurrentTasks: 0 }, /^max_concurrent_tasks must be between 1 and 10000, got 0$/],
      ["negative max_concurrent_tasks", { ...coder, maxConcurrentTasks: -1 }, /^max_concurrent_tasks must be between 1 and 10000, got -1$/],
      ["absurd max_concurrent_tasks", { ...coder, maxConcurrentTasks: 2_000_000_000 }, /^max_concurrent_tasks must be between 1 and 10000, got 2000000000$/],
    ];

    it.each(badRegistrations)("RegisterWorker with %s", async (_name, request, message) => {
      const before = await totalWorkers();
      const answer = await client.fail("registerWorker", request);
      expect(answer.code).toBe(status.INVALID_ARGUMENT);
      expect(answer.details).toMatch(message);
      expect(await totalWorkers()).toBe(before);
    });

    it.each([Number.NaN, Number.POSITIVE_INFINITY, -1, 1e12])("RecordTaskCompletion with duration_ms %d", async (durationMs) => {
      const worker = await register();
      const answer = await client.fail("recordTaskCompletion", { workerId: worker.id, success: true, durationMs });
      expect(answer.code).toBe(status.INVALID_ARGUMENT);
      expect(answer.details).toMatch(/^duration_ms must be a finite number between 0 and 2592000000, got /);
      expect((await client.call("getWorker", { workerId: worker.id })).worker.metrics.tasksCompleted).toBe(0n);
    });

    it.each(["heartbeat", "getWorker", "unregisterWorker", "updateTaskCount"])("%s with a malformed worker_id", async (method) => {
      const answer = await client.fail(method, { workerId: "../../etc/passwd", delta: 1 });
      expect(answer.code).toBe(status.INVALID_ARGUMENT);
      expect(answer.details).toMatch(/^worker_id must look like worker-<timestamp>-<random>/);
    });

    it("filters with an unknown health status, a negative capacity or a huge limit", async () => {
      expect(await client.fail("discoverWorkers", { filter: { healthStatuses: [HealthStatus.UNSPECIFIED] } })).toEqual({
        code: status.INVALID_ARGUMENT,
        details: "filter.health_statuses[0] must be HEALTH_STATUS_HEALTHY, HEALTH_STATUS_DEGRADED or HEALTH_STATUS_UNHEALTHY, got 0",
      });
      expect((await client.fail("discoverWorkers", { filter: { healthStatuses: [42] } })).code).toBe(status.INVALID_ARGUMENT);
      const many = Array.from({ length: 250_000 }, () => HealthStatus.HEALTHY);
      expect(await client.fail("discoverWorkers", { filter: { healthStatuses: many } })).toEqual({
        code: status.INVALID_ARGUMENT,
        details: "filter.health_statuses must have at most 3 entries (one per health status), got 250000",
      });
      expect(await client.fail("acquireWorker", { filter: { healthStatuses: [HealthStatus.HEALTHY, HealthStatus.HEALTHY] } })).toEqual({
        code: status.INVALID_ARGUMENT,
        details: "filter.health_statuses[1] repeats healthy",
      });
      expect((await client.fail("getWorkersForLoadBalancing", { filter: { minAvailableCapacity: -2 } })).details).toMatch(
        /^filter\.min_available_capacity must be between 0 and 10000, got -2$/,
      );
      expect((await client.fail("getWorkersForLoadBalancing", { limit: 1_000_000 })).details).toMatch(/^limit must be between 0 and 10000/);
      expect((await client.fail("discoverWorkers", { pageToken: "not-a-token" })).details).toMatch(/^page_token must look like/);
    });

    it("a task count outside 0..max is FAILED_PRECONDITION and changes nothing", async () => {
      const worker = await register();
      const below = await client.fail("updateTaskCount", { workerId: worker.id, delta: -1 });
      expect(below.code).toBe(status.FAILED_PRECONDITION);
      expect(below.details).toBe(`delta -1 would take current_tasks of worker ${worker.id} from 0 to -1, outside 0..5`);
      await client.call("updateTaskCount", { workerId: worker.id, delta: 5 });
      expect((await client.fail("updateTaskCount", { workerId: worker.id, delta: 1 })).code).toBe(status.FAILED_PRECONDITION);
      expect((await client.call("getWorker", { workerId: worker.id })).worker.currentTasks).toBe(5);
    });
  });
});

describe("restart persistence", () => {
  const dirs = tempDirs();
  afterEach(() => dirs.cleanup());

  it("a second server on the same database file serves every acknowledged write, workers healthy", async () => {
    const dbPath = join(dirs.make(), "registry.db");
    const first = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" });
    const client = new RawRegistryClient(`127.0.0.1:${first.port}`);
    const worker = (await client.call("registerWorker", coder)).worker;
    await client.call("updateTaskCount", { workerId: worker.id, delta: 3 });
    await client.call("recordTaskCompletion", { workerId: worker.id, success: false, durationMs: 250 });
    const removed = (await client.call("registerWorker", { ...coder, nodeId: "coder-2" })).worker;
    await client.call("unregisterWorker", { workerId: removed.id });
    client.close();
    await first.close();

    const second = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" });
    const again = new RawRegistryClient(`127.0.0.1:${second.port}`);
    try {
      const recovered = (await again.call("getWorker", { workerId: worker.id })).worker;
      expect(recovered).toMatchObject({ id: worker.id, nodeId: "coder-1", capabilities: ["coder", "tester"], currentTasks: 3, healthStatus: HealthStatus.HEALTHY });
      expect(recovered.metrics).toMatchObject({ tasksCompleted: 0n, tasksFailedCount: 1n, averageTaskDurationMs: 250 });
      expect((await again.fail("getWorker", { workerId: removed.id })).code).toBe(status.NOT_FOUND);
      expect((await again.call("getRegistryStats")).totalWorkers).toBe(1);
    } finally {
      again.close();
      await second.close();
    }
  });

  it("shutdown ends open heartbeat streams with UNAVAILABLE", async () => {
    const server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const worker = (await client.call("registerWorker", coder)).worker;
    const stream = client.grpc.heartbeatStream();
    const { replies, done } = collect(stream);
    stream.write({ workerId: worker.id, sequence: 1 });
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));
    await server.close();
    const final = await done;
    expect(final.code).toBe(status.UNAVAILABLE);
    expect(final.details).toContain("reconnect");
    expect(replies).toHaveLength(1);
    client.close();
  });

  it("graceful shutdown leaves streaming workers healthy and writes no health event", async () => {
    const dbPath = join(dirs.make(), "registry.db");
    const logs = new LogCapture();
    const server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logger: createLogger("info", logs) });
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const workers = [(await client.call("registerWorker", coder)).worker, (await client.call("registerWorker", { ...coder, nodeId: "coder-2" })).worker];
    const streams = workers.map((worker) => {
      const stream = client.grpc.heartbeatStream();
      const collected = collect(stream);
      stream.write({ workerId: worker.id, sequence: 1 });
      return collected;
    });
    for (const stream of streams) await expect.poll(() => stream.replies.length).toBe(1);
    const revisionBefore = Number((await client.call("getRegistryStats")).revision);
    const events: WorkerEvent[] = [];
    await server.registry.watch({ capabilities: [], healthStatuses: [], minAvailableCapacity: 0 }, 0, (event) => events.push(event));

    await server.close();
    for (const stream of streams) expect((await stream.done).code).toBe(status.UNAVAILABLE);
    client.close();
    // A shutdown is not a failure of any worker: no health change, no event, no "stream lost".
    expect(events.map((e) => `${e.revision} ${e.type} ${e.worker.id} ${e.worker.healthStatus}`)).toEqual([]);
    expect(logs.lines().filter((l) => l.msg === "worker heartbeat stream lost" || l.msg === "worker health changed")).toEqual([]);

    const again = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" });
    const reader = new RawRegistryClient(`127.0.0.1:${again.port}`);
    try {
      // Nothing was written to the durable log either: watchers resuming after the deploy see no degradation.
      expect(Number((await reader.call("getRegistryStats")).revision)).toBe(revisionBefore);
      for (const worker of workers) expect((await reader.call("getWorker", { workerId: worker.id })).worker.healthStatus).toBe(HealthStatus.HEALTHY);
    } finally {
      reader.close();
      await again.close();
    }
  });
});
