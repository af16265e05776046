import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { replicaLine, workersCommand, type FleetCommandIo } from "../../src/cli/fleet-commands.js";
import { ReplicaSet, waitUntil } from "./replica-set.js";

const sharedUrl = inject("postgresUrl");

function capture(): { io: FleetCommandIo; stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (text) => out.push(text), stderr: (text) => err.push(text), env: {} }, stdout: () => out.join("\n"), stderr: () => err.join("\n") };
}

const replica = { replicaId: "replica-b", store: "postgres", leading: false, leaderId: "replica-a", leaderEpoch: 3, leadingSince: undefined, appliedRevision: 42, replicationLagMs: 4, storeWritable: true };

describe("the Replica line of worker-registry workers", () => {
  it("names the replica, who leads and the lag; on SQLite, one process; and says when the database refuses writes", () => {
    expect(replicaLine(replica)).toBe("replica-b (PostgreSQL; leader replica-a; replication lag 4 ms)");
    expect(replicaLine({ ...replica, leading: true, leaderId: "replica-b", replicationLagMs: 12.5 })).toBe("replica-b (PostgreSQL; leading; replication lag 12.5 ms)");
    expect(replicaLine({ ...replica, leaderId: "" })).toBe("replica-b (PostgreSQL; no leader at the moment; replication lag 4 ms)");
    expect(replicaLine({ ...replica, storeWritable: false })).toBe("replica-b (PostgreSQL; leader replica-a; replication lag 4 ms; database unreachable: writes refused)");
    expect(replicaLine({ ...replica, replicaId: "host:4242", store: "sqlite", leading: true, leaderId: "host:4242", replicationLagMs: 0 })).toBe("host:4242 (SQLite, one process)");
  });
});

describe.skipIf(sharedUrl === "")("worker-registry workers against three replicas on PostgreSQL", () => {
  let set: ReplicaSet;
  beforeAll(async () => {
    set = await ReplicaSet.start(3, { sharedUrl });
  }, 30_000);
  afterAll(async () => {
    await set?.dispose();
  });

  it("says which replica answered, who leads and the lag, and asks the next address when the first is gone", { timeout: 30_000 }, async () => {
    const leader = await waitUntil("a leader", () => set.leader(), 10_000, 50);
    const first = (leader + 1) % 3;
    const second = (leader + 2) % 3;
    await set.client(leader).call("registerWorker", { nodeId: "coder-1", capabilities: ["coder"], maxConcurrentTasks: 2 });
    // Written on the leader: the replicas the command asks show it once they have applied it.
    for (const r of [first, second]) {
      await waitUntil(`replica-${r} to know the worker`, async () => (await set.client(r).call("getRegistryStats")).totalWorkers === 1, 5000, 20);
    }
    const args = ["--address", set.address(first), "--address", set.address(second)];

    const asked = capture();
    expect(await workersCommand(args, asked.io)).toBe(0);
    const lines = asked.stdout().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^Registry      ${set.address(first)} \\(server time `));
    expect(lines[1]).toMatch(new RegExp(`^Replica       replica-${first} \\(PostgreSQL; leader replica-${leader}; replication lag \\d+(\\.\\d)? ms\\)$`));
    expect(lines).toContain("Workers       1");

    await set.stopReplica(first, "SIGKILL");
    const failedOver = capture();
    expect(await workersCommand(args, failedOver.io)).toBe(0);
    const after = failedOver.stdout().split("\n");
    expect(after[0]).toMatch(new RegExp(`^Registry      ${set.address(second)} \\(server time `));
    expect(after[1]).toMatch(new RegExp(`^Replica       replica-${second} \\(PostgreSQL; leader replica-${leader}; replication lag \\d+(\\.\\d)? ms\\)$`));
    expect(after).toContain("Workers       1");
  });
});
