import { status } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import { openHeartbeats, sleep, waitUntil, type Heartbeats } from "../support/watch-issue4.js";

const FLEET = 20;
const SILENT = 5;

const describeEviction = (e: any) => `paused=${e.paused} pausesTotal=${e.pausesTotal} reason=${JSON.stringify(e.reason)}`;

interface FleetWorker {
  readonly client: RawRegistryClient;
  readonly id: string;
  readonly heartbeats: Heartbeats;
  beating: boolean;
}

describe("a registry paused (SIGSTOP) past the unhealthy threshold", () => {
  const dirs = tempDirs();
  let server: ServerProcess | undefined;

  afterAll(async () => {
    // Never leave a stopped server behind, whatever happened in the test.
    if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) {
      try {
        process.kill(server.child.pid!, "SIGCONT");
      } catch {
        // already gone
      }
      server.child.kill("SIGKILL");
      await server.exited;
    }
    dirs.cleanup();
  });

  it("does not evict its live fleet when resumed, records the pause, and later evicts only the silent workers", { timeout: 30_000 }, async () => {
    server = await startServerProcess([
      "--db",
      join(dirs.make(), "registry.db"),
      "--healthy-threshold",
      "1s",
      "--degraded-threshold",
      "2s",
      "--worker-ttl",
      "2s",
      "--cleanup-interval",
      "500ms",
      "--heartbeat-interval",
      "500ms",
    ]);
    const pid = server.child.pid!;
    const address = `127.0.0.1:${server.port}`;
    const admin = new RawRegistryClient(address);
    const fleet: FleetWorker[] = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      for (let i = 0; i < FLEET; i++) {
        const client = new RawRegistryClient(address, { "grpc.channel_id": 3000 + i });
        const { worker } = await client.call("registerWorker", { nodeId: `paused-fleet-${i}`, capabilities: ["pause"], maxConcurrentTasks: 4 });
        const heartbeats = openHeartbeats(client, worker.id);
        await heartbeats.beat();
        fleet.push({ client, id: worker.id, heartbeats, beating: true });
      }
      // Every worker heartbeats every 200 ms on its own connection, also while the server is stopped.
      timer = setInterval(() => fleet.forEach((w) => w.beating && w.heartbeats.send()), 200);
      // Let the eviction guard see a few full intake windows first.
      await sleep(1200);
      const before = await admin.call("getRegistryStats");
      expect(before).toMatchObject({ totalWorkers: FLEET, healthyWorkers: FLEET });
      // A fleet heartbeating normally is no reason to hold evictions (soft: the rest of the test still runs).
      expect.soft(before.eviction, "eviction status before the pause").toMatchObject({ paused: false, pausesTotal: 0n });

      process.kill(pid, "SIGSTOP");
      try {
        await sleep(4000);
      } finally {
        process.kill(pid, "SIGCONT");
      }
      await sleep(2000);

      const after = await admin.call("getRegistryStats");
      const removedDuringPause = server.logs.filter((entry) => entry.msg === "worker removed by cleanup");
      expect(removedDuringPause, JSON.stringify(removedDuringPause)).toEqual([]);
      expect(after).toMatchObject({ totalWorkers: FLEET, healthyWorkers: FLEET, degradedWorkers: 0, unhealthyWorkers: 0 });
      for (const worker of fleet) expect((await admin.call("getWorker", { workerId: worker.id })).worker.healthStatus).toBe(HealthStatus.HEALTHY);
      // The pause was noticed and recorded: a new pause counted, or one held now that names the registry's own pause.
      const recorded =
        after.eviction.pausesTotal > before.eviction.pausesTotal || (after.eviction.paused && /paus|stall/.test(after.eviction.reason as string));
      expect.soft(recorded, `eviction after the pause: ${describeEviction(after.eviction)}; before: ${describeEviction(before.eviction)}`).toBe(true);

      // Now 5 workers really go silent (a clean goodbye, so only their deadlines count): they are removed, the 15 stay.
      const silent = fleet.slice(0, SILENT);
      const live = fleet.slice(SILENT);
      for (const worker of silent) {
        worker.beating = false;
        worker.heartbeats.stream.end();
      }
      const silencedAt = performance.now();
      await waitUntil("the silent workers to be removed", async () => (await admin.call("getRegistryStats")).totalWorkers === FLEET - SILENT, 8000, 100).catch(
        async (error: Error) => {
          const stats = await admin.call("getRegistryStats");
          throw new Error(`${error.message}: ${stats.totalWorkers} workers left; eviction ${describeEviction(stats.eviction)}`);
        },
      );
      const removalMs = performance.now() - silencedAt;
      // Not before their TTL (2 s) has passed.
      expect(removalMs).toBeGreaterThan(2000);
      for (const worker of silent) expect((await admin.fail("getWorker", { workerId: worker.id })).code).toBe(status.NOT_FOUND);
      for (const worker of live) expect((await admin.call("getWorker", { workerId: worker.id })).worker.healthStatus).toBe(HealthStatus.HEALTHY);
      const removed = server.logs.filter((entry) => entry.msg === "worker removed by cleanup").map((entry) => entry.workerId);
      expect(removed.sort()).toEqual(silent.map((w) => w.id).sort());
      expect((await admin.call("getRegistryStats")).healthyWorkers).toBe(FLEET - SILENT);
    } finally {
      if (timer !== undefined) clearInterval(timer);
      for (const worker of fleet) {
        worker.heartbeats.stream.cancel();
        worker.client.close();
      }
      admin.close();
    }
  });
});
