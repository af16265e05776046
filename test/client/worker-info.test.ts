import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  AcquireWorkerResponseSchema,
  GetRegistryStatsResponseSchema,
  HeartbeatResponseSchema,
  ReleaseOutcome,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import {
  HealthStatus,
  RankedWorkerSchema,
  WorkerSchema,
  WorkerState,
  type Worker,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import {
  durationMsOf,
  healthName,
  healthValue,
  releaseOutcomeName,
  stateName,
  toRankedWorkerInfo,
  toRegistryStats,
  toWorkerAcquisition,
  toWorkerHeartbeat,
  toWorkerInfo,
  type WorkerHealth,
} from "../../clients/typescript/src/worker-info.js";

const registeredAt = Date.UTC(2026, 0, 1, 12, 0, 0, 123);
const lastHeartbeatAt = registeredAt + 90_000;

function protoWorker(
  overrides: Partial<Pick<Worker, "healthStatus" | "metrics" | "registeredAt" | "lastHeartbeatAt" | "labels" | "version" | "state" | "drainDeadline">> = {},
): Worker {
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
      labels: {},
      version: "",
      state: "active",
      drainDeadline: undefined,
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

  it("gives labels, version, state and the drain deadline of a draining worker", () => {
    const drainDeadline = lastHeartbeatAt + 600_000;
    const info = toWorkerInfo(
      overTheWire(
        protoWorker({
          labels: { zone: "eu-1", "example.com/gpu": "a100" },
          version: "2026.11.3",
          state: WorkerState.DRAINING,
          drainDeadline: timestampFromMs(drainDeadline),
        }),
      ),
    );
    expect(info).toMatchObject({
      labels: { zone: "eu-1", "example.com/gpu": "a100" },
      version: "2026.11.3",
      state: "draining",
      drainDeadline: new Date(drainDeadline),
    });
  });

  it("copies labels, so changing the result cannot change the message", () => {
    const worker = protoWorker({ labels: { zone: "eu-1" } });
    toWorkerInfo(worker).labels.zone = "us-1";
    expect(worker.labels).toEqual({ zone: "eu-1" });
  });
});

describe("state names", () => {
  it("maps each known state", () => {
    expect(stateName(WorkerState.ACTIVE)).toBe("active");
    expect(stateName(WorkerState.CORDONED)).toBe("cordoned");
    expect(stateName(WorkerState.DRAINING)).toBe("draining");
  });

  it("reads UNSPECIFIED, from a registry before worker states, as active, and a state it does not know as out of rotation", () => {
    expect(stateName(WorkerState.UNSPECIFIED)).toBe("active");
    expect(stateName(42 as WorkerState)).toBe("cordoned");
  });
});

describe("toWorkerHeartbeat", () => {
  it("says whether the worker drains, with the reply's deadline", () => {
    const deadline = lastHeartbeatAt + 60_000;
    const reply = create(HeartbeatResponseSchema, {
      worker: protoWorker({ state: WorkerState.DRAINING, drainDeadline: timestampFromMs(deadline) }),
      drainRequested: true,
      drainDeadline: timestampFromMs(deadline),
    });
    expect(toWorkerHeartbeat(fromBinary(HeartbeatResponseSchema, toBinary(HeartbeatResponseSchema, reply)))).toMatchObject({
      id: "worker-1767268800123-abc123xyz",
      state: "draining",
      drainRequested: true,
      drainDeadline: new Date(deadline),
    });
  });

  it("is no drain for an active worker, and refuses a reply without a worker", () => {
    const heartbeat = toWorkerHeartbeat(create(HeartbeatResponseSchema, { worker: protoWorker({ state: WorkerState.ACTIVE }) }));
    expect(heartbeat).toMatchObject({ drainRequested: false, state: "active", drainDeadline: undefined });
    expect(() => toWorkerHeartbeat(create(HeartbeatResponseSchema, {}))).toThrow(TypeError);
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

describe("durationMsOf", () => {
  it("reads seconds and nanoseconds, and an absent duration as undefined", () => {
    expect(durationMsOf(durationFromMs(300_250))).toBe(300_250);
    expect(durationMsOf(undefined)).toBeUndefined();
  });
});
