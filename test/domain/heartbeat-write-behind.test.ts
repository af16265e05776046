import Database from "better-sqlite3";
import { describe, expect, it, vi } from "vitest";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry } from "../support/registry-fixture.js";

const stored = (db: Database.Database, id: string) =>
  (db.prepare("SELECT last_heartbeat_at_ms AS at FROM workers WHERE id = ?").get(id) as { at: number } | undefined)?.at;

describe("heartbeat write-behind", () => {
  it("writes each worker heard since the last flush once, with its latest heartbeat, and nothing for the silent ones", async () => {
    const clock = new FakeClock();
    const db = new Database(":memory:");
    const { registry } = await createTestRegistry({}, { clock, store: new SqliteStore(db) });
    const beating = await registry.registerWorker({ nodeId: "beating", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    const silent = await registry.registerWorker({ nodeId: "silent", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    const registeredAt = clock.now();
    for (let i = 0; i < 50; i++) {
      clock.advance(10);
      registry.heartbeat(beating.id);
    }
    await registry.flushHeartbeats();
    expect(stored(db, beating.id)).toBe(clock.now());
    expect(stored(db, silent.id)).toBe(registeredAt);

    // Written: the batch is empty until the worker beats again.
    db.prepare("UPDATE workers SET last_heartbeat_at_ms = 0 WHERE id = ?").run(beating.id);
    await registry.flushHeartbeats();
    expect(stored(db, beating.id)).toBe(0);
    await registry.close();
  });

  it("keeps a batch that failed, and writes the latest heartbeat of each of its workers once storage is back", async () => {
    const clock = new FakeClock();
    const db = new Database(":memory:");
    const { registry } = await createTestRegistry({}, { clock, store: new SqliteStore(db) });
    const worker = await registry.registerWorker({ nodeId: "beating", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    clock.advance(1000);
    registry.heartbeat(worker.id);
    const firstBeat = clock.now();
    db.pragma("query_only = ON");
    await registry.flushHeartbeats();
    db.pragma("query_only = OFF");
    expect(stored(db, worker.id)).toBeLessThan(firstBeat);
    await registry.flushHeartbeats();
    expect(stored(db, worker.id)).toBe(firstBeat);

    db.pragma("query_only = ON");
    registry.heartbeat(worker.id);
    await registry.flushHeartbeats();
    clock.advance(1000);
    registry.heartbeat(worker.id);
    db.pragma("query_only = OFF");
    await registry.flushHeartbeats();
    expect(stored(db, worker.id)).toBe(clock.now());
    await registry.close();
  });

  it("writes nothing for a worker removed after it beat", async () => {
    const clock = new FakeClock();
    const db = new Database(":memory:");
    const { registry } = await createTestRegistry({}, { clock, store: new SqliteStore(db) });
    const worker = await registry.registerWorker({ nodeId: "leaving", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    registry.heartbeat(worker.id);
    await registry.unregisterWorker(worker.id);
    await registry.flushHeartbeats();
    expect(stored(db, worker.id)).toBeUndefined();
    await registry.close();
  });
  it("writes a flush in chunks of workers that registered near each other, whatever order they beat in", async () => {
    const clock = new FakeClock();
    const db = new Database(":memory:");
    const store = new SqliteStore(db);
    const { registry } = await createTestRegistry({}, { clock, store });
    const ids: string[] = [];
    for (let i = 0; i < 250; i++) {
      // Two in each millisecond: ties are ordered by id, whose prefix is the registration time.
      if (i % 2 === 0) clock.advance(1);
      ids.push((await registry.registerWorker({ nodeId: `node-${i}`, capabilities: ["cpu"], maxConcurrentTasks: 1 })).id);
    }
    // Beats in an order unrelated to registration: a fixed shuffle.
    const beatOrder = ids.map((id, i) => ({ id, key: (i * 7919) % 251 })).sort((a, b) => a.key - b.key);
    clock.advance(1000);
    for (const { id } of beatOrder) registry.heartbeat(id);
    const writes = vi.spyOn(store, "writeHeartbeats");
    await registry.flushHeartbeats();
    const chunks = writes.mock.calls.map(([heartbeats]) => [...heartbeats.keys()]);
    expect(chunks.map((chunk) => chunk.length)).toEqual([100, 100, 50]);
    expect(chunks.flat()).toEqual([...ids].sort());
    for (const id of ids) expect(stored(db, id)).toBe(clock.now());
    await registry.close();
  });
});
