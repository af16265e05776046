import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import { useTestRegistry } from "./registry-server.js";

const harness = useTestRegistry();
const connect = harness.connect;

async function rejection(promise: Promise<unknown>): Promise<RegistryClientError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(RegistryClientError);
    return error as RegistryClientError;
  }
  throw new Error("expected the call to fail");
}

describe("WorkerRegistryClient against a real server", () => {
  it("registers a worker and returns it in the guide's shape", async () => {
    const before = Date.now();
    const worker = await connect().registerWorker({ nodeId: "worker-node-1", capabilities: ["coder", "tester", "reviewer"], maxConcurrentTasks: 5 });
    expect(worker.id).toMatch(/^worker-\d+-[a-z0-9]+$/);
    expect(worker).toMatchObject({
      nodeId: "worker-node-1",
      capabilities: ["coder", "tester", "reviewer"],
      healthStatus: "healthy",
      currentTasks: 0,
      maxConcurrentTasks: 5,
      availableCapacity: 5,
      metrics: { tasksCompleted: 0, tasksFailedCount: 0, averageTaskDuration: 0 },
    });
    expect(worker.registeredAt).toBeInstanceOf(Date);
    expect(worker.registeredAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(worker.lastHeartbeatAt.getTime()).toBeGreaterThanOrEqual(worker.registeredAt.getTime());
  });

  it("counts tasks and records completions as the guide's sections 4 and 5 describe", async () => {
    const client = connect();
    const { id } = await client.registerWorker({ nodeId: "coder-1", capabilities: ["coder"], maxConcurrentTasks: 5 });
    expect((await client.updateTaskCount(id, 1)).currentTasks).toBe(1);
    expect((await client.updateTaskCount(id, -1)).currentTasks).toBe(0);
    await client.recordTaskCompletion(id, true, 5000);
    const worker = await client.recordTaskCompletion(id, false, 3000);
    expect(worker.metrics).toEqual({ tasksCompleted: 1, tasksFailedCount: 1, averageTaskDuration: 4000 });
    expect(worker.successRate).toBe(0.5);
    const heartbeat = await client.heartbeat(id);
    expect(heartbeat.healthStatus).toBe("healthy");
    expect(await client.getWorker(id)).toMatchObject({ id, metrics: { tasksCompleted: 1, tasksFailedCount: 1 } });
  });

  it("rejects an unknown worker with NOT_FOUND and a message that includes 'not found', as the guide's error handling expects", async () => {
    const client = connect();
    const { id } = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 });
    await client.unregisterWorker(id);
    for (const call of [client.heartbeat(id), client.getWorker(id), client.updateTaskCount(id, 1), client.unregisterWorker(id)]) {
      const error = await rejection(call);
      expect(error.code).toBe(grpc.status.NOT_FOUND);
      expect(error.message.includes("not found")).toBe(true);
      expect(error.message).toContain(id);
    }
  });

  it("passes on the server's reasons for refusing a request", async () => {
    const client = connect();
    const invalid = await rejection(client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 0 }));
    expect(invalid.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(invalid.message).toContain("max_concurrent_tasks");
    const { id } = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 });
    await client.updateTaskCount(id, 1);
    const full = await rejection(client.updateTaskCount(id, 1));
    expect(full.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await client.getWorker(id)).currentTasks).toBe(1);
  });

  it("follows page tokens so discoverWorkers returns every match", async () => {
    const client = connect({ discoverPageSize: 2 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      ids.push((await client.registerWorker({ nodeId: `node-${i}`, capabilities: ["coder"], maxConcurrentTasks: 3 })).id);
    }
    await client.registerWorker({ nodeId: "reviewer", capabilities: ["reviewer"], maxConcurrentTasks: 3 });
    const coders = await client.discoverWorkers({ capabilities: ["coder"] });
    expect(coders.map((w) => w.id)).toEqual([...ids].sort());
    expect(await client.discoverWorkers()).toHaveLength(6);
  });

  it("filters by capability, health and free capacity", async () => {
    const client = connect();
    const busy = await client.registerWorker({ nodeId: "busy", capabilities: ["coder", "tester"], maxConcurrentTasks: 2 });
    await client.updateTaskCount(busy.id, 1);
    const idle = await client.registerWorker({ nodeId: "idle", capabilities: ["coder"], maxConcurrentTasks: 4 });
    const coders = await client.discoverWorkers({ capabilities: ["coder"], healthStatus: ["healthy"], minAvailableCapacity: 2 });
    expect(coders.map((w) => w.id)).toEqual([idle.id]);
    expect(await client.discoverWorkers({ healthStatus: ["degraded", "unhealthy"] })).toEqual([]);
    expect((await client.discoverWorkers({ capabilities: ["coder", "tester"] })).map((w) => w.nodeId)).toEqual(["busy"]);
  });

  it("ranks workers by priority and honours the limit", async () => {
    const client = connect();
    const a = await client.registerWorker({ nodeId: "a", capabilities: ["coder"], maxConcurrentTasks: 10 });
    const b = await client.registerWorker({ nodeId: "b", capabilities: ["coder"], maxConcurrentTasks: 5 });
    for (let i = 0; i < 2; i += 1) await client.updateTaskCount(a.id, 1);
    await client.updateTaskCount(b.id, 1);
    await client.recordTaskCompletion(b.id, true, 3000);
    await client.recordTaskCompletion(a.id, false, 5000);
    const ranked = await client.getWorkersForLoadBalancing({ capabilities: ["coder"], minAvailableCapacity: 1 });
    expect(ranked.map((w) => w.nodeId)).toEqual(["b", "a"]);
    const best = ranked[0]!;
    expect(best.priority).toBeCloseTo(0.5 * best.capacityScore + 0.3 * best.successScore + 0.2 * best.speedScore, 10);
    expect(best.capacityScore).toBeCloseTo(0.8, 10);
    expect(best.availableCapacity).toBe(4);
    expect(await client.getWorkersForLoadBalancing({}, { limit: 1 })).toHaveLength(1);
  });

  it("summarises the fleet", async () => {
    const client = connect();
    const a = await client.registerWorker({ nodeId: "a", capabilities: ["coder"], maxConcurrentTasks: 10 });
    await client.registerWorker({ nodeId: "b", capabilities: ["coder"], maxConcurrentTasks: 5 });
    await client.updateTaskCount(a.id, 3);
    await client.recordTaskCompletion(a.id, true, 10);
    await client.recordTaskCompletion(a.id, true, 10);
    await client.recordTaskCompletion(a.id, false, 10);
    const stats = await client.getRegistryStats();
    expect(stats).toMatchObject({
      totalWorkers: 2,
      healthyWorkers: 2,
      degradedWorkers: 0,
      unhealthyWorkers: 0,
      totalCapacity: 15,
      usedCapacity: 3,
      availableCapacity: 12,
      tasksCompleted: 2,
      tasksFailed: 1,
    });
    expect(stats.successRate).toBeCloseTo(2 / 3, 10);
    expect(stats.serverTime).toBeInstanceOf(Date);
  });

  it("asks callMetadata for every call, with the method and its path", async () => {
    const seen: string[] = [];
    const client = connect({
      callMetadata: ({ method, path }) => {
        seen.push(`${method} ${path}`);
        const metadata = new grpc.Metadata();
        metadata.set("authorization", "Bearer later-issue");
        return metadata;
      },
    });
    await client.getRegistryStats();
    expect(seen).toEqual(["getRegistryStats /sentinel.registry.v1.WorkerRegistryService/GetRegistryStats"]);
  });
});

describe("retries across a restart", () => {
  it("a read issued while the registry is down succeeds once it is back", async () => {
    const writer = connect();
    const { id } = await writer.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 });
    writer.close();
    await harness.registry.stop();
    const waits: number[] = [];
    const reader = connect({
      // The channel's own reconnect backoff must not outlast the test's waits.
      channelOptions: { "grpc.initial_reconnect_backoff_ms": 20, "grpc.max_reconnect_backoff_ms": 50 },
      retry: {
        maxAttempts: 20,
        random: () => 0.5,
        sleep: async (ms) => {
          waits.push(ms);
          // The registry comes back during the first wait; later waits are real.
          if (!harness.registry.running) await harness.registry.start();
          else await new Promise((resolve) => setTimeout(resolve, ms));
        },
      },
    });
    const worker = await reader.getWorker(id);
    expect(worker.id).toBe(id);
    expect(waits.length).toBeGreaterThanOrEqual(1);
  });
});
