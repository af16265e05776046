import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { NoWorkerAvailableError, RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import type { WorkerChangeEvent, WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import type { WorkerRegistration } from "../../clients/typescript/src/worker-info.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { FakeClock } from "../support/fake-clock.js";
import { useTestRegistry } from "./registry-server.js";
import { nextWithin } from "./watch-helpers.js";

// Labels, versions, selectors, cordon, uncordon and drain through the client,
// against the real server on a fake clock: drain deadlines are exact.

const MINUTE = 60_000;

const clock = new FakeClock();
const harness = useTestRegistry({ stallThresholdMs: 24 * 60 * MINUTE }, { clock });
const connect = (): WorkerRegistryClient => harness.connect();

async function rejection(promise: Promise<unknown>): Promise<RegistryClientError> {
  return promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(RegistryClientError);
      return error as RegistryClientError;
    },
  );
}

const coder = (nodeId: string, labels: Record<string, string>, version: string): WorkerRegistration => ({
  nodeId,
  capabilities: ["coder"],
  maxConcurrentTasks: 2,
  labels,
  version,
});

/** Three coders: a100 in eu-1 on v1, t4 in us-1 on v2, no gpu in eu-1 on v2. */
async function fleet(client: WorkerRegistryClient) {
  const a100 = await client.registerWorker(coder("a100-eu", { zone: "eu-1", gpu: "a100" }, "v1"));
  const t4 = await client.registerWorker(coder("t4-us", { zone: "us-1", gpu: "t4" }, "v2"));
  const plain = await client.registerWorker(coder("plain-eu", { zone: "eu-1" }, "v2"));
  return { a100, t4, plain };
}

const nodeIds = (workers: { nodeId: string }[]) => workers.map((worker) => worker.nodeId).sort();

describe("labels and versions", () => {
  it("are registered, shown on the worker with its state, and read back as given", async () => {
    const client = connect();
    const labels = { zone: "eu-1", "example.com/gpu": "a100", empty: "" };
    const registered = await client.registerWorker(coder("labelled", labels, "2026.11.3"));
    expect(registered).toMatchObject({ labels, version: "2026.11.3", state: "active", drainDeadline: undefined });
    expect(await client.getWorker(registered.id)).toMatchObject({ labels, version: "2026.11.3", state: "active" });
  });

  it("default to none and unversioned", async () => {
    const client = connect();
    const worker = await client.registerWorker({ nodeId: "bare", capabilities: ["coder"], maxConcurrentTasks: 1 });
    expect(worker).toMatchObject({ labels: {}, version: "" });
  });

  it("select workers in discovery, load balancing and acquisition", async () => {
    const client = connect();
    await fleet(client);
    expect(nodeIds(await client.discoverWorkers({ labelSelector: "zone=eu-1" }))).toEqual(["a100-eu", "plain-eu"]);
    expect(nodeIds(await client.discoverWorkers({ labelSelector: "gpu in (a100,h100)" }))).toEqual(["a100-eu"]);
    // A worker without the label matches notin and !=.
    expect(nodeIds(await client.discoverWorkers({ labelSelector: "gpu notin (t4)" }))).toEqual(["a100-eu", "plain-eu"]);
    expect(nodeIds(await client.discoverWorkers({ labelSelector: "!gpu" }))).toEqual(["plain-eu"]);
    expect(nodeIds(await client.discoverWorkers({ versions: ["v2"] }))).toEqual(["plain-eu", "t4-us"]);
    expect(nodeIds(await client.discoverWorkers({ labelSelector: "zone=eu-1", versions: ["v2", "v3"] }))).toEqual(["plain-eu"]);
    expect(nodeIds(await client.getWorkersForLoadBalancing({ capabilities: ["coder"], labelSelector: "gpu" }))).toEqual(["a100-eu", "t4-us"]);
    const { worker } = await client.acquireWorker({ labelSelector: "gpu=t4" });
    expect(worker.nodeId).toBe("t4-us");
    await expect(client.acquireWorker({ versions: ["v9"] })).rejects.toBeInstanceOf(NoWorkerAvailableError);
  });

  it("select the events a watch reports", async () => {
    const client = connect();
    const { a100, t4 } = await fleet(client);
    const { revision } = await client.getRegistryStats();
    const watch = client.watchWorkers({ labelSelector: "zone=us-1", versions: ["v2"] }, { startRevision: revision + 1 })[Symbol.asyncIterator]();
    await client.updateTaskCount(a100.id, 1);
    await client.updateTaskCount(t4.id, 1);
    const event = (await nextWithin(watch, "an event for t4-us")) as WorkerChangeEvent;
    expect(event).toMatchObject({ type: "updated", worker: { nodeId: "t4-us", currentTasks: 1 } });
    await watch.return?.();
  });

  it("refuse a selector that does not parse, naming where", async () => {
    const client = connect();
    const error = await rejection(client.discoverWorkers({ labelSelector: "zone in (eu-1" }));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.message).toMatch(/position/);
  });
});

