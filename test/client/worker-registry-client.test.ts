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
  const addresses: string[] = [];
  const client = new WorkerRegistryClient({
    ...options,
    retry: options.retry === false ? false : { sleep: async (ms) => void sleeps.push(ms), random: () => 0.5, ...options.retry },
    callMetadata: ({ method, address }) => {
      calls.push(method);
      addresses.push(address);
      const metadata = new grpc.Metadata();
      metadata.set("authorization", "Bearer test");
      return metadata;
    },
  });
  clients.push(client);
  return { client, sleeps, calls, addresses };
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
    // Each sets a state; draining again keeps the earlier deadline.
    ["cordonWorker", (c: WorkerRegistryClient) => c.cordonWorker("worker-1-abc")],
    ["uncordonWorker", (c: WorkerRegistryClient) => c.uncordonWorker("worker-1-abc")],
    ["drainWorker", (c: WorkerRegistryClient) => c.drainWorker("worker-1-abc", { graceMs: 60_000 })],
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

describe("several addresses", () => {
  it("retries an idempotent read on the next address each time, round the list", async () => {
    const [a, b, c] = [await refusedAddress(), await refusedAddress(), await refusedAddress()];
    const { client, addresses, sleeps } = recordingClient({
      addresses: [a, b, c],
      addressOrder: "as-given",
      retry: { maxAttempts: 4, baseMs: 100, maxMs: 300 },
    });
    const error = await failure(client.getRegistryStats());
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(addresses).toEqual([a, b, c, a]);
    // The same jittered waits as with one address.
    expect(sleeps).toEqual([50, 100, 150]);
  });

  it("tries every address when there are more than the default four attempts", async () => {
    const five = [await refusedAddress(), await refusedAddress(), await refusedAddress(), await refusedAddress(), await refusedAddress()];
    const { client, addresses } = recordingClient({ addresses: five, addressOrder: "as-given" });
    await failure(client.getWorker("worker-1-abc"));
    expect(addresses).toEqual(five);
  });

  it("fails a write once, and sends the next call to another address", async () => {
    const [a, b] = [await refusedAddress(), await refusedAddress()];
    const { client, addresses, calls } = recordingClient({ addresses: [a, b], addressOrder: "as-given", retry: { maxAttempts: 5 } });
    expect((await failure(client.updateTaskCount("worker-1-abc", 1))).code).toBe(grpc.status.UNAVAILABLE);
    expect(client.address).toBe(b);
    expect((await failure(client.recordTaskCompletion("worker-1-abc", true, 5))).code).toBe(grpc.status.UNAVAILABLE);
    expect(calls).toEqual(["updateTaskCount", "recordTaskCompletion"]);
    expect(addresses).toEqual([a, b]);
  });

  it("leaves a replica that takes calls and never answers: the next call goes elsewhere", async () => {
    const [hung, other] = [await silentAddress(), await refusedAddress()];
    const { client, addresses, sleeps } = recordingClient({ addresses: [hung, other], addressOrder: "as-given", deadlineMs: 150 });
    // A deadline is not retried (the replica may still be working on it)...
    expect((await failure(client.getWorker("worker-1-abc"))).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(sleeps).toEqual([]);
    // ...but the replica is left behind.
    expect(client.address).toBe(other);
    await failure(client.getWorker("worker-1-abc"));
    expect(addresses.slice(0, 2)).toEqual([hung, other]);
  });

  it("does not move for an answer about the request itself", async () => {
    const [a, b] = [await refusedAddress(), await refusedAddress()];
    const client = new WorkerRegistryClient({
      addresses: [a, b],
      addressOrder: "as-given",
      callMetadata: () => Promise.reject(new Error("token expired")),
    });
    clients.push(client);
    expect((await failure(client.getWorker("worker-1-abc"))).code).toBe(grpc.status.INTERNAL);
    expect(client.address).toBe(a);
  });

  it("shuffles the addresses with the random source it is given, and lists them all", () => {
    const client = new WorkerRegistryClient({ addresses: ["a:1", "b:1", "c:1"], random: () => 0 });
    clients.push(client);
    // Fisher–Yates from the end with draws of 0: [a, b, c] -> [c, b, a] -> [b, c, a].
    expect(client.addresses).toEqual(["b:1", "c:1", "a:1"]);
    expect(client.address).toBe("b:1");
  });

  it("refuses addresses it cannot use, before any call", () => {
    expect(() => new WorkerRegistryClient({ addresses: [] })).toThrow(/addresses must list at least one registry/);
    expect(() => new WorkerRegistryClient({ address: "a:1,b:1" })).toThrow(/use addresses/);
    expect(() => new WorkerRegistryClient({ address: "a:1", addresses: ["b:1"] })).toThrow(/not both/);
    expect(() => new WorkerRegistryClient({ addresses: ["a:1"], addressOrder: "nearest" as never })).toThrow(
      `addressOrder must be 'shuffled' or 'as-given', got "nearest"`,
    );
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

  it("refuses a drain grace that is not a number of milliseconds before calling", async () => {
    const { client, calls } = recordingClient({ address: await refusedAddress() });
    await expect(client.drainWorker("worker-1-abc", { graceMs: Number.NaN })).rejects.toThrow(/graceMs must be a finite number/);
    await expect(client.drainWorker("worker-1-abc", { graceMs: Infinity })).rejects.toThrow(RangeError);
    expect(calls).toEqual([]);
  });

  it("refuses a capacity condition on a watch, which changes with nearly every event", () => {
    const { client } = recordingClient({ address: "127.0.0.1:1" });
    expect(() => client.watchWorkers({ minAvailableCapacity: 1 } as never)).toThrow(/cannot filter on minAvailableCapacity/);
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

  it("reads why a worker left from the registry's trailer, and nothing from a status without it", () => {
    const notFound = (reason?: string) => {
      const metadata = new grpc.Metadata();
      if (reason !== undefined) metadata.set("sentinel-removal-reason", reason);
      return RegistryClientError.from("heartbeatStream", { code: grpc.status.NOT_FOUND, details: "worker worker-1-abc not found", metadata });
    };
    expect(notFound("drained").removalReason).toBe("drained");
    expect(notFound("drain_deadline").removalReason).toBe("drain-deadline");
    expect(notFound("expired").removalReason).toBe("expired");
    expect(notFound("a-reason-from-the-future").removalReason).toBeUndefined();
    expect(notFound().removalReason).toBeUndefined();
  });

  it("names the method and status when the server sent no details", () => {
    const error = new RegistryClientError("getWorker", grpc.status.UNAVAILABLE, "");
    expect(error.message).toBe("getWorker failed with UNAVAILABLE");
  });
});
