import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/domain/clock.js";
import { WorkerNotFoundError } from "../../src/domain/errors.js";
import { silentLogger } from "../../src/domain/logger.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { WorkerRegistry } from "../../src/domain/worker-registry.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { NO_FILTER, seededRandom } from "../support/registry-fixture.js";
import { worker } from "../store/store-contract.js";

async function eventually(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("changes another process writes into the same store", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("reach a running registry's read model and its watchers, in revision order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "second-writer-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "registry.db");
    const store = openSqliteStore({ path, backgroundCheckpoints: false });
    let ids = 0;
    const registry = await WorkerRegistry.create({
      store,
      clock: systemClock,
      log: silentLogger,
      options: compileRegistryOptions(),
      newWorkerId: () => `worker-1-own${ids++}`,
      newReservationId: () => `rsv-1-own${ids++}`,
      newWorkerSecret: () => Buffer.alloc(32, 1).toString("base64url"),
      random: seededRandom(),
      replicaId: "running",
      timing: { replicaPollMs: 50 },
    });
    registry.beginServing();
    cleanups.push(async () => {
      await registry.close();
      await store.close();
    });
    const events: WorkerEvent[] = [];
    await registry.watch(NO_FILTER, 0, (event) => events.push(event));

    // The second writer: another connection to the same file, as a second process (or a tool) would open.
    const second: SqliteStore = openSqliteStore({ path, backgroundCheckpoints: false });
    cleanups.push(() => second.close());

    const own = await registry.registerWorker({ nodeId: "own", capabilities: ["coder"], maxConcurrentTasks: 4 });
    const now = Date.now();
    await second.registerWorker(worker("worker-1-theirs", { nodeId: "theirs", registeredAtMs: now, lastHeartbeatAtMs: now }), now);
    await second.adjustTaskCount("worker-1-theirs", 2, now);
    // The registry's next own write comes after a gap: the events before it are applied first.
    await registry.updateTaskCount(own.id, 1);
    expect(registry.getWorker("worker-1-theirs")).toMatchObject({ nodeId: "theirs", currentTasks: 2 });
    await eventually("four events", () => events.length === 4);
    expect(events.map((e) => [e.revision, e.type, e.worker.nodeId])).toEqual([
      [1, "registered", "own"],
      [2, "registered", "theirs"],
      [3, "updated", "theirs"],
      [4, "updated", "own"],
    ]);

    // Without a write of its own, the registry's tail of the log brings the change in.
    await second.unregisterWorker("worker-1-theirs", Date.now());
    await eventually("the unregistration", () => events.length === 5);
    expect(events[4]).toMatchObject({ revision: 5, type: "unregistered", reason: "unregistered", worker: { id: "worker-1-theirs" } });
    expect(() => registry.getWorker("worker-1-theirs")).toThrow(WorkerNotFoundError);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 1, usedCapacity: 1, revision: 5 });
  });
});
