import * as grpc from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import { WorkerDrainingError } from "../../clients/typescript/src/worker-draining-error.js";
import type { WorkerChangeEvent, WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import type { WorkerNodeEvents, WorkerNodeOptions } from "../../clients/typescript/src/worker-node-options.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { nextEvent } from "./events.js";
import { TestRegistry } from "./registry-server.js";
import { heldTask, nextWithin } from "./watch-helpers.js";

// A WorkerNode drained by an orchestrator, or by its own stop(), against the
// real server. The process-level version (the drained process exits by
// itself) is in worker-node-exit.integration.test.ts.

const registration = {
  nodeId: "coder-v1",
  capabilities: ["coder"],
  maxConcurrentTasks: 2,
  labels: { zone: "eu-1", rollout: "old" },
  version: "2026.11.3",
};

const registries: TestRegistry[] = [];
const nodes: WorkerNode[] = [];
const clients: WorkerRegistryClient[] = [];

afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map((node) => node.stop({ drainTimeoutMs: 0 })));
  for (const client of clients.splice(0)) client.close();
  await Promise.all(registries.splice(0).map((registry) => registry.dispose()));
});

/** `heartbeatIntervalMs` is the server's: at 100 ms a drain is heard of within one heartbeat. */
async function setup(options: Partial<WorkerNodeOptions> = {}, heartbeatIntervalMs = 100) {
  const registry = await TestRegistry.start({ heartbeatIntervalMs });
  registries.push(registry);
  const orchestrator = new WorkerRegistryClient({ address: registry.address });
  clients.push(orchestrator);
  const node = new WorkerNode({ registration, clientOptions: { address: registry.address }, reconnectBaseMs: 50, reconnectMaxMs: 400, ...options });
  nodes.push(node);
  const connected = nextEvent(node, "connected");
  const worker = await node.start();
  await connected;
  return { registry, orchestrator, node, worker };
}

/** Which of `events` the node emits first, with its payload (rejects after 10 s). */
function firstEvent(node: WorkerNode, events: (keyof WorkerNodeEvents)[]): Promise<{ event: string; payload: unknown }> {
  const emitter = node as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const listeners = events.map((event) => {
      const listener = (payload: unknown) => done({ event, payload });
      emitter.on(event, listener);
      return [event, listener] as const;
    });
    const timer = setTimeout(() => done(new Error(`none of ${events.join(", ")} within 10000ms`)), 10_000);
    const done = (outcome: { event: string; payload: unknown } | Error) => {
      clearTimeout(timer);
      for (const [event, listener] of listeners) emitter.off(event, listener);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
  });
}

/** Every event of a watch up to and including the first removal. */
async function untilRemoved(events: AsyncIterator<WorkerWatchEvent>): Promise<WorkerChangeEvent[]> {
  const seen: WorkerWatchEvent[] = [];
  while (!seen.some((event) => event.type === "unregistered" || event.type === "removed-by-cleanup")) {
    seen.push(await nextWithin(events, "the worker's removal"));
  }
  await events.return?.();
  return seen as WorkerChangeEvent[];
}

async function watchFromNow(client: WorkerRegistryClient): Promise<AsyncIterator<WorkerWatchEvent>> {
  const { revision } = await client.getRegistryStats();
  return client.watchWorkers({ labelSelector: "rollout=old" }, { startRevision: revision + 1 })[Symbol.asyncIterator]();
}

