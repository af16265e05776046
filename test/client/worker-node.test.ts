import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  RegisterWorkerResponseSchema,
  UnregisterWorkerResponseSchema,
  WorkerRegistryService,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { WorkerSchema } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { nextEvent } from "./events.js";

const registration = { nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 };

// No server: what a WorkerNode refuses before it ever talks to one.
describe("WorkerNode without a registry", () => {
  it("refuses timings that cannot work", () => {
    expect(() => new WorkerNode({ registration, heartbeatIntervalMs: 0 })).toThrow(/heartbeatIntervalMs must be > 0/);
    expect(() => new WorkerNode({ registration, replyTimeoutMs: -1 })).toThrow(/replyTimeoutMs/);
    expect(() => new WorkerNode({ registration, reconnectBaseMs: 0 })).toThrow(/reconnectBaseMs/);
    expect(() => new WorkerNode({ registration, reconnectBaseMs: 1000, reconnectMaxMs: 10 })).toThrow(/reconnectMaxMs must be >= reconnectBaseMs/);
    expect(() => new WorkerNode({ registration, drainTimeoutMs: -1 })).toThrow(/drainTimeoutMs must be a finite number >= 0/);
  });

  it("refuses a stop() drain timeout that cannot work, and stays as it was", async () => {
    const node = new WorkerNode({ registration });
    await expect(node.stop({ drainTimeoutMs: Number.NaN })).rejects.toThrow(RangeError);
    expect(node.state).toBe("idle");
    await node.stop();
    expect(node.state).toBe("stopped");
  });

  it("runs no task before it is started", async () => {
    const node = new WorkerNode({ registration });
    let ran = false;
    await expect(node.runTask(() => (ran = true))).rejects.toThrow(/needs a running node, but it is idle/);
    expect(ran).toBe(false);
    await node.stop();
  });

  it("stops without having started, and cannot start afterwards", async () => {
    const node = new WorkerNode({ registration });
    const events: unknown[] = [];
    node.on("stopped", (event) => events.push(event));
    await node.stop();
    expect(node.state).toBe("stopped");
    expect(events).toEqual([{ workerId: null }]);
    await expect(node.start()).rejects.toThrow(/needs an idle node, but it is stopped/);
  });

  it("leaves a client it was given open", async () => {
    const client = new WorkerRegistryClient({ address: "127.0.0.1:1", retry: false });
    const node = new WorkerNode({ registration, client });
    await node.stop();
    // A closed client would reject with CANCELLED before trying the network.
    await expect(client.getRegistryStats()).rejects.toMatchObject({ codeName: "UNAVAILABLE" });
    client.close();
  });
});

describe("WorkerNode against a registry that stops answering heartbeats", () => {
  it("gives the silent stream up after replyTimeoutMs and opens a new one", async () => {
    // A stand-in for a hung registry: it registers workers and accepts
    // heartbeat streams, but never replies on them.
    const server = new grpc.Server();
    const streams: grpc.ServerDuplexStream<unknown, unknown>[] = [];
    const worker = create(WorkerSchema, { id: "worker-1767268800123-abc123xyz", nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 });
    server.addService(grpcServiceDefinition(WorkerRegistryService), {
      registerWorker: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, create(RegisterWorkerResponseSchema, { worker })),
      unregisterWorker: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, create(UnregisterWorkerResponseSchema)),
      heartbeatStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        streams.push(call);
        call.on("error", () => undefined);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const node = new WorkerNode({ registration, clientOptions: { address: `127.0.0.1:${port}` }, replyTimeoutMs: 100, reconnectBaseMs: 20 });
    try {
      const givenUp = nextEvent(node, "reconnecting");
      await node.start();
      const { error, attempt } = await givenUp;
      expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(error.message).toBe("no heartbeat reply within 100ms");
      expect(attempt).toBe(1);
      // Unanswered again, the next give-up counts as a second consecutive failure.
      expect((await nextEvent(node, "reconnecting")).attempt).toBe(2);
      expect(streams.length).toBeGreaterThanOrEqual(2);
    } finally {
      await node.stop();
      server.forceShutdown();
    }
  });
});
