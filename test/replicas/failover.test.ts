import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { WorkerNode, WorkerRegistryClient } from "../../clients/typescript/src/index.js";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { tempDirs } from "../support/temp-dir.js";
import { FAST_ARGS, ReplicaSet, sleep, waitUntil } from "./replica-set.js";

const sharedUrl = inject("postgresUrl");

/** A heartbeat stream to one replica, beating every `everyMs` until ended. */
function beat(set: ReplicaSet, replica: number, workerId: string, everyMs = 300) {
  const channel = new grpc.Client(set.address(replica), grpc.credentials.createInsecure(), { "grpc.channel_id": `beat-${workerId}-${replica}` });
  const stream = set.client(replica).grpc.heartbeatStream();
  stream.on("error", () => undefined);
  stream.on("data", () => undefined);
  let sequence = 0;
  const timer = setInterval(() => stream.write({ workerId, sequence: ++sequence }), everyMs);
  stream.write({ workerId, sequence: ++sequence });
  return {
    /** A clean goodbye. */
    end() {
      clearInterval(timer);
      stream.end();
      channel.close();
    },
    /** The connection dies under it, as when the worker's process is killed. */
    cut() {
      clearInterval(timer);
      stream.cancel();
      channel.close();
    },
  };
}

const healthOn = async (set: ReplicaSet, replica: number, workerId: string): Promise<number | undefined> =>
  set
    .client(replica)
    .call("getWorker", { workerId })
    .then(
      (r) => r.worker.healthStatus as number,
      () => undefined,
    );

