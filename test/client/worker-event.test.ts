import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { RemovalReason, WorkerEventSchema, WorkerEventType } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus, WorkerSchema, WorkerState } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { toWorkerChangeEvent } from "../../clients/typescript/src/worker-event.js";
import { toWorkerInfo } from "../../clients/typescript/src/worker-info.js";

const occurredAt = Date.UTC(2026, 0, 1, 12, 1, 30, 123);

const protoWorker = (state = WorkerState.ACTIVE) =>
  create(WorkerSchema, {
    id: "worker-1767268800123-abc123xyz",
    nodeId: "coder-1",
    capabilities: ["coder"],
    maxConcurrentTasks: 5,
    healthStatus: HealthStatus.HEALTHY,
    labels: { zone: "eu-1" },
    version: "v1",
    state,
  });

const event = (init: Parameters<typeof create<typeof WorkerEventSchema>>[1]) =>
  create(WorkerEventSchema, { revision: 42n, worker: protoWorker(), occurredAt: timestampFromMs(occurredAt), ...init });

describe("toWorkerChangeEvent", () => {
  it("maps a health change with the health before, and nothing about removal", () => {
    expect(toWorkerChangeEvent(event({ type: WorkerEventType.HEALTH_CHANGED, previousHealthStatus: HealthStatus.HEALTHY }))).toEqual({
      type: "health-changed",
      revision: 42,
      worker: toWorkerInfo(protoWorker()),
      occurredAt: new Date(occurredAt),
      previousHealth: "healthy",
    });
  });

  it("maps a state change with the state before, and the worker's state after", () => {
    const mapped = toWorkerChangeEvent(
      event({ type: WorkerEventType.STATE_CHANGED, worker: protoWorker(WorkerState.CORDONED), previousState: WorkerState.ACTIVE }),
    );
    expect(mapped).toEqual({
      type: "state-changed",
      revision: 42,
      worker: toWorkerInfo(protoWorker(WorkerState.CORDONED)),
      occurredAt: new Date(occurredAt),
      previousState: "active",
    });
    expect(mapped?.worker.state).toBe("cordoned");
  });

  it.each([
    [WorkerEventType.UNREGISTERED, RemovalReason.UNREGISTERED, "unregistered", "unregistered"],
    [WorkerEventType.REMOVED_BY_CLEANUP, RemovalReason.EXPIRED, "removed-by-cleanup", "expired"],
    [WorkerEventType.UNREGISTERED, RemovalReason.REPLACED, "unregistered", "replaced"],
    [WorkerEventType.UNREGISTERED, RemovalReason.DRAINED, "unregistered", "drained"],
    [WorkerEventType.UNREGISTERED, RemovalReason.DRAIN_DEADLINE, "unregistered", "drain-deadline"],
  ] as const)("maps a removal (%s) with its reason (%s)", (type, reason, typeName, reasonName) => {
    const mapped = toWorkerChangeEvent(event({ type, removalReason: reason }));
    expect(mapped).toMatchObject({ type: typeName, removalReason: reasonName });
    expect(mapped).not.toHaveProperty("previousHealth");
    expect(mapped).not.toHaveProperty("previousState");
  });

  it("leaves out the fields the server did not send", () => {
    for (const type of [WorkerEventType.REGISTERED, WorkerEventType.UPDATED, WorkerEventType.UNREGISTERED, WorkerEventType.STATE_CHANGED]) {
      const mapped = toWorkerChangeEvent(event({ type }));
      expect(mapped).not.toHaveProperty("previousHealth");
      expect(mapped).not.toHaveProperty("previousState");
      expect(mapped).not.toHaveProperty("removalReason");
    }
  });

  it("leaves out a removal reason it does not know rather than guess one", () => {
    expect(toWorkerChangeEvent(event({ type: WorkerEventType.UNREGISTERED, removalReason: 99 as RemovalReason }))).not.toHaveProperty("removalReason");
  });

  it("skips an event type it does not know, and refuses an event without a worker", () => {
    expect(toWorkerChangeEvent(event({ type: WorkerEventType.UNSPECIFIED }))).toBeUndefined();
    expect(toWorkerChangeEvent(event({ type: 99 as WorkerEventType }))).toBeUndefined();
    expect(() => toWorkerChangeEvent(create(WorkerEventSchema, { revision: 1n, type: WorkerEventType.UPDATED }))).toThrow(TypeError);
  });
});
