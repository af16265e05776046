import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import type { WorkerNodeOptions } from "../../clients/typescript/src/worker-node-options.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { nextEvent } from "./events.js";
import { TestRegistry } from "./registry-server.js";

const registration = { nodeId: "coder-node-1", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 };

const registries: TestRegistry[] = [];
const nodes: WorkerNode[] = [];
const clients: WorkerRegistryClient[] = [];

afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map((node) => node.stop()));
  for (const client of clients.splice(0)) client.close();
  await Promise.all(registries.splice(0).map((registry) => registry.dispose()));
});

async function startRegistry(heartbeatIntervalMs = 200): Promise<TestRegistry> {
  const registry = await TestRegistry.start({ heartbeatIntervalMs });
  registries.push(registry);
  return registry;
}

function createNode(registry: TestRegistry, options: Partial<WorkerNodeOptions> = {}): WorkerNode {
  const node = new WorkerNode({
    registration,
    reconnectBaseMs: 50,
    reconnectMaxMs: 400,
    ...options,
    clientOptions: { address: registry.address, ...options.clientOptions },
  });
  nodes.push(node);
  return node;
}

function adminClient(registry: TestRegistry): WorkerRegistryClient {
  const client = new WorkerRegistryClient({ address: registry.address });
  clients.push(client);
  return client;
}

describe("WorkerNode heartbeats", () => {
  it("registers, opens the stream and paces heartbeats by the server's interval", async () => {
    const registry = await startRegistry(200);
    const node = createNode(registry);
    const connected = nextEvent(node, "connected");
    const healthy = nextEvent(node, "healthy");
    const firstBeat = nextEvent(node, "heartbeat");
    const worker = await node.start();
    expect(node.workerId).toBe(worker.id);
    expect(node.state).toBe("running");
    expect(await connected).toEqual({ workerId: worker.id, reconnects: 0, address: registry.address });
    expect(node.address).toBe(registry.address);
    await healthy;
    expect(await firstBeat).toEqual({
      workerId: worker.id,
      sequence: 1,
      healthStatus: "healthy",
      nextHeartbeatMs: 200,
      drainRequested: false,
      drainDeadline: undefined,
    });
    const secondBeat = await nextEvent(node, "heartbeat");
    expect(secondBeat.sequence).toBe(2);
    expect(node.healthStatus).toBe("healthy");
  });

  it("caps the server's interval with heartbeatIntervalMs", async () => {
    const registry = await startRegistry(5000);
    const node = createNode(registry, { heartbeatIntervalMs: 30 });
    const beat = nextEvent(node, "heartbeat");
    await node.start();
    expect((await beat).nextHeartbeatMs).toBe(30);
    // A second heartbeat long before the server's 5 s proves the cap is used.
    expect((await nextEvent(node, "heartbeat", undefined, 2000)).sequence).toBe(2);
  });
});

