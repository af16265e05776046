import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { WorkerNode, WorkerRegistryClient } from "../../clients/typescript/src/index.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { PostgresCluster } from "../support/postgres-cluster.js";
import { ReplicaSet, sleep, waitUntil } from "./replica-set.js";

/** grpc.health.v1 Check of one replica: its serving status, or UNKNOWN when it cannot answer. */
async function servingStatus(address: string): Promise<HealthCheckResponse_ServingStatus> {
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(Health), "Health");
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(request: object, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: { status: HealthCheckResponse_ServingStatus }) => void): void;
  };
  try {
    return await new Promise((resolve) =>
      client.check({ service: "" }, { deadline: Date.now() + 2000 }, (error, response) => resolve(error ? HealthCheckResponse_ServingStatus.UNKNOWN : response.status)),
    );
  } finally {
    client.close();
  }
}

describe.skipIf(!PostgresCluster.available())("three replicas when PostgreSQL goes away", () => {
  const sets: ReplicaSet[] = [];
  afterEach(async () => {
    for (const set of sets.splice(0)) await set.dispose();
  });

  it("a 30-second outage: streams stay up, writes answer UNAVAILABLE, reads are served, NOT_SERVING, then everything recovers with no worker lost or evicted", { timeout: 120_000 }, async () => {
    const cluster = await PostgresCluster.start({ fsync: "off" });
    // A 3 s healthy threshold and an 8 s TTL: a 30 s outage is ten times what it takes to evict a silent worker.
    const set = await ReplicaSet.start(3, { cluster });
    sets.push(set);
    const nodes = Array.from(
      { length: 9 },
      (_, i) =>
        new WorkerNode({
          registration: { nodeId: `outage-${i}`, capabilities: ["outage"], maxConcurrentTasks: 2 },
          clientOptions: { addresses: set.addresses, channelOptions: { "grpc.channel_id": `outage-${i}` } },
          reconnectBaseMs: 100,
          reconnectMaxMs: 1000,
        }),
    );
    const reconnects: string[] = [];
    for (const node of nodes) node.on("reconnecting", ({ workerId }) => reconnects.push(workerId));
    const orchestrator = new WorkerRegistryClient({ address: set.address(0), retry: false, channelOptions: { "grpc.channel_id": "outage-orchestrator" } });
    try {
      await Promise.all(nodes.map((node) => node.start()));
      const ids = nodes.map((node) => node.workerId!);
      await sleep(1500);
      for (const r of [0, 1, 2]) expect(await servingStatus(set.address(r))).toBe(HealthCheckResponse_ServingStatus.SERVING);

      cluster.stop();
      const downAt = performance.now();
      // Each replica notices at its next write (the heartbeat flush, every second) and stops serving.
      for (const r of [0, 1, 2]) {
        await waitUntil(`replica-${r} NOT_SERVING`, async () => (await servingStatus(set.address(r))) === HealthCheckResponse_ServingStatus.NOT_SERVING, 5000, 100);
      }
      const write = await orchestrator.registerWorker({ nodeId: "during", capabilities: ["outage"], maxConcurrentTasks: 1 }).catch((e: unknown) => e);
      expect(write).toMatchObject({ codeName: "UNAVAILABLE" });
      expect((write as Error).message).toMatch(/storage unavailable while trying to register a worker; retry later/);
      // Reads come from memory, heartbeats keep being answered, and nobody is degraded by the outage.
      while (performance.now() - downAt < 30_000) {
        const seen = await orchestrator.discoverWorkers({ capabilities: ["outage"] });
        expect(seen.map((w) => w.id).sort()).toEqual([...ids].sort());
        expect(seen.every((w) => w.healthStatus === "healthy")).toBe(true);
        await sleep(2000);
      }
      expect(reconnects).toEqual([]);

      await cluster.restart({ fsync: "off" });
      const upAt = performance.now();
      for (const r of [0, 1, 2]) {
        await waitUntil(`replica-${r} SERVING again`, async () => (await servingStatus(set.address(r))) === HealthCheckResponse_ServingStatus.SERVING, 10_000, 100);
      }
      console.log(`PostgreSQL down for ${((upAt - downAt) / 1000).toFixed(1)} s; all replicas serving again ${((performance.now() - upAt) / 1000).toFixed(1)} s after it returned`);
      await waitUntil("a leader again", () => set.leader(), 10_000, 100);
      expect((await orchestrator.registerWorker({ nodeId: "after", capabilities: ["after"], maxConcurrentTasks: 1 })).nodeId).toBe("after");
      // Well past the TTL again with the leader judging: every worker is still there, healthy, on every replica.
      await sleep(9000);
      for (const r of [0, 1, 2]) {
        const { workers } = await set.client(r).call("discoverWorkers", { filter: { capabilities: ["outage"] } });
        expect(workers.map((w: { id: string }) => w.id).sort()).toEqual([...ids].sort());
        expect(workers.every((w: { healthStatus: number }) => w.healthStatus === HealthStatus.HEALTHY)).toBe(true);
      }
      expect(nodes.map((node) => node.workerId)).toEqual(ids);
    } finally {
      orchestrator.close();
      await Promise.all(nodes.map((node) => node.stop().catch(() => undefined)));
    }
  });

  it("a PostgreSQL restart under load: only UNAVAILABLE while it is down, and the registry recovers by itself", { timeout: 60_000 }, async () => {
    const cluster = await PostgresCluster.start({ fsync: "off" });
    const set = await ReplicaSet.start(3, { cluster });
    sets.push(set);
    for (let i = 0; i < 6; i++) await set.client(i % 3).call("registerWorker", { nodeId: `load-${i}`, capabilities: ["load"], maxConcurrentTasks: 4 });
    const outcomes = new Map<string, number>();
    let running = true;
    const load = Array.from({ length: 6 }, async (_, i) => {
      const client = set.client(i % 3);
      while (running) {
        const outcome = await client
          .call("acquireWorker", { filter: { capabilities: ["load"] } })
          .then((grant: { reservationId: string }) => client.call("releaseWorker", { reservationId: grant.reservationId, success: true, durationMs: 1 }))
          .then(() => "OK", (error: grpc.ServiceError) => grpc.status[error.code]);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        await sleep(5);
      }
    });
    await sleep(1000);
    cluster.stop();
    await sleep(1500);
    await cluster.restart({ fsync: "off" });
    const okBefore = outcomes.get("OK") ?? 0;
    await waitUntil("acquisitions to succeed again", () => (outcomes.get("OK") ?? 0) > okBefore + 20, 15_000, 100);
    running = false;
    await Promise.all(load);
    console.log(`restart under load: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    // A reservation whose release failed with the database expires later; nothing else may fail.
    expect([...outcomes.keys()].filter((code) => !["OK", "UNAVAILABLE", "NOT_FOUND", "RESOURCE_EXHAUSTED"].includes(code))).toEqual([]);
    expect(outcomes.get("UNAVAILABLE") ?? 0).toBeGreaterThan(0);
    const stats = await Promise.all([0, 1, 2].map((r) => set.client(r).call("getRegistryStats")));
    expect(stats.map((s) => s.totalWorkers)).toEqual([6, 6, 6]);
    expect(stats.every((s) => s.replica.storeWritable)).toBe(true);
  });
});
