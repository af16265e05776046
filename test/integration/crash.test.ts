import { status, type ServiceError } from "@grpc/grpc-js";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { startServerProcess } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";

/** What one client saw acknowledged, and what it sent without an answer. */
interface Ledger {
  workers: Map<string, { ackedTasks: number; pendingTasks: number; ackedCompletions: number; pendingCompletions: number }>;
  unansweredRegistrations: number;
}

/** Mixed writes until the connection fails: register, then +1 task and a completion, again and again. */
async function writeUntilKilled(client: RawRegistryClient, ledger: Ledger, writer: string): Promise<void> {
  for (let node = 0; ; node++) {
    let id: string;
    try {
      ledger.unansweredRegistrations++;
      id = (await client.call("registerWorker", { nodeId: `crash-${writer}-${node}`, capabilities: ["coder"], maxConcurrentTasks: 10_000 })).worker.id;
      ledger.unansweredRegistrations--;
      const entry = { ackedTasks: 0, pendingTasks: 0, ackedCompletions: 0, pendingCompletions: 0 };
      ledger.workers.set(id, entry);
      for (let i = 0; i < 5; i++) {
        entry.pendingTasks++;
        await client.call("updateTaskCount", { workerId: id, delta: 1 });
        entry.pendingTasks--;
        entry.ackedTasks++;
        entry.pendingCompletions++;
        await client.call("recordTaskCompletion", { workerId: id, success: i % 2 === 0, durationMs: 10 });
        entry.pendingCompletions--;
        entry.ackedCompletions++;
      }
    } catch (error) {
      expect((error as ServiceError).code).toBe(status.UNAVAILABLE);
      return;
    }
  }
}

describe("kill -9 in the middle of writes", () => {
  const dirs = tempDirs();
  afterEach(() => dirs.cleanup());

  it("loses no acknowledged registration, task count or completion, and leaves an intact database", async () => {
    const dbPath = join(dirs.make(), "registry.db");
    const ledger: Ledger = { workers: new Map(), unansweredRegistrations: 0 };
    for (let round = 0; round < 3; round++) {
      const server = await startServerProcess(["--db", dbPath]);
      const clients = Array.from({ length: 4 }, (_, i) => new RawRegistryClient(`127.0.0.1:${server.port}`, { "grpc.channel_id": i }));
      const writers = clients.map((client, writer) => writeUntilKilled(client, ledger, `${round}-${writer}`));
      // Kill at a different moment each round, while every writer is mid-flight.
      await new Promise((resolve) => setTimeout(resolve, 150 + round * 70));
      server.child.kill("SIGKILL");
      expect((await server.exited).signal).toBe("SIGKILL");
      await Promise.all(writers);
      clients.forEach((client) => client.close());
    }
    expect(ledger.workers.size).toBeGreaterThan(10);

    const store = openSqliteStore({ path: dbPath });
    try {
      expect(store.integrityCheck()).toBe("ok");
      const { workers } = await store.load();
      const stored = new Map(workers.map((w) => [w.id, w]));
      // A write in flight at the kill may or may not have landed; an acknowledged one must have.
      expect(stored.size).toBeGreaterThanOrEqual(ledger.workers.size);
      expect(stored.size).toBeLessThanOrEqual(ledger.workers.size + ledger.unansweredRegistrations);
      for (const [id, entry] of ledger.workers) {
        const worker = stored.get(id);
        expect(worker, `acknowledged registration ${id}`).toBeDefined();
        expect(worker!.currentTasks).toBeGreaterThanOrEqual(entry.ackedTasks);
        expect(worker!.currentTasks).toBeLessThanOrEqual(entry.ackedTasks + entry.pendingTasks);
        const completions = worker!.tasksCompleted + worker!.tasksFailed;
        expect(completions).toBeGreaterThanOrEqual(entry.ackedCompletions);
        expect(completions).toBeLessThanOrEqual(entry.ackedCompletions + entry.pendingCompletions);
        expect(worker!.currentTasks).toBeLessThanOrEqual(worker!.maxConcurrentTasks);
      }
    } finally {
      await store.close();
    }
  });

  it("SIGTERM shuts down gracefully: exit code 0, heartbeats flushed, database closed", async () => {
    const dbPath = join(dirs.make(), "registry.db");
    const server = await startServerProcess(["--db", dbPath]);
    const client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    const worker = (await client.call("registerWorker", { nodeId: "graceful", capabilities: ["coder"], maxConcurrentTasks: 1 })).worker;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const beat = (await client.call("heartbeat", { workerId: worker.id })).worker.lastHeartbeatAt;
    client.close();
    server.child.kill("SIGTERM");
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(server.logs.map((l) => l.msg)).toContain("registry stopped");

    const store = openSqliteStore({ path: dbPath });
    try {
      const { workers } = await store.load();
      expect(workers).toHaveLength(1);
      // The heartbeat was acknowledged less than one flush interval before SIGTERM: only the shutdown flush wrote it.
      expect(workers[0]!.lastHeartbeatAtMs).toBe(Number(beat.seconds) * 1000 + Math.floor(beat.nanos / 1e6));
    } finally {
      await store.close();
    }
  });
});
