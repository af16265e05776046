import { status, type ServiceError } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { RemovalReason, WorkerEventType, WorkerState } from "@sentinel/worker-registry-client/contract";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { openWatch, waitUntil } from "../support/watch-issue4.js";

describe("fleet lifecycle over gRPC: cordon, drain, labels, versions", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let address: string;
  let client: RawRegistryClient;

  beforeAll(async () => {
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    address = `127.0.0.1:${server.port}`;
    client = new RawRegistryClient(address);
  });
  afterAll(async () => {
    client.close();
    await server.close();
    dirs.cleanup();
  });

  const register = async (nodeId: string, capabilities: string[], maxConcurrentTasks: number, extra: object = {}) =>
    (await client.call("registerWorker", { nodeId, capabilities, maxConcurrentTasks, ...extra })).worker;
  const getWorker = async (workerId: string) => (await client.call("getWorker", { workerId })).worker;

  it("8 concurrent orchestrators never acquire a cordoned worker while they take every slot of the others", async () => {
    const capability = "life-cordon";
    const workers = await Promise.all(Array.from({ length: 6 }, (_, i) => register(`life-cordon-${i}`, [capability], 3)));
    const cordoned = new Set<string>([workers[0].id, workers[3].id]);
    for (const id of cordoned) expect((await client.call("cordonWorker", { workerId: id })).worker.state).toBe(WorkerState.CORDONED);
    const orchestrators = Array.from({ length: 8 }, () => new RawRegistryClient(address));
    try {
      const granted = await Promise.all(
        orchestrators.map(async (orchestrator) => {
          const mine: string[] = [];
          for (;;) {
            try {
              mine.push((await orchestrator.call("acquireWorker", { filter: { capabilities: [capability] } })).worker.worker.id);
            } catch (error) {
              expect((error as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
              return mine;
            }
          }
        }),
      );
      const all = granted.flat();
      // Every slot of the 4 active workers, none of the 2 cordoned ones.
      expect(all).toHaveLength(4 * 3);
      expect(all.filter((id) => cordoned.has(id))).toEqual([]);
      expect(new Set(all).size).toBe(4);
      for (const id of cordoned) expect((await getWorker(id)).currentTasks).toBe(0);
      const ranked = await client.call("getWorkersForLoadBalancing", { filter: { capabilities: [capability] } });
      expect(ranked.workers.map((r: any) => r.worker.id).filter((id: string) => cordoned.has(id))).toEqual([]);
    } finally {
      for (const orchestrator of orchestrators) orchestrator.close();
    }
    // Uncordoned: back in rotation at once.
    await client.call("uncordonWorker", { workerId: workers[0].id });
    expect((await client.call("acquireWorker", { filter: { capabilities: [capability] } })).worker.worker.id).toBe(workers[0].id);
  });

  it("drain: heartbeat replies (unary and stream) carry drain_requested and the deadline; the last task's end removes the worker", async () => {
    const worker = await register("life-drain", ["life-drain"], 2);
    await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
    const watch = openWatch(client, { filter: { capabilities: ["life-drain"] } });
    try {
      const drained = await client.call("drainWorker", { workerId: worker.id, grace: { seconds: 120n } });
      expect(drained.worker.state).toBe(WorkerState.DRAINING);
      const deadlineMs = Number(drained.worker.drainDeadline.seconds) * 1000 + drained.worker.drainDeadline.nanos / 1e6;
      expect(deadlineMs).toBeGreaterThan(Date.now() + 110_000);
      const unary = await client.call("heartbeat", { workerId: worker.id });
      expect({ requested: unary.drainRequested, deadline: unary.drainDeadline, state: unary.worker.state }).toEqual({
        requested: true,
        deadline: drained.worker.drainDeadline,
        state: WorkerState.DRAINING,
      });
      const stream = client.grpc.heartbeatStream();
      const replies: any[] = [];
      stream.on("data", (reply) => replies.push(reply));
      stream.on("error", () => {});
      stream.write({ workerId: worker.id, sequence: 1 });
      await waitUntil("a stream reply", () => replies.length > 0, 5000);
      expect({ requested: replies[0].drainRequested, deadline: replies[0].drainDeadline }).toEqual({ requested: true, deadline: drained.worker.drainDeadline });
      stream.end();
      await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 40 });
      const last = await client.call("updateTaskCount", { workerId: worker.id, delta: -1 });
      expect(last.worker).toMatchObject({ id: worker.id, currentTasks: 0, state: WorkerState.DRAINING });
      const removed = await watch.waitFor("unregistered, drained", (e) => e.type === WorkerEventType.UNREGISTERED);
      expect(removed.removalReason).toBe(RemovalReason.DRAINED);
      const changed = watch.events.find((e) => e.type === WorkerEventType.STATE_CHANGED)!;
      expect({ previous: changed.previousState, now: changed.worker!.state }).toEqual({ previous: WorkerState.ACTIVE, now: WorkerState.DRAINING });
      expect((await client.fail("getWorker", { workerId: worker.id })).code).toBe(status.NOT_FOUND);
    } finally {
      watch.cancel();
    }
  });

  it("a worker drained while idle is removed at once, and its next heartbeat is NOT_FOUND saying so, with the reason as a trailer", async () => {
    const worker = await register("life-idle", ["life-idle"], 2);
    const drained = await client.call("drainWorker", { workerId: worker.id });
    expect(drained.worker).toMatchObject({ id: worker.id, state: WorkerState.DRAINING, currentTasks: 0 });
    const refused = await client.call("heartbeat", { workerId: worker.id }).then(
      () => undefined,
      (error: ServiceError) => error,
    );
    expect({ code: refused?.code, details: refused?.details, reason: refused?.metadata.get("sentinel-removal-reason") }).toEqual({
      code: status.NOT_FOUND,
      details: `worker ${worker.id} not found: it was drained and removed once its tasks finished`,
      reason: ["drained"],
    });
  });

  it("a drained worker's open heartbeat stream ends at once with NOT_FOUND and the reason, not at its next heartbeat", async () => {
    const worker = await register("life-stream-end", ["life-stream-end"], 2);
    const stream = client.grpc.heartbeatStream();
    const replies: any[] = [];
    stream.on("data", (reply) => replies.push(reply));
    stream.on("error", () => {});
    const ended = new Promise<any>((resolve) => stream.on("status", resolve));
    stream.write({ workerId: worker.id, sequence: 1 });
    await waitUntil("the first reply", () => replies.length === 1, 5000);
    await client.call("drainWorker", { workerId: worker.id });
    const final = await ended;
    expect({ code: final.code, details: final.details, reason: final.metadata.get("sentinel-removal-reason") }).toEqual({
      code: status.NOT_FOUND,
      details: `worker ${worker.id} not found: it was drained and removed once its tasks finished`,
      reason: ["drained"],
    });
    expect(replies).toHaveLength(1);
  });

  it("a worker still busy at its drain deadline is removed anyway (reason DRAIN_DEADLINE)", async () => {
    const worker = await register("life-deadline", ["life-deadline"], 2);
    await client.call("updateTaskCount", { workerId: worker.id, delta: 2 });
    const watch = openWatch(client, { filter: { capabilities: ["life-deadline"] } });
    try {
      await client.call("drainWorker", { workerId: worker.id, grace: { seconds: 1n } });
      // The leader checks deadlines every second: removed within about two.
      const removed = await watch.waitFor("unregistered at the deadline", (e) => e.type === WorkerEventType.UNREGISTERED, 5000);
      expect({ reason: removed.removalReason, tasks: removed.worker!.currentTasks }).toEqual({ reason: RemovalReason.DRAIN_DEADLINE, tasks: 2 });
      expect((await client.fail("heartbeat", { workerId: worker.id })).code).toBe(status.NOT_FOUND);
    } finally {
      watch.cancel();
    }
  });

  it("cordon and uncordon of a draining worker are FAILED_PRECONDITION; unknown ids NOT_FOUND; a bad grace INVALID_ARGUMENT", async () => {
    const worker = await register("life-refusals", ["life-refusals"], 1);
    await client.call("updateTaskCount", { workerId: worker.id, delta: 1 });
    expect(await client.fail("drainWorker", { workerId: worker.id, grace: { seconds: 0n, nanos: 500_000_000 } })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "grace must be between 1s and 168h (7 days), got 500 ms",
    });
    await client.call("drainWorker", { workerId: worker.id });
    expect(await client.fail("uncordonWorker", { workerId: worker.id })).toEqual({
      code: status.FAILED_PRECONDITION,
      details: `worker ${worker.id} is draining and cannot be uncordoned: only its re-registration undoes a drain`,
    });
    expect((await client.fail("cordonWorker", { workerId: worker.id })).code).toBe(status.FAILED_PRECONDITION);
    expect((await client.fail("cordonWorker", { workerId: "worker-1-nosuchworker" })).code).toBe(status.NOT_FOUND);
    expect(await client.fail("cordonWorker", {})).toEqual({ code: status.INVALID_ARGUMENT, details: "worker_id is required" });
    expect((await getWorker(worker.id)).state).toBe(WorkerState.DRAINING);
  });

  it("labels and version round-trip and select; a selector syntax error is INVALID_ARGUMENT naming the position", async () => {
    const v1 = await register("life-v1", ["life-labels"], 1, { labels: { zone: "eu-1", "example.com/gpu": "a100" }, version: "2026.11.1" });
    const v2 = await register("life-v2", ["life-labels"], 1, { labels: { zone: "eu-1" }, version: "2026.11.2" });
    expect({ labels: v1.labels, version: v1.version, state: v1.state }).toEqual({ labels: { zone: "eu-1", "example.com/gpu": "a100" }, version: "2026.11.1", state: WorkerState.ACTIVE });
    const discover = async (filter: object) => (await client.call("discoverWorkers", { filter: { capabilities: ["life-labels"], ...filter } })).workers.map((w: any) => w.id);
    expect(await discover({ labelSelector: "example.com/gpu in (a100,h100)" })).toEqual([v1.id]);
    expect(await discover({ labelSelector: "zone=eu-1,!example.com/gpu" })).toEqual([v2.id]);
    expect(await discover({ versions: ["2026.11.2", "2026.11.9"] })).toEqual([v2.id]);
    expect(await client.fail("discoverWorkers", { filter: { labelSelector: "zone in (eu-1" } })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: 'filter.label_selector has a syntax error at position 14: expected a comma or ")" in the set of values, found the end of the selector',
    });
    expect((await client.fail("acquireWorker", { filter: { labelSelector: "zone==" , versions: ["a b"] } })).details).toBe(
      'filter.versions[0] must not contain white space, control or format characters, got "a b"',
    );
    expect((await client.fail("registerWorker", { nodeId: "bad", capabilities: ["x"], maxConcurrentTasks: 1, labels: { zone: "eu 1" } })).details).toBe(
      'labels["zone"] value must be empty or 1 to 63 characters [a-z0-9A-Z-_.] that start and end alphanumeric, got "eu 1"',
    );
    const stats = await client.call("getRegistryStats");
    expect(typeof stats.cordonedWorkers).toBe("number");
  });
});
