import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReplicaSet, waitUntil } from "./replica-set.js";

const sharedUrl = inject("postgresUrl");

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe.skipIf(sharedUrl === "")("three replicas on one PostgreSQL: one registry, whichever replica answers", () => {
  let set: ReplicaSet;
  beforeAll(async () => {
    set = await ReplicaSet.start(3, { sharedUrl });
  }, 60_000);
  afterAll(async () => {
    await set?.dispose();
  });

  it("a worker registered on one replica is visible on the others within a second, with the same record", async () => {
    const lags: number[] = [];
    for (let i = 0; i < 30; i++) {
      const writer = i % 3;
      const { worker } = await set.client(writer).call("registerWorker", { nodeId: `visible-${i}`, capabilities: ["vis"], maxConcurrentTasks: 4 });
      const registeredAt = performance.now();
      for (const reader of [0, 1, 2].filter((r) => r !== writer)) {
        await waitUntil(`worker ${i} on replica ${reader}`, () => set.client(reader).call("getWorker", { workerId: worker.id }).then(() => true, () => false), 5000, 2);
        lags.push(performance.now() - registeredAt);
      }
    }
    console.log(`replication lag over ${lags.length} reads: median ${median(lags).toFixed(1)} ms, worst ${Math.max(...lags).toFixed(1)} ms`);
    expect(Math.max(...lags)).toBeLessThan(1000);

    // Once writes stop, every replica answers the same record and the same stats.
    const workers = await Promise.all([0, 1, 2].map((r) => set.client(r).call("discoverWorkers", { filter: { capabilities: ["vis"] } })));
    expect(workers[1].workers).toEqual(workers[0].workers);
    expect(workers[2].workers).toEqual(workers[0].workers);
    expect(workers[0].workers).toHaveLength(30);
    const stats = await Promise.all([0, 1, 2].map((r) => set.client(r).call("getRegistryStats")));
    const comparable = ({ serverTime: _t, replica: _r, eviction: _e, ...rest }: Record<string, unknown>) => rest;
    expect(comparable(stats[1])).toEqual(comparable(stats[0]));
    expect(comparable(stats[2])).toEqual(comparable(stats[0]));
    expect(stats.map((s) => s.replica.replicaId)).toEqual(["replica-0", "replica-1", "replica-2"]);
    expect(stats.filter((s) => s.replica.leading)).toHaveLength(1);
    expect(new Set(stats.map((s) => s.replica.leaderId))).toEqual(new Set([stats.find((s) => s.replica.leading)!.replica.replicaId]));
  });
});
