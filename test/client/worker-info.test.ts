import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  AcquireWorkerResponseSchema,
  GetRegistryStatsResponseSchema,
  ReleaseOutcome,
  RemovalReason,
  WorkerEventSchema,
  WorkerEventType,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import {
  HealthStatus,
  RankedWorkerSchema,
  WorkerSchema,
  type Worker,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import {
  durationMsOf,
  healthName,
  healthValue,
  releaseOutcomeName,
  toRankedWorkerInfo,
  toRegistryStats,
  toWorkerAcquisition,
  toWorkerChangeEvent,
  toWorkerInfo,
  type WorkerHealth,
} from "../../clients/typescript/src/worker-info.js";

const registeredAt = Date.UTC(2026, 0, 1, 12, 0, 0, 123);
const lastHeartbeatAt = registeredAt + 90_000;

function protoWorker(overrides: Partial<Pick<Worker, "healthStatus" | "metrics" | "registeredAt" | "lastHeartbeatAt">> = {}): Worker {
  return create(WorkerSchema, {
    id: "worker-1767268800123-abc123xyz",
    nodeId: "coder-1",
    capabilities: ["coder", "tester"],
    maxConcurrentTasks: 5,
    currentTasks: 2,
    availableCapacity: 3,
    successRate: 0.9,
    healthStatus: HealthStatus.DEGRADED,
    registeredAt: timestampFromMs(registeredAt),
    lastHeartbeatAt: timestampFromMs(lastHeartbeatAt),
    metrics: { tasksCompleted: 45n, tasksFailedCount: 5n, averageTaskDurationMs: 5000 },
    ...overrides,
  });
}

/** What the server sends goes through the wire format; map what a real reply decodes to. */
function overTheWire(worker: Worker): Worker {
  return fromBinary(WorkerSchema, toBinary(WorkerSchema, worker));
}

describe("toWorkerInfo", () => {
  it("gives the guide's shape: plain numbers, Dates and health names", () => {
    const info = toWorkerInfo(overTheWire(protoWorker()));
    expect(info).toEqual({
      id: "worker-1767268800123-abc123xyz",
      nodeId: "coder-1",
      capabilities: ["coder", "tester"],
      healthStatus: "degraded",
      currentTasks: 2,
      maxConcurrentTasks: 5,
      availableCapacity: 3,
      successRate: 0.9,
      registeredAt: new Date(registeredAt),
      lastHeartbeatAt: new Date(lastHeartbeatAt),
      metrics: { tasksCompleted: 45, tasksFailedCount: 5, averageTaskDuration: 5000 },
    });
    expect(typeof info.metrics.tasksCompleted).toBe("number");
  });

  it("survives JSON.stringify, which throws on the bigint counters of the raw message", () => {
    const raw = overTheWire(protoWorker());
    expect(() => JSON.stringify(raw)).toThrow(TypeError);
    const parsed = JSON.parse(JSON.stringify(toWorkerInfo(raw))) as { metrics: { tasksCompleted: number }; registeredAt: string };
    expect(parsed.metrics.tasksCompleted).toBe(45);
    expect(parsed.registeredAt).toBe(new Date(registeredAt).toISOString());
  });

  it("reads absent metrics as zeros and absent timestamps as the epoch", () => {
    const info = toWorkerInfo(protoWorker({ metrics: undefined, registeredAt: undefined, lastHeartbeatAt: undefined }));
    expect(info.metrics).toEqual({ tasksCompleted: 0, tasksFailedCount: 0, averageTaskDuration: 0 });
    expect(info.registeredAt.getTime()).toBe(0);
    expect(info.lastHeartbeatAt.getTime()).toBe(0);
  });

  it("copies capabilities, so changing the result cannot change the message", () => {
    const worker = protoWorker();
    toWorkerInfo(worker).capabilities.push("hacker");
    expect(worker.capabilities).toEqual(["coder", "tester"]);
  });
});

describe("health names", () => {
  it("maps each known status both ways", () => {
    const pairs: [HealthStatus, WorkerHealth][] = [
      [HealthStatus.HEALTHY, "healthy"],
      [HealthStatus.DEGRADED, "degraded"],
      [HealthStatus.UNHEALTHY, "unhealthy"],
    ];
    for (const [value, name] of pairs) {
      expect(healthName(value)).toBe(name);
      expect(healthValue(name)).toBe(value);
    }
  });

  it("treats a status it does not know as unhealthy, so such a worker is never preferred", () => {
    expect(healthName(HealthStatus.UNSPECIFIED)).toBe("unhealthy");
    expect(healthName(42 as HealthStatus)).toBe("unhealthy");
  });

  it("refuses a health name outside the three states", () => {
    expect(() => healthValue("Healthy" as WorkerHealth)).toThrow(/healthStatus must be one of healthy, degraded, unhealthy; got "Healthy"/);
  });
});

describe("toRankedWorkerInfo", () => {
  it("adds the priority and its parts to the worker's fields", () => {
    const ranked = create(RankedWorkerSchema, {
      worker: protoWorker({ healthStatus: HealthStatus.HEALTHY }),
      priority: 0.71,
      capacityScore: 0.8,
      successScore: 0.9,
      speedScore: 0.2,
    });
    const info = toRankedWorkerInfo(fromBinary(RankedWorkerSchema, toBinary(RankedWorkerSchema, ranked)));
    expect(info).toMatchObject({ id: "worker-1767268800123-abc123xyz", healthStatus: "healthy", availableCapacity: 3 });
    expect(info.priority).toBe(0.71);
    expect(info.capacityScore).toBe(0.8);
    expect(info.successScore).toBe(0.9);
    expect(info.speedScore).toBe(0.2);
  });

  it("refuses a ranked entry without a worker", () => {
    expect(() => toRankedWorkerInfo(create(RankedWorkerSchema, { priority: 1 }))).toThrow(TypeError);
  });
});

describe("toRegistryStats", () => {
  it("turns the 64-bit counters into numbers and the server time into a Date", () => {
    const serverTime = registeredAt + 5000;
    const stats = create(GetRegistryStatsResponseSchema, {
      totalWorkers: 3,
      healthyWorkers: 1,
      degradedWorkers: 1,
      unhealthyWorkers: 1,
      cordonedWorkers: 1,
      drainingWorkers: 1,
      totalCapacity: 18n,
      usedCapacity: 4n,
      availableCapacity: 14n,
      tasksCompleted: 55n,
      tasksFailed: 5n,
      successRate: 55 / 60,
      serverTime: timestampFromMs(serverTime),
      revision: 1234n,
      activeReservations: 2n,
      eviction: { paused: true, reason: "heartbeat intake collapsed", pausedSince: timestampFromMs(serverTime - 1000), pausesTotal: 1n, lastWindowIntake: 1, expectedIntake: 3 },
      replica: {
        replicaId: "host-b:42",
        store: "postgres",
        leading: false,
        leaderId: "host-a:7",
        leaderEpoch: 3n,
        appliedRevision: 1234n,
        replicationLag: durationFromMs(250),
        storeWritable: true,
      },
    });
    expect(toRegistryStats(fromBinary(GetRegistryStatsResponseSchema, toBinary(GetRegistryStatsResponseSchema, stats)))).toEqual({
      totalWorkers: 3,
      healthyWorkers: 1,
      degradedWorkers: 1,
      unhealthyWorkers: 1,
      cordonedWorkers: 1,
      drainingWorkers: 1,
      totalCapacity: 18,
      usedCapacity: 4,
      availableCapacity: 14,
      tasksCompleted: 55,
      tasksFailed: 5,
      successRate: 55 / 60,
      serverTime: new Date(serverTime),
      revision: 1234,
      activeReservations: 2,
      eviction: {
        paused: true,
        reason: "heartbeat intake collapsed",
        pausedSince: new Date(serverTime - 1000),
        resumesAt: undefined,
        pausesTotal: 1,
        lastWindowIntake: 1,
        expectedIntake: 3,
      },
      replica: {
        replicaId: "host-b:42",
        store: "postgres",
        leading: false,
        leaderId: "host-a:7",
        leaderEpoch: 3,
        leadingSince: undefined,
        appliedRevision: 1234,
        replicationLagMs: 250,
        storeWritable: true,
      },
    });
  });

  it("maps every field of GetRegistryStatsResponse (a field added to the contract must be added here too)", () => {
    const mapped = Object.keys(toRegistryStats(create(GetRegistryStatsResponseSchema, {}))).sort();
    const contract = GetRegistryStatsResponseSchema.fields.map((field) => field.localName).sort();
    expect(mapped).toEqual(contract);
  });
});

describe("toWorkerAcquisition", () => {
  it("gives the ranked worker, its priority, the reservation id and the expiry as a Date", () => {
    const expiresAt = registeredAt + 600_000;
    const response = create(AcquireWorkerResponseSchema, {
      worker: { worker: protoWorker(), priority: 0.74, capacityScore: 0.6, successScore: 0.9, speedScore: 0.2 },
      reservationId: "res-1",
      expiresAt: timestampFromMs(expiresAt),
    });
    const acquisition = toWorkerAcquisition(response);
    expect(acquisition).toEqual({
      worker: { ...toWorkerInfo(protoWorker()), priority: 0.74, capacityScore: 0.6, successScore: 0.9, speedScore: 0.2 },
      priority: 0.74,
      reservationId: "res-1",
      expiresAt: new Date(expiresAt),
    });
  });

  it("refuses a response without a worker", () => {
    expect(() => toWorkerAcquisition(create(AcquireWorkerResponseSchema, { reservationId: "res-1" }))).toThrow(TypeError);
  });
});

describe("releaseOutcomeName", () => {
  it("names the three outcomes and knows no other", () => {
    expect([ReleaseOutcome.RELEASED, ReleaseOutcome.ALREADY_RELEASED, ReleaseOutcome.EXPIRED, ReleaseOutcome.UNSPECIFIED, 9].map(releaseOutcomeName)).toEqual([
      "released",
      "already-released",
      "expired",
      undefined,
      undefined,
    ]);
  });
});

describe("toWorkerChangeEvent", () => {
  const event = (init: Parameters<typeof create<typeof WorkerEventSchema>>[1]) =>
    create(WorkerEventSchema, { revision: 42n, worker: protoWorker(), occurredAt: timestampFromMs(lastHeartbeatAt), ...init });

  it("maps a health change with the health before, and nothing about removal", () => {
    expect(toWorkerChangeEvent(event({ type: WorkerEventType.HEALTH_CHANGED, previousHealthStatus: HealthStatus.HEALTHY }))).toEqual({
      type: "health-changed",
      revision: 42,
      worker: toWorkerInfo(protoWorker()),
      occurredAt: new Date(lastHeartbeatAt),
      previousHealth: "healthy",
    });
  });

  it.each([
    [WorkerEventType.UNREGISTERED, RemovalReason.UNREGISTERED, "unregistered", "unregistered"],
    [WorkerEventType.REMOVED_BY_CLEANUP, RemovalReason.EXPIRED, "removed-by-cleanup", "expired"],
    [WorkerEventType.UNREGISTERED, RemovalReason.REPLACED, "unregistered", "replaced"],
  ] as const)("maps a removal (%s) with its reason (%s)", (type, reason, typeName, reasonName) => {
    const mapped = toWorkerChangeEvent(event({ type, removalReason: reason }));
    expect(mapped).toMatchObject({ type: typeName, removalReason: reasonName });
    expect(mapped).not.toHaveProperty("previousHealth");
  });

  it("leaves out the fields the server did not send", () => {
    for (const type of [WorkerEventType.REGISTERED, WorkerEventType.UPDATED, WorkerEventType.UNREGISTERED]) {
      const mapped = toWorkerChangeEvent(event({ type }));
      expect(mapped).not.toHaveProperty("previousHealth");
      expect(mapped).not.toHaveProperty("removalReason");
    }
  });

  it("skips an event type it does not know, and refuses an event without a worker", () => {
    expect(toWorkerChangeEvent(event({ type: WorkerEventType.UNSPECIFIED }))).toBeUndefined();
    expect(toWorkerChangeEvent(event({ type: 99 as WorkerEventType }))).toBeUndefined();
    expect(() => toWorkerChangeEvent(create(WorkerEventSchema, { revision: 1n, type: WorkerEventType.UPDATED }))).toThrow(TypeError);
  });
});

describe("durationMsOf", () => {
  it("reads seconds and nanoseconds, and an absent duration as undefined", () => {
    expect(durationMsOf(durationFromMs(300_250))).toBe(300_250);
    expect(durationMsOf(undefined)).toBeUndefined();
  });
});