describe("a WorkerNode drained by an orchestrator", () => {
  it("refuses new tasks, finishes the running one with its bookkeeping, and is removed as drained", async () => {
    const { orchestrator, node, worker } = await setup();
    const task = heldTask("result");
    const result = node.runTask(task.body);
    await task.running;
    const events = await watchFromNow(orchestrator);

    const draining = nextEvent(node, "draining");
    const drained = nextEvent(node, "drained");
    const stopped = nextEvent(node, "stopped");
    const { drainDeadline } = await orchestrator.drainWorker(worker.id, { graceMs: 60_000 });
    expect(await draining).toEqual({ workerId: worker.id, deadline: drainDeadline, runningTasks: 1, requestedBy: "registry" });
    expect(node.state).toBe("draining");
    expect(node.drainDeadline).toEqual(drainDeadline);

    let ran = false;
    const refusal = await node
      .runTask(() => {
        ran = true;
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(refusal).toBeInstanceOf(WorkerDrainingError);
    expect(refusal).toMatchObject({ workerId: worker.id, drainDeadline, codeName: "FAILED_PRECONDITION" });
    // Code that sends a task refused at capacity elsewhere handles a drain alike.
    expect(refusal).toBeInstanceOf(RegistryClientError);
    expect((refusal as Error).message).toContain(worker.id);
    expect(ran).toBe(false);

    task.finish();
    await expect(result).resolves.toBe("result");
    expect(await drained).toEqual({ workerId: worker.id, reason: "drained", runningTasks: 0 });
    expect(await stopped).toEqual({ workerId: worker.id });
    expect(node.state).toBe("stopped");

    const changes = await untilRemoved(events);
    expect(changes[0]).toMatchObject({ type: "state-changed", previousState: "active", worker: { state: "draining" } });
    expect(changes.some((event) => event.worker.metrics.tasksCompleted === 1)).toBe(true);
    expect(changes.at(-1)).toMatchObject({ type: "unregistered", removalReason: "drained", worker: { id: worker.id, currentTasks: 0 } });
    await expect(orchestrator.getWorker(worker.id)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  // The registry removes an idle worker inside DrainWorker: the node hears it
  // only as the NOT_FOUND that ends its stream, whose trailer says drained.
  it("leaves at once when it is idle, and never registers again, though it never saw a reply asking for the drain", async () => {
    // Heartbeats every 5 minutes: only the stream's end can tell the node within the test.
    const { orchestrator, node, worker } = await setup({}, 5 * 60_000);
    const outcome = firstEvent(node, ["drained", "reregistered"]);
    await orchestrator.drainWorker(worker.id);
    expect(await outcome).toMatchObject({ event: "drained", payload: { workerId: worker.id, reason: "drained", runningTasks: 0 } });
    expect(node.state).toBe("stopped");
    expect(await orchestrator.discoverWorkers({ capabilities: ["coder"] })).toEqual([]);
  });
});

describe("a WorkerNode that heartbeats rarely", () => {
  it("hears of a drain in its tasks' bookkeeping answers, without waiting for a heartbeat", async () => {
    const { orchestrator, node, worker } = await setup({}, 5 * 60_000);
    const first = heldTask(1);
    const second = heldTask(2);
    const results = [node.runTask(first.body), node.runTask(second.body)];
    await Promise.all([first.running, second.running]);
    const { drainDeadline } = await orchestrator.drainWorker(worker.id, { graceMs: 60_000 });

    const draining = nextEvent(node, "draining");
    first.finish();
    expect(await draining).toEqual({ workerId: worker.id, deadline: drainDeadline, runningTasks: 1, requestedBy: "registry" });
    await expect(node.runTask(() => 3)).rejects.toBeInstanceOf(WorkerDrainingError);

    const drained = nextEvent(node, "drained");
    second.finish();
    await expect(Promise.all(results)).resolves.toEqual([1, 2]);
    expect(await drained).toEqual({ workerId: worker.id, reason: "drained", runningTasks: 0 });
  });
});

describe("WorkerNode.stop() drains first", () => {
  it("takes the worker out of rotation at once, lets the running task finish and record, then removes it", async () => {
    const { orchestrator, node, worker } = await setup();
    const task = heldTask("finished");
    const result = node.runTask(task.body);
    await task.running;
    const events = await watchFromNow(orchestrator);

    const draining = nextEvent(node, "draining");
    const stopping = node.stop();
    expect(await draining).toMatchObject({ workerId: worker.id, requestedBy: "stop", runningTasks: 1 });
    expect(await orchestrator.getWorker(worker.id)).toMatchObject({ state: "draining", currentTasks: 1 });
    expect(await orchestrator.getWorkersForLoadBalancing({ capabilities: ["coder"] })).toEqual([]);
    await expect(node.runTask(() => "more")).rejects.toBeInstanceOf(WorkerDrainingError);

    task.finish();
    await expect(result).resolves.toBe("finished");
    await stopping;
    expect(node.state).toBe("stopped");

    const changes = await untilRemoved(events);
    expect(changes[0]).toMatchObject({ type: "state-changed", worker: { state: "draining" } });
    expect(changes.some((event) => event.worker.metrics.tasksCompleted === 1)).toBe(true);
    expect(changes.at(-1)).toMatchObject({ type: "unregistered", removalReason: "drained" });
  });
});

describe("WorkerNode labels and version", () => {
  it("are registered and kept when the node registers again after its record was lost", async () => {
    const { orchestrator, node, worker } = await setup();
    expect(worker).toMatchObject({ labels: registration.labels, version: registration.version });
    const reregistered = nextEvent(node, "reregistered");
    // An operator removes the record, as the server's cleanup would: the node is not draining, so it comes back.
    await orchestrator.unregisterWorker(worker.id);
    const { workerId } = await reregistered;
    expect(workerId).not.toBe(worker.id);
    expect(await orchestrator.getWorker(workerId)).toMatchObject({ labels: registration.labels, version: registration.version, state: "active" });
  });
});