describe("cordon and uncordon", () => {
  it("take a worker out of rotation and back, while discovery still lists it", async () => {
    const client = connect();
    const { a100 } = await fleet(client);
    const cordoned = await client.cordonWorker(a100.id);
    expect(cordoned).toMatchObject({ id: a100.id, state: "cordoned" });
    expect(await client.cordonWorker(a100.id)).toMatchObject({ state: "cordoned" });
    expect(nodeIds(await client.getWorkersForLoadBalancing({ labelSelector: "zone=eu-1" }))).toEqual(["plain-eu"]);
    await expect(client.acquireWorker({ labelSelector: "gpu=a100" })).rejects.toBeInstanceOf(NoWorkerAvailableError);
    expect(await client.discoverWorkers({ labelSelector: "gpu=a100" })).toMatchObject([{ state: "cordoned" }]);

    expect(await client.uncordonWorker(a100.id)).toMatchObject({ state: "active" });
    expect((await client.acquireWorker({ labelSelector: "gpu=a100" })).worker.id).toBe(a100.id);
  });

  it("answer NOT_FOUND for an unknown worker", async () => {
    const client = connect();
    expect((await rejection(client.cordonWorker("worker-1767268800123-nosuchone"))).code).toBe(grpc.status.NOT_FOUND);
    expect((await rejection(client.uncordonWorker("worker-1767268800123-nosuchone"))).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe("drainWorker", () => {
  it("sets the worker draining until now + grace, tells it in heartbeat replies, and keeps the earlier deadline", async () => {
    const client = connect();
    const { a100 } = await fleet(client);
    // A running task keeps it from being removed at once.
    await client.updateTaskCount(a100.id, 1);
    const drained = await client.drainWorker(a100.id, { graceMs: 5 * MINUTE });
    const deadline = new Date(clock.now() + 5 * MINUTE);
    expect(drained).toMatchObject({ id: a100.id, state: "draining", drainDeadline: deadline });
    expect(await client.heartbeat(a100.id)).toMatchObject({ drainRequested: true, drainDeadline: deadline, state: "draining" });
    expect((await client.drainWorker(a100.id, { graceMs: 60 * MINUTE })).drainDeadline).toEqual(deadline);
    expect((await client.drainWorker(a100.id, { graceMs: MINUTE })).drainDeadline).toEqual(new Date(clock.now() + MINUTE));
    expect(await client.getWorkersForLoadBalancing({ labelSelector: "gpu=a100" })).toEqual([]);
  });

  it("is final: neither cordon nor uncordon changes a draining worker", async () => {
    const client = connect();
    const { a100 } = await fleet(client);
    await client.updateTaskCount(a100.id, 1);
    await client.drainWorker(a100.id);
    expect((await rejection(client.cordonWorker(a100.id))).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await rejection(client.uncordonWorker(a100.id))).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await client.getWorker(a100.id)).state).toBe("draining");
  });

  it("defaults the grace to 10 minutes, refuses one outside 1 s to 7 days, and an unknown worker", async () => {
    const client = connect();
    const { t4 } = await fleet(client);
    await client.updateTaskCount(t4.id, 1);
    expect((await rejection(client.drainWorker(t4.id, { graceMs: 500 }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await client.drainWorker(t4.id)).drainDeadline).toEqual(new Date(clock.now() + 10 * MINUTE));
    expect((await rejection(client.drainWorker("worker-1767268800123-nosuchone"))).code).toBe(grpc.status.NOT_FOUND);
  });

  it("is reported to watchers as state changes, then a removal with reason drained once the worker is idle", async () => {
    const client = connect();
    const { plain } = await fleet(client);
    await client.updateTaskCount(plain.id, 1);
    const { revision } = await client.getRegistryStats();
    const watch = client.watchWorkers({ labelSelector: "!gpu" }, { startRevision: revision + 1 })[Symbol.asyncIterator]();
    await client.cordonWorker(plain.id);
    await client.drainWorker(plain.id);
    await client.updateTaskCount(plain.id, -1);
    const seen: WorkerWatchEvent[] = [];
    while (!seen.some((event) => event.type === "unregistered")) seen.push(await nextWithin(watch, "the removal of plain-eu"));
    await watch.return?.();
    const changes = seen as WorkerChangeEvent[];
    expect(changes.filter((event) => event.type === "state-changed").map((event) => [event.previousState, event.worker.state])).toEqual([
      ["active", "cordoned"],
      ["cordoned", "draining"],
    ]);
    expect(changes.at(-1)).toMatchObject({ type: "unregistered", removalReason: "drained", worker: { id: plain.id } });
    expect((await rejection(client.getWorker(plain.id))).code).toBe(grpc.status.NOT_FOUND);
  });
});
