import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WorkerDrainingError } from "../../clients/typescript/src/worker-draining-error.js";
import type { WorkerNodeOptions } from "../../clients/typescript/src/worker-node-options.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { nextEvent } from "./events.js";
import { heldTask } from "./watch-helpers.js";
import { ScriptedRegistry } from "./scripted-registry.js";

// The drain cases a real registry cannot stage on demand, against a scripted
// one (see ScriptedRegistry): a deadline that has passed, a record removed
// mid-drain, a drain that begins while a task's count is going up. The
// drain against the real server is in worker-node-drain.integration.test.ts.

const registration = { nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 2 };
const MINUTE_MS = 60_000;

let registry: ScriptedRegistry;
const nodes: WorkerNode[] = [];

beforeEach(async () => {
  registry = await ScriptedRegistry.start();
});

afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map((node) => node.stop({ drainTimeoutMs: 0 })));
  registry.stop();
});

async function startedNode(options: Partial<WorkerNodeOptions> = {}): Promise<WorkerNode> {
  const node = new WorkerNode({ registration, clientOptions: { address: registry.address }, reconnectBaseMs: 20, ...options });
  nodes.push(node);
  const connected = nextEvent(node, "connected");
  await node.start();
  await connected;
  return node;
}

describe("a drain the registry asks for", () => {
  it("ends at the registry's deadline when a task outlives it, without the task's bookkeeping", async () => {
    let skewMs = 0;
    const node = await startedNode({ wallClock: () => Date.now() + skewMs });
    const task = heldTask("late");
    const result = node.runTask(task.body);
    await task.running;

    const drainedEvent = nextEvent(node, "drained");
    const draining = nextEvent(node, "draining");
    // The node's clock says the deadline has passed by the time the reply arrives: no wait for it.
    skewMs = 2 * MINUTE_MS;
    registry.drain(Date.now() + MINUTE_MS);
    expect(await draining).toMatchObject({ workerId: registry.workerId, requestedBy: "registry", runningTasks: 1 });
    expect(await drainedEvent).toEqual({ workerId: registry.workerId, reason: "deadline", runningTasks: 1 });
    expect(node.state).toBe("stopped");
    expect(registry.calls).toContain("unregisterWorker");

    task.finish();
    await expect(result).resolves.toBe("late");
    expect(registry.calls).not.toContain("recordTaskCompletion");
    expect(registry.calls.filter((call) => call === "registerWorker")).toHaveLength(1);
  });

  it("never registers again once the record of a draining worker is gone: the removal ends the drain", async () => {
    const node = await startedNode();
    const task = heldTask(1);
    const result = node.runTask(task.body);
    await task.running;
    const draining = nextEvent(node, "draining");
    registry.drain(Date.now() + MINUTE_MS);
    await draining;

    const drainedEvent = nextEvent(node, "drained");
    // An operator unregisters it, or the registry's own deadline passed first.
    registry.removed = true;
    expect(await drainedEvent).toEqual({ workerId: registry.workerId, reason: "removed", runningTasks: 1 });
    task.finish();
    await result;
    expect(registry.calls.filter((call) => call === "registerWorker")).toHaveLength(1);
    expect(registry.calls).not.toContain("recordTaskCompletion");
  });

  it("refuses a task whose count went up while the drain began, and gives its slot back", async () => {
    const node = await startedNode();
    const raiseArrived = registry.holdRaise();
    let ran = false;
    const refused = node.runTask(() => {
      ran = true;
    });
    const releaseRaise = await raiseArrived;
    const draining = nextEvent(node, "draining");
    registry.drain(Date.now() + MINUTE_MS);
    await draining;

    const drainedEvent = nextEvent(node, "drained");
    releaseRaise();
    const error = await refused.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WorkerDrainingError);
    expect(ran).toBe(false);
    expect(registry.calls.filter((call) => call.startsWith("updateTaskCount"))).toEqual(["updateTaskCount(1)", "updateTaskCount(-1)"]);
    expect(await drainedEvent).toEqual({ workerId: registry.workerId, reason: "drained", runningTasks: 0 });
    expect(registry.currentTasks).toBe(0);
  });
});

describe("stop() drains first", () => {
  it("tells the registry, with drainTimeoutMs as the grace, then lets the running task finish and record before it unregisters", async () => {
    const node = await startedNode();
    const task = heldTask("done");
    const result = node.runTask(task.body);
    await task.running;

    const draining = nextEvent(node, "draining");
    const stopped = node.stop({ drainTimeoutMs: 5 * MINUTE_MS });
    const announced = await draining;
    expect(announced).toMatchObject({ workerId: registry.workerId, requestedBy: "stop", runningTasks: 1 });
    // The registry's deadline: now + the grace asked for.
    expect(announced.deadline!.getTime()).toBeGreaterThan(Date.now() + 4 * MINUTE_MS);
    expect(node.drainDeadline).toEqual(announced.deadline);
    await expect(node.runTask(() => "more")).rejects.toThrow(WorkerDrainingError);

    const drainedEvent = nextEvent(node, "drained");
    task.finish();
    await expect(result).resolves.toBe("done");
    await stopped;
    expect(await drainedEvent).toEqual({ workerId: registry.workerId, reason: "drained", runningTasks: 0 });
    const afterRegistration = registry.calls.filter((call) => call !== "registerWorker");
    expect(afterRegistration).toEqual(["updateTaskCount(1)", "drainWorker", "recordTaskCompletion", "updateTaskCount(-1)", "unregisterWorker"]);
    expect(registry.completions).toEqual([{ success: true, durationMs: expect.any(Number) }]);
    expect(node.state).toBe("stopped");
  });

  it("gives up waiting after drainTimeoutMs and unregisters; the task runs on without its bookkeeping", async () => {
    const node = await startedNode();
    const task = heldTask("late");
    const result = node.runTask(task.body);
    await task.running;

    const drainedEvent = nextEvent(node, "drained");
    await node.stop({ drainTimeoutMs: 50 });
    expect(await drainedEvent).toEqual({ workerId: registry.workerId, reason: "timeout", runningTasks: 1 });
    expect(registry.calls).toContain("unregisterWorker");
    task.finish();
    await expect(result).resolves.toBe("late");
    expect(registry.calls).not.toContain("recordTaskCompletion");
  });

  it("bounds a drain the registry asked for: a stop() during it waits at most its drainTimeoutMs", async () => {
    const node = await startedNode();
    const task = heldTask(0);
    void node.runTask(task.body);
    await task.running;
    const draining = nextEvent(node, "draining");
    registry.drain(Date.now() + MINUTE_MS);
    await draining;

    const drainedEvent = nextEvent(node, "drained");
    await node.stop({ drainTimeoutMs: 50 });
    expect(await drainedEvent).toMatchObject({ reason: "timeout", runningTasks: 1 });
    // stop() did not drain a second time: the registry's drain stands.
    expect(registry.calls).not.toContain("drainWorker");
    task.finish();
  });
});
