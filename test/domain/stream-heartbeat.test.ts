import { describe, expect, it } from "vitest";
import { WorkerNotFoundError } from "../../src/domain/errors.js";
import { StreamHeartbeat } from "../../src/domain/worker-registry.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coder = (nodeId: string) => ({ nodeId, capabilities: ["coder"], maxConcurrentTasks: 2 });

describe("a heartbeat stream's own ack (WorkerRegistry.streamHeartbeat)", () => {
  it("is filled again by every heartbeat with the time recorded for it, and keeps the worker healthy past its threshold", async () => {
    const { registry, clock } = await createTestRegistry({ healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE });
    const worker = await registry.registerWorker(coder("a"));
    const ack = new StreamHeartbeat(worker.id);
    for (let minute = 1; minute <= 30; minute++) {
      clock.advance(9 * MINUTE);
      registry.streamHeartbeat(ack);
      expect(ack).toMatchObject({ healthStatus: "healthy", heartbeatAtMs: clock.now(), drainDeadlineMs: null });
      await registry.tick();
    }
    expect(registry.getWorker(worker.id)).toMatchObject({ healthStatus: "healthy", lastHeartbeatAtMs: clock.now() });
  });

  it("heals a degraded worker at once, as a heartbeat by id does", async () => {
    const { registry, clock } = await createTestRegistry({ healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE });
    const worker = await registry.registerWorker(coder("a"));
    clock.advance(11 * MINUTE);
    await registry.tick();
    expect(registry.getWorker(worker.id).healthStatus).toBe("degraded");
    registry.streamHeartbeat(new StreamHeartbeat(worker.id));
    expect(registry.getWorker(worker.id).healthStatus).toBe("healthy");
  });

  it("shows a drain that began after the stream bound, and its end", async () => {
    const { registry, clock } = await createTestRegistry();
    const worker = await registry.registerWorker(coder("a"));
    await registry.updateTaskCount(worker.id, 1);
    const ack = new StreamHeartbeat(worker.id);
    registry.streamHeartbeat(ack);
    expect(ack.drainDeadlineMs).toBeNull();
    await registry.drainWorker(worker.id);
    registry.streamHeartbeat(ack);
    expect(ack.drainDeadlineMs).toBe(clock.now() + 10 * MINUTE);
  });

  it("refuses with WorkerNotFoundError once the worker is gone, however long the stream held it", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker(coder("a"));
    const ack = new StreamHeartbeat(worker.id);
    registry.streamHeartbeat(ack);
    await registry.unregisterWorker(worker.id);
    expect(() => registry.streamHeartbeat(ack)).toThrow(WorkerNotFoundError);
    expect(registry.discoverWorkers(NO_FILTER).workers).toEqual([]);
  });
});
