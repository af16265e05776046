import * as grpc from "@grpc/grpc-js";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import type { WorkerRegistryClientOptions } from "../../clients/typescript/src/client-options.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";

// No registry here: a port nobody listens on gives UNAVAILABLE, a socket that
// never speaks HTTP/2 gives a deadline. The real server is in the
// *.integration tests.

const clients: WorkerRegistryClient[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A loopback port that refuses connections: bound once, then released. */
async function refusedAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

/** A TCP listener that accepts and then says nothing. */
async function silentAddress(): Promise<string> {
  const server = createServer((socket) => sockets.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

function recordingClient(options: WorkerRegistryClientOptions) {
  const sleeps: number[] = [];
  const calls: string[] = [];
  const client = new WorkerRegistryClient({
    ...options,
    retry: options.retry === false ? false : { sleep: async (ms) => void sleeps.push(ms), random: () => 0.5, ...options.retry },
    callMetadata: ({ method }) => {
      calls.push(method);
      const metadata = new grpc.Metadata();
      metadata.set("authorization", "Bearer test");
      return metadata;
    },
  });
  clients.push(client);
  return { client, sleeps, calls };
}

async function failure(promise: Promise<unknown>): Promise<RegistryClientError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(RegistryClientError);
    return error as RegistryClientError;
  }
  throw new Error("expected the call to fail");
}

describe("retries", () => {
  it("retries an idempotent read on UNAVAILABLE with growing, jittered waits, then gives up with the last error", async () => {
    const { client, sleeps, calls } = recordingClient({
      address: await refusedAddress(),
      retry: { maxAttempts: 4, baseMs: 100, maxMs: 300 },
    });
    const error = await failure(client.getWorker("worker-1-abc"));
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(error.method).toBe("getWorker");
    // random() = 0.5 of ceilings 100, 200, 300 (capped).
    expect(sleeps).toEqual([50, 100, 150]);
    expect(calls).toEqual(["getWorker", "getWorker", "getWorker", "getWorker"]);
  });

  it.each([
    ["getWorker", (c: WorkerRegistryClient) => c.getWorker("worker-1-abc")],
    ["discoverWorkers", (c: WorkerRegistryClient) => c.discoverWorkers()],
    ["getWorkersForLoadBalancing", (c: WorkerRegistryClient) => c.getWorkersForLoadBalancing()],
    ["getRegistryStats", (c: WorkerRegistryClient) => c.getRegistryStats()],
    // Idempotent by contract: a repeat changes nothing, so a lost reply must not hold the slot until it expires.
    ["releaseWorker", (c: WorkerRegistryClient) => c.releaseWorker("rsv-1-abc", { success: true, durationMs: 1 })],
  ])("retries the idempotent call %s", async (method, call) => {
    const { client, calls } = recordingClient({ address: await refusedAddress(), retry: { maxAttempts: 3 } });
    await failure(call(client));
    expect(calls).toEqual([method, method, method]);
  });

  it.each([
    ["registerWorker", (c: WorkerRegistryClient) => c.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 })],
    ["unregisterWorker", (c: WorkerRegistryClient) => c.unregisterWorker("worker-1-abc")],
    ["heartbeat", (c: WorkerRegistryClient) => c.heartbeat("worker-1-abc")],
    ["updateTaskCount", (c: WorkerRegistryClient) => c.updateTaskCount("worker-1-abc", 1)],
    ["recordTaskCompletion", (c: WorkerRegistryClient) => c.recordTaskCompletion("worker-1-abc", true, 10)],
    // A repeat after a lost reply would take a second slot.
    ["acquireWorker", (c: WorkerRegistryClient) => c.acquireWorker({ capabilities: ["coder"] })],
  ])("never retries the write %s, which might have happened", async (method, call) => {
    const { client, sleeps, calls } = recordingClient({ address: await refusedAddress(), retry: { maxAttempts: 5 } });
    const error = await failure(call(client));
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(calls).toEqual([method]);
    expect(sleeps).toEqual([]);
  });

  it("makes one attempt when retries are off", async () => {
    const { client, calls } = recordingClient({ address: await refusedAddress(), retry: false });
    await failure(client.getRegistryStats());
    expect(calls).toEqual(["getRegistryStats"]);
  });

  it("does not retry a deadline: the server may still be working on the first attempt", async () => {
    const { client, sleeps } = recordingClient({ address: await silentAddress(), deadlineMs: 150 });
    const startedAt = performance.now();
    const error = await failure(client.getWorker("worker-1-abc"));
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(140);
    expect(sleeps).toEqual([]);
  });
});

describe("errors and lifecycle", () => {
  it("fails the call with the metadata hook's own error", async () => {
    const client = new WorkerRegistryClient({
      address: await refusedAddress(),
      callMetadata: () => Promise.reject(new Error("token expired")),
    });
    clients.push(client);
    const error = await failure(client.getWorker("worker-1-abc"));
    expect(error.message).toBe("token expired");
    expect(error.code).toBe(grpc.status.INTERNAL);
  });

  it("rejects calls after close() with CANCELLED instead of hanging", async () => {
    const client = new WorkerRegistryClient({ address: await refusedAddress() });
    client.close();
    client.close();
    const error = await failure(client.getWorker("worker-1-abc"));
    expect(error.code).toBe(grpc.status.CANCELLED);
    expect(error.message).toMatch(/closed/);
  });

  it("refuses an unknown health name before calling", async () => {
    const { client, calls } = recordingClient({ address: await refusedAddress() });
    await expect(client.discoverWorkers({ healthStatus: ["sick" as never] })).rejects.toThrow(RangeError);
    expect(calls).toEqual([]);
  });

  it("refuses options outside their range", () => {
    expect(() => new WorkerRegistryClient({ deadlineMs: 0 })).toThrow(/deadlineMs/);
    expect(() => new WorkerRegistryClient({ discoverPageSize: 10_001 })).toThrow(/discoverPageSize/);
    expect(() => new WorkerRegistryClient({ retry: { maxAttempts: 0 } })).toThrow(/maxAttempts/);
    expect(() => new WorkerRegistryClient({ retry: { baseMs: 10, maxMs: 5 } })).toThrow(/baseMs <= maxMs/);
  });

  it("keeps the server's details as the message and the status as code", () => {
    const error = RegistryClientError.from("heartbeat", {
      code: grpc.status.NOT_FOUND,
      details: "worker worker-1-abc not found",
      metadata: new grpc.Metadata(),
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe("worker worker-1-abc not found");
    expect(error.message.includes("not found")).toBe(true);
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.codeName).toBe("NOT_FOUND");
    expect(error.name).toBe("RegistryClientError");
  });

  it("names the method and status when the server sent no details", () => {
    const error = new RegistryClientError("getWorker", grpc.status.UNAVAILABLE, "");
    expect(error.message).toBe("getWorker failed with UNAVAILABLE");
  });
});
