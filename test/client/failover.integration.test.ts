import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRegistryClientOptions } from "../../clients/typescript/src/client-options.js";
import { RegisterWorkerResponseSchema, WorkerRegistryService } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { WorkerSchema } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";
import type { WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import type { WorkerNodeOptions } from "../../clients/typescript/src/worker-node-options.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import type { WatchReconnectingEvent } from "../../clients/typescript/src/worker-watch.js";
import { startServerProcess } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import { nextEvent } from "./events.js";
import { TestRegistry } from "./registry-server.js";
import { Gate, nextWithin } from "./watch-helpers.js";

// A client given several addresses, against real registry servers. There is
// no shared PostgreSQL here, so each server is an independent registry with
// its own SQLite file: a worker known to one is unknown to the others. To
// show what replicas of one database give (the same worker id, the same
// revisions on another address), one server stops and starts again with its
// database on the other port the client lists.

const registration = { nodeId: "coder-node-1", capabilities: ["coder"], maxConcurrentTasks: 4 };

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const dirs = tempDirs();
afterEach(() => dirs.cleanup());

async function startRegistry(heartbeatIntervalMs = 100): Promise<TestRegistry> {
  const registry = await TestRegistry.start({ heartbeatIntervalMs });
  cleanups.push(() => registry.dispose());
  return registry;
}

function connect(options: WorkerRegistryClientOptions): WorkerRegistryClient {
  const client = new WorkerRegistryClient({ retry: { baseMs: 20, maxMs: 50 }, ...options });
  cleanups.push(() => client.close());
  return client;
}

/** Every address each attempt of `client`'s calls went to, in order. */
function recordAddresses(options: WorkerRegistryClientOptions): { client: WorkerRegistryClient; attempts: string[] } {
  const attempts: string[] = [];
  const client = connect({ ...options, callMetadata: ({ address }) => void attempts.push(address) });
  return { client, attempts };
}

function createNode(options: Partial<WorkerNodeOptions> & { clientOptions: WorkerRegistryClientOptions }): WorkerNode {
  const node = new WorkerNode({ registration, reconnectBaseMs: 50, reconnectMaxMs: 200, ...options });
  cleanups.push(() => node.stop().catch(() => undefined));
  return node;
}

describe("a client with several addresses, when the replica it uses stops", () => {
  it("goes on reading from another address", async () => {
    const [a, b] = [await startRegistry(), await startRegistry()];
    const { client, attempts } = recordAddresses({ addresses: [a.address, b.address], addressOrder: "as-given" });
    const worker = await client.registerWorker(registration);
    expect((await connect({ address: a.address }).getWorker(worker.id)).id).toBe(worker.id);

    await a.stop();
    attempts.length = 0;
    // Answered by b, which never heard of the worker a had.
    expect((await client.getRegistryStats()).totalWorkers).toBe(0);
    expect(attempts).toEqual([a.address, b.address]);
    expect(client.address).toBe(b.address);
    expect(await client.discoverWorkers()).toEqual([]);
  });

  it("fails the write in flight once, and sends the next write to a live address", async () => {
    const [a, b] = [await startRegistry(), await startRegistry()];
    const { client, attempts } = recordAddresses({ addresses: [a.address, b.address], addressOrder: "as-given" });
    await client.getRegistryStats();

    await a.stop();
    attempts.length = 0;
    await expect(client.registerWorker(registration)).rejects.toMatchObject({ codeName: "UNAVAILABLE" });
    // Not retried: it might have happened.
    expect(attempts).toEqual([a.address]);

    const worker = await client.registerWorker(registration);
    expect(attempts).toEqual([a.address, b.address]);
    const onB = connect({ address: b.address });
    expect(await onB.getWorker(worker.id)).toMatchObject(registration);
    expect((await onB.getRegistryStats()).totalWorkers).toBe(1);
  });

  it("uses a replica that came back at once, though its channel was in reconnect backoff", async () => {
    const [a, b] = [await startRegistry(), await startRegistry()];
    const { client, attempts } = recordAddresses({
      addresses: [a.address, b.address],
      addressOrder: "as-given",
      retry: false,
      // Long enough that only a fresh channel can reach a before the test ends.
      channelOptions: { "grpc.initial_reconnect_backoff_ms": 60_000, "grpc.max_reconnect_backoff_ms": 60_000 },
    });
    await client.getRegistryStats();
    await a.stop();
    await expect(client.getRegistryStats()).rejects.toMatchObject({ codeName: "UNAVAILABLE" });
    await client.getRegistryStats();

    await a.start();
    await b.stop();
    await expect(client.getRegistryStats()).rejects.toMatchObject({ codeName: "UNAVAILABLE" });
    attempts.length = 0;
    await client.getRegistryStats();
    expect(attempts).toEqual([a.address]);
  });
});

describe("a gRPC target that names several addresses", () => {
  it("is passed to grpc-js as it is, whose pick_first moves to a live address", async () => {
    const [a, b] = [await startRegistry(), await startRegistry()];
    const target = `ipv4:127.0.0.1:${a.port},127.0.0.1:${b.port}`;
    const client = connect({ address: target });
    expect(client.addresses).toEqual([target]);
    const first = await client.registerWorker(registration);
    // pick_first tries the addresses in order, but a slow connect lets the next one win.
    const [served, other] = (await connect({ address: a.address }).getRegistryStats()).totalWorkers === 1 ? [a, b] : [b, a];

    await served.stop();
    expect((await client.getRegistryStats()).totalWorkers).toBe(0);
    const second = await client.registerWorker(registration);
    const onOther = connect({ address: other.address });
    expect((await onOther.discoverWorkers()).map((w) => w.id)).toEqual([second.id]);
    expect(second.id).not.toBe(first.id);
    expect(client.address).toBe(target);
  });
});

describe("WorkerNode with several addresses", () => {
  it("reopens its stream on another replica with the same id when that replica knows the worker", async () => {
    const a = await startRegistry();
    // Holds the second port until a's database moves onto it.
    const placeholder = await startRegistry();
    const secondPort = placeholder.port;
    const secondAddress = placeholder.address;
    const node = createNode({ clientOptions: { addresses: [a.address, secondAddress], addressOrder: "as-given" } });
    const reregistered: unknown[] = [];
    node.on("reregistered", (event) => reregistered.push(event));
    const firstConnect = nextEvent(node, "connected");
    const worker = await node.start();
    expect(await firstConnect).toEqual({ workerId: worker.id, reconnects: 0, address: a.address });

    await placeholder.stop();
    const lost = nextEvent(node, "reconnecting");
    const back = nextEvent(node, "connected", (event) => event.reconnects === 1);
    await a.stop();
    expect((await lost).error.code).toBe(grpc.status.UNAVAILABLE);
    // The same database, now served on the other address: what a second replica would be.
    await a.start(secondPort);

    expect(await back).toEqual({ workerId: worker.id, reconnects: 1, address: secondAddress });
    await nextEvent(node, "heartbeat");
    expect(node.workerId).toBe(worker.id);
    expect(node.address).toBe(secondAddress);
    expect(reregistered).toEqual([]);
    expect(await connect({ address: secondAddress }).getWorker(worker.id)).toMatchObject({ ...registration, healthStatus: "healthy" });
  });

  it("reopens its stream on another replica, and registers again there when that replica does not know the worker", async () => {
    const [a, b] = [await startRegistry(), await startRegistry()];
    const node = createNode({ clientOptions: { addresses: [a.address, b.address], addressOrder: "as-given" } });
    const firstConnect = nextEvent(node, "connected");
    const original = await node.start();
    await firstConnect;

    const reregistered = nextEvent(node, "reregistered");
    const back = nextEvent(node, "connected", (event) => event.reconnects === 1);
    await a.stop();
    const { previousId, workerId } = await reregistered;
    expect(previousId).toBe(original.id);
    expect((await back).address).toBe(b.address);
    const onB = connect({ address: b.address });
    expect(await onB.getWorker(workerId)).toMatchObject({ ...registration, healthStatus: "healthy" });
    expect((await onB.getRegistryStats()).totalWorkers).toBe(1);
  });

  it("leaves a replica that takes heartbeats and never answers them", async () => {
    const hung = await startHungRegistry();
    const b = await startRegistry();
    const node = createNode({ replyTimeoutMs: 100, clientOptions: { addresses: [hung.address, b.address], addressOrder: "as-given" } });
    const givenUp = nextEvent(node, "reconnecting");
    const reregistered = nextEvent(node, "reregistered");
    const connected = nextEvent(node, "connected");
    await node.start();

    expect((await givenUp).error.message).toBe("no heartbeat reply within 100ms");
    // b never heard of the id the hung replica handed out.
    expect((await reregistered).previousId).toBe(hung.workerId);
    const { address, workerId } = await connected;
    expect(address).toBe(b.address);
    expect((await connect({ address: b.address }).getWorker(workerId)).healthStatus).toBe("healthy");
    expect(hung.streams()).toBe(1);
  });
});

describe("watchWorkers with several addresses", () => {
  it("resumes on another address from the last revision + 1: what happened meanwhile, nothing repeated or skipped", async () => {
    const a = await startRegistry();
    const placeholder = await startRegistry();
    const secondPort = placeholder.port;
    const secondAddress = placeholder.address;
    const gate = new Gate();
    const reconnects: WatchReconnectingEvent[] = [];
    const watcher = connect({ addresses: [a.address, secondAddress], addressOrder: "as-given" });
    const writerOnA = connect({ address: a.address });
    const from = (await writerOnA.getRegistryStats()).revision + 1;
    const iterator = watcher
      .watchWorkers({}, { startRevision: from, sleep: gate.sleep, onReconnecting: (event) => reconnects.push(event) })
      [Symbol.asyncIterator]();
    const worker = await writerOnA.registerWorker(registration);
    await writerOnA.updateTaskCount(worker.id, 1);
    const before = [await nextWithin(iterator, "registered"), await nextWithin(iterator, "updated")];

    const pending = nextWithin(iterator, "the first event after the failover");
    await placeholder.stop();
    await a.stop();
    await gate.waiting();
    await a.start(secondPort);
    const writerOnSecond = connect({ address: secondAddress });
    await writerOnSecond.updateTaskCount(worker.id, 1);
    await writerOnSecond.updateTaskCount(worker.id, 1);
    gate.open();
    const after: WorkerWatchEvent[] = [await pending, await nextWithin(iterator, "the second event after the failover")];

    expect([...before, ...after].map((event) => event.revision)).toEqual([from, from + 1, from + 2, from + 3]);
    expect(after.map((event) => (event.type === "resync" ? undefined : event.worker.currentTasks))).toEqual([2, 3]);
    expect(reconnects[0]).toMatchObject({ resumeFrom: from + 2, error: { codeName: "UNAVAILABLE" } });
    expect(watcher.address).toBe(secondAddress);
  });
});

describe("a replica killed with SIGKILL", () => {
  it("leaves reads, the next write and the heartbeat stream on the replica still alive", async () => {
    const [a, b] = await Promise.all(
      ["a", "b"].map((name) => startServerProcess(["--db", join(dirs.make(), `${name}.db`), "--heartbeat-interval", "100ms"])),
    );
    for (const server of [a, b]) {
      cleanups.push(async () => {
        server!.child.kill("SIGKILL");
        await server!.exited;
      });
    }
    const addresses = [`127.0.0.1:${a!.port}`, `127.0.0.1:${b!.port}`];
    const client = connect({ addresses, addressOrder: "as-given" });
    const node = createNode({ clientOptions: { addresses, addressOrder: "as-given" } });
    const firstConnect = nextEvent(node, "connected");
    const original = await node.start();
    expect((await firstConnect).address).toBe(addresses[0]);
    await client.getRegistryStats();

    const reregistered = nextEvent(node, "reregistered");
    const back = nextEvent(node, "connected", (event) => event.reconnects === 1);
    a!.child.kill("SIGKILL");
    await a!.exited;

    await client.getRegistryStats();
    expect(client.address).toBe(addresses[1]);
    // b is another registry here: it never knew the worker, so the node registers again.
    expect((await reregistered).previousId).toBe(original.id);
    const { workerId, address } = await back;
    expect(address).toBe(addresses[1]);
    expect((await client.getWorker(workerId)).healthStatus).toBe("healthy");
    await client.updateTaskCount(workerId, 1);
    expect((await client.getWorker(workerId)).currentTasks).toBe(1);
  });
});

/**
 * A stand-in for a hung replica: it registers workers and accepts heartbeat
 * streams, but never replies on them.
 */
async function startHungRegistry(): Promise<{ address: string; workerId: string; streams: () => number }> {
  const server = new grpc.Server();
  let streams = 0;
  const workerId = "worker-1767268800123-hung00000";
  const worker = create(WorkerSchema, { id: workerId, ...registration });
  server.addService(grpcServiceDefinition(WorkerRegistryService), {
    registerWorker: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, create(RegisterWorkerResponseSchema, { worker })),
    heartbeatStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      streams += 1;
      call.on("error", () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  cleanups.push(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, workerId, streams: () => streams };
}