describe("WorkerNode recovery", () => {
  it("survives a server restart on the same port and database and is healthy again without a new id", async () => {
    const registry = await startRegistry(100);
    const node = createNode(registry);
    const reregistered: unknown[] = [];
    node.on("reregistered", (event) => reregistered.push(event));
    const firstConnect = nextEvent(node, "connected");
    const worker = await node.start();
    await firstConnect;

    const lost = nextEvent(node, "reconnecting");
    await registry.stop();
    const { error } = await lost;
    expect(error.code).toBe(grpc.status.UNAVAILABLE);

    const back = nextEvent(node, "connected", (event) => event.reconnects === 1);
    const healthyAgain = nextEvent(node, "healthy");
    await registry.start();
    expect(await back).toEqual({ workerId: worker.id, reconnects: 1, address: registry.address });
    await healthyAgain;
    // Heartbeats keep flowing on the new stream.
    await nextEvent(node, "heartbeat");

    expect(node.workerId).toBe(worker.id);
    expect(reregistered).toEqual([]);
    const seen = await adminClient(registry).getWorker(worker.id);
    expect(seen.healthStatus).toBe("healthy");
    expect(seen.nodeId).toBe(registration.nodeId);
  });

  it("registers again with the same registration when the registry has lost the record", async () => {
    const registry = await startRegistry(100);
    const node = createNode(registry);
    const firstConnect = nextEvent(node, "connected");
    const original = await node.start();
    await firstConnect;

    const reregistered = nextEvent(node, "reregistered");
    const reconnected = nextEvent(node, "connected", (event) => event.workerId !== original.id);
    // Another client removes the record, as the server's cleanup would.
    const admin = adminClient(registry);
    await admin.unregisterWorker(original.id);

    const { previousId, workerId, worker } = await reregistered;
    expect(previousId).toBe(original.id);
    expect(workerId).not.toBe(original.id);
    expect(node.workerId).toBe(workerId);
    expect(worker).toMatchObject(registration);
    await reconnected;

    expect(await admin.getWorker(workerId)).toMatchObject({ ...registration, healthStatus: "healthy" });
    await expect(admin.getWorker(original.id)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("spreads 30 workers' reconnects after a restart instead of bringing them back at once", async () => {
    const registry = await startRegistry(100);
    const count = 30;
    const fleet = Array.from({ length: count }, (_, i) =>
      createNode(registry, {
        registration: { ...registration, nodeId: `node-${i}` },
        // Long enough that every first retry comes after the registry is back: a retry that meets the server
        // still down is drawn again from a wider window, which bunched reconnects on a loaded machine.
        reconnectBaseMs: 1000,
        reconnectMaxMs: 5000,
        // Evenly spaced draws stand in for 30 processes' independent Math.random.
        random: () => (i + 0.5) / count,
        // One channel per worker, as 30 processes would have.
        clientOptions: { channelOptions: { "grpc.channel_id": i } },
      }),
    );
    const connected = fleet.map((node) => nextEvent(node, "connected"));
    const ids = await Promise.all(fleet.map(async (node) => (await node.start()).id));
    await Promise.all(connected);

    const lost = fleet.map((node) => nextEvent(node, "reconnecting"));
    await registry.stop();
    await Promise.all(lost);

    const reconnectedAt: number[] = [];
    const back = fleet.map((node, i) =>
      nextEvent(node, "connected", (event) => event.reconnects === 1, 15_000).then(() => {
        reconnectedAt[i] = performance.now();
      }),
    );
    await registry.start();
    await Promise.all(back);

    expect(fleet.map((node) => node.workerId)).toEqual(ids);
    const times = [...reconnectedAt].sort((a, b) => a - b);
    const spreadMs = times[times.length - 1]! - times[0]!;
    // The first retry alone is drawn from a 1000 ms window; without jitter all
    // thirty would return within a few milliseconds of each other.
    expect(spreadMs).toBeGreaterThan(150);
    expect(largestBurst(times, 30)).toBeLessThanOrEqual(count / 3);
  });
});

describe("WorkerNode.runTask", () => {
  it("counts the task while it runs and records a success with the measured duration", async () => {
    const registry = await startRegistry();
    let now = 1000;
    const node = createNode(registry, { clock: () => now });
    const admin = adminClient(registry);
    const { id } = await node.start();
    const result = await node.runTask(async () => {
      expect((await admin.getWorker(id)).currentTasks).toBe(1);
      now += 1234;
      return "done";
    });
    expect(result).toBe("done");
    const worker = await admin.getWorker(id);
    expect(worker.currentTasks).toBe(0);
    expect(worker.metrics).toEqual({ tasksCompleted: 1, tasksFailedCount: 0, averageTaskDuration: 1234 });
  });

  it("records a failure, always lowers the count, and rethrows the task's own error", async () => {
    const registry = await startRegistry();
    let now = 0;
    const node = createNode(registry, { clock: () => now });
    const admin = adminClient(registry);
    const { id } = await node.start();
    const boom = new Error("task exploded");
    await expect(
      node.runTask(() => {
        now += 300;
        throw boom;
      }),
    ).rejects.toBe(boom);
    const worker = await admin.getWorker(id);
    expect(worker.currentTasks).toBe(0);
    expect(worker.metrics).toEqual({ tasksCompleted: 0, tasksFailedCount: 1, averageTaskDuration: 300 });
  });

  it("does not run a task the worker has no room for", async () => {
    const registry = await startRegistry();
    const node = createNode(registry, { registration: { ...registration, maxConcurrentTasks: 1 } });
    await node.start();
    let finishFirst!: () => void;
    let firstRunning!: () => void;
    const running = new Promise<void>((resolve) => (firstRunning = resolve));
    const first = node.runTask(
      () =>
        new Promise<void>((resolve) => {
          finishFirst = resolve;
          firstRunning();
        }),
    );
    await running;
    let secondRan = false;
    const error = await node
      .runTask(() => {
        secondRan = true;
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(RegistryClientError);
    expect((error as RegistryClientError).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(secondRan).toBe(false);
    finishFirst();
    await first;
    expect((await adminClient(registry).getWorker(node.workerId!)).currentTasks).toBe(0);
  });
});

describe("WorkerNode.stop", () => {
  it("unregisters the worker and closes the stream the server sees", async () => {
    const registry = await startRegistry();
    const node = createNode(registry);
    const connected = nextEvent(node, "connected");
    const { id } = await node.start();
    await connected;
    const stopped = nextEvent(node, "stopped");
    await node.stop();
    expect(await stopped).toEqual({ workerId: id });
    expect(node.state).toBe("stopped");
    await expect(adminClient(registry).getWorker(id)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(node.stop()).resolves.toBeUndefined();
    await expect(node.runTask(() => 1)).rejects.toThrow(/running node/);
  });

  it("lets a task that outlives drainTimeoutMs finish with its result, though its record is gone", async () => {
    const registry = await startRegistry();
    const node = createNode(registry);
    const { id } = await node.start();
    let finishTask!: (value: string) => void;
    let taskRunning!: () => void;
    const running = new Promise<void>((resolve) => (taskRunning = resolve));
    const task = node.runTask(
      () =>
        new Promise<string>((resolve) => {
          finishTask = resolve;
          taskRunning();
        }),
    );
    await running;
    await node.stop({ drainTimeoutMs: 50 });
    await expect(adminClient(registry).getWorker(id)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    finishTask("late result");
    await expect(task).resolves.toBe("late result");
  });

  it("stops cleanly while the registry is down, without reconnecting afterwards", async () => {
    const registry = await startRegistry(100);
    const node = createNode(registry);
    const connected = nextEvent(node, "connected");
    await node.start();
    await connected;
    const lost = nextEvent(node, "reconnecting");
    await registry.stop();
    await lost;
    const drained = nextEvent(node, "drained");
    const error = await node.stop().then(
      () => undefined,
      (e: unknown) => e,
    );
    // The registry cannot be told, and stop() says so; everything else is released.
    expect(error).toBeInstanceOf(RegistryClientError);
    expect((error as RegistryClientError).code).toBe(grpc.status.UNAVAILABLE);
    expect(node.state).toBe("stopped");
    // With nothing running, the drain the registry could not be told of ended at once.
    expect(await drained).toMatchObject({ reason: "drained", runningTasks: 0 });
    const reconnects: unknown[] = [];
    node.on("reconnecting", (event) => reconnects.push(event));
    // Longer than any reconnect delay this node can draw (reconnectMaxMs 400): a timer left behind would have fired.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(reconnects).toEqual([]);
  });
});

/** The most timestamps that fall within any window of `windowMs`. */
function largestBurst(sortedTimes: readonly number[], windowMs: number): number {
  let best = 0;
  let start = 0;
  for (let end = 0; end < sortedTimes.length; end += 1) {
    while (sortedTimes[end]! - sortedTimes[start]! > windowMs) start += 1;
    best = Math.max(best, end - start + 1);
  }
  return best;
}