describe.skipIf(sharedUrl === "")("three replicas on one PostgreSQL: health, leadership and failures", () => {
  const sets: ReplicaSet[] = [];
  const dirs = tempDirs();
  afterEach(async () => {
    for (const set of sets.splice(0)) await set.dispose();
  });
  afterAll(() => dirs.cleanup());

  it("health is fleet-wide, one replica leads, and another takes over when it dies; cleanup spares live workers", async () => {
    const set = await ReplicaSet.start(3, { sharedUrl });
    sets.push(set);
    const live = (await set.client(0).call("registerWorker", { nodeId: "live", capabilities: ["h"], maxConcurrentTasks: 1 })).worker.id;
    const silent = (await set.client(1).call("registerWorker", { nodeId: "silent", capabilities: ["h"], maxConcurrentTasks: 1 })).worker.id;
    const leaderBefore = await waitUntil("a leader", () => set.leader(), 5000);
    // The live worker's stream goes to a replica that is not the leader, so the leader's death does not cut it.
    const streamReplica = [0, 1, 2].find((r) => r !== leaderBefore)!;
    const stream = beat(set, streamReplica, live);
    try {
      // Past the healthy threshold (3 s): the silent worker is degraded everywhere, the live one healthy everywhere.
      await waitUntil("the silent worker degraded on every replica", async () => {
        const seen = await Promise.all([0, 1, 2].map((r) => healthOn(set, r, silent)));
        return seen.every((h) => h === HealthStatus.DEGRADED);
      });
      for (const r of [0, 1, 2]) expect(await healthOn(set, r, live)).toBe(HealthStatus.HEALTHY);

      const killedAt = performance.now();
      await set.stopReplica(leaderBefore, "SIGKILL");
      const leaderAfter = await waitUntil("another replica to take the lease", () => set.leader(), 10_000, 50);
      const takeoverMs = performance.now() - killedAt;
      console.log(`leader takeover after SIGKILL of replica-${leaderBefore}: replica-${leaderAfter} leads after ${takeoverMs.toFixed(0)} ms (lease TTL 2 s)`);
      expect(leaderAfter).not.toBe(leaderBefore);
      expect(takeoverMs).toBeLessThan(6000);

      // The new leader carries on: the silent worker goes unhealthy and is removed (TTL 8 s); the live one stays.
      const survivors = [0, 1, 2].filter((r) => r !== leaderBefore);
      await waitUntil(
        "the silent worker removed on every surviving replica",
        async () => (await Promise.all(survivors.map((r) => healthOn(set, r, silent)))).every((h) => h === undefined),
        20_000,
        100,
      );
      for (const r of survivors) expect(await healthOn(set, r, live)).toBe(HealthStatus.HEALTHY);
      const stats = await Promise.all(survivors.map((r) => set.client(r).call("getRegistryStats")));
      expect(stats.filter((s) => s.replica.leading).map((s) => s.replica.replicaId)).toEqual([`replica-${leaderAfter}`]);
      expect(stats.map((s) => Number(s.replica.leaderEpoch))).toEqual(stats.map(() => Number(stats[0]!.replica.leaderEpoch)));
    } finally {
      stream.end();
    }
  });

  it("a worker whose stream drops on any replica is degraded on every replica within a second", async () => {
    const set = await ReplicaSet.start(3, { sharedUrl });
    sets.push(set);
    const id = (await set.client(0).call("registerWorker", { nodeId: "dropped", capabilities: ["d"], maxConcurrentTasks: 1 })).worker.id;
    const stream = beat(set, 2, id);
    await waitUntil("the stream to be bound", async () => Number((await set.client(2).call("getRegistryStats")).revision) > 0);
    await sleep(700);
    const cutAt = performance.now();
    stream.cut();
    await waitUntil(
      "the worker degraded on every replica",
      async () => (await Promise.all([0, 1, 2].map((r) => healthOn(set, r, id)))).every((h) => h === HealthStatus.DEGRADED),
      1000,
      10,
    );
    console.log(`stream lost on replica-2: degraded on all three replicas after ${(performance.now() - cutAt).toFixed(0)} ms`);
  });

  it("a worker token issued by one replica is accepted by the others", async () => {
    const tokens = join(dirs.make(), "tokens");
    writeFileSync(tokens, "worker replica-worker-token-000000001\norchestrator replica-orchestrator-token-0001\n");
    const set = await ReplicaSet.start(3, { sharedUrl, args: [...FAST_ARGS, "--tokens-file", tokens] });
    sets.push(set);
    const as = (replica: number, token: string) => new WorkerRegistryClient({ address: set.address(replica), token, channelOptions: { "grpc.channel_id": `${replica}-${token}` } });
    const registrar = as(0, "replica-worker-token-000000001");
    const { id } = await registrar.registerWorker({ nodeId: "tokened", capabilities: ["t"], maxConcurrentTasks: 1 });
    const workerToken = registrar.workerToken(id)!;
    registrar.close();
    const onB = as(1, workerToken);
    const onC = as(2, "replica-orchestrator-token-0001");
    try {
      await waitUntil("the worker on replica-1", () => onB.getWorker(id).then(() => true, () => false), 3000);
      expect((await onB.heartbeat(id)).healthStatus).toBe("healthy");
      expect((await onC.getWorker(id)).id).toBe(id);
      await expect(onB.discoverWorkers({})).rejects.toMatchObject({ codeName: "PERMISSION_DENIED" });
    } finally {
      onB.close();
      onC.close();
    }
  });

  it("SIGKILL of a replica that holds streams: its WorkerNodes reconnect elsewhere with their ids, nothing lost, no duplicate, its reservations end", async () => {
    const set = await ReplicaSet.start(3, { sharedUrl, args: [...FAST_ARGS, "--reservation-ttl", "4s"] });
    sets.push(set);
    const nodes = Array.from(
      { length: 12 },
      (_, i) =>
        new WorkerNode({
          registration: { nodeId: `node-${i}`, capabilities: ["fleet"], maxConcurrentTasks: 2 },
          clientOptions: { addresses: set.addresses, channelOptions: { "grpc.channel_id": `node-${i}` } },
          reconnectBaseMs: 100,
          reconnectMaxMs: 500,
        }),
    );
    const connected = new Map<string, string[]>();
    for (const node of nodes) node.on("connected", ({ workerId }) => connected.set(workerId, [...(connected.get(workerId) ?? []), node.address ?? ""]));
    try {
      await Promise.all(nodes.map((node) => node.start()));
      const ids = nodes.map((node) => node.workerId!);
      await waitUntil("every node streaming", () => ids.every((id) => connected.has(id)));
      // The replica that holds the most streams dies.
      const byReplica = set.addresses.map((address) => ids.filter((id) => connected.get(id)!.at(-1) === address).length);
      const victim = byReplica.indexOf(Math.max(...byReplica));
      expect(byReplica[victim]).toBeGreaterThan(0);
      // Writes acknowledged by the victim, and two reservations it granted.
      const victimClient = set.client(victim);
      await victimClient.call("updateTaskCount", { workerId: ids[0], delta: 1 });
      const toRelease = await victimClient.call("acquireWorker", { filter: { capabilities: ["fleet"] } });
      const toExpire = await victimClient.call("acquireWorker", { filter: { capabilities: ["fleet"] } });
      const onVictim = ids.filter((id) => connected.get(id)!.at(-1) === set.address(victim));
      await set.stopReplica(victim, "SIGKILL");

      const others = [0, 1, 2].filter((r) => r !== victim);
      await waitUntil("the victim's nodes streaming to another replica", () => onVictim.every((id) => connected.get(id)!.length >= 2), 15_000, 50);
      for (const id of onVictim) expect(connected.get(id)!.at(-1)).not.toBe(set.address(victim));
      expect(nodes.map((node) => node.workerId)).toEqual(ids);
      const { workers } = await set.client(others[0]!).call("discoverWorkers", { filter: { capabilities: ["fleet"] } });
      expect(workers.map((w: { id: string }) => w.id).sort()).toEqual([...ids].sort());
      expect(workers.every((w: { healthStatus: number }) => w.healthStatus === HealthStatus.HEALTHY)).toBe(true);
      expect((await set.client(others[0]!).call("getWorker", { workerId: ids[0] })).worker.currentTasks).toBeGreaterThanOrEqual(1);
      // A reservation the dead replica granted is released on another; the other expires on time (TTL 4 s).
      expect((await set.client(others[1]!).call("releaseWorker", { reservationId: toRelease.reservationId, success: true, durationMs: 5 })).outcome).toBe(1);
      await waitUntil(
        "the other reservation to expire",
        async () => Number((await set.client(others[0]!).call("getRegistryStats")).activeReservations) === 0,
        10_000,
        100,
      );
      expect(Date.now()).toBeGreaterThanOrEqual(Number(toExpire.expiresAt.seconds) * 1000);
    } finally {
      await Promise.all(nodes.map((node) => node.stop().catch(() => undefined)));
    }
  });
});
