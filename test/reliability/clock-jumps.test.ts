import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";
import { tempDirs } from "../support/temp-dir.js";

/**
 * The wall clock steps (NTP, an operator, a VM resumed on another host) while
 * the registry runs. Deadlines inside the process follow monotonic time, so a
 * step forwards or backwards must not degrade, evict or expire anything, and
 * events must stay in revision order, which is the order things happened,
 * even when their wall-clock timestamps go backwards. All on the injected
 * clock: hours pass in microseconds.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const FLEET = 50;
const worker = (i: number) => ({ nodeId: `clock-${i}`, capabilities: ["clock", i % 2 === 0 ? "even" : "odd"], maxConcurrentTasks: 4 });

const dirs = tempDirs();
const stores: SqliteStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  dirs.cleanup();
});

function fileStore(): SqliteStore {
  const store = openSqliteStore({ path: join(dirs.make("registry-clock-"), "registry.db") });
  stores.push(store);
  return store;
}

describe("wall-clock jumps with the injected clock", () => {
  it("a jump forwards or backwards degrades, evicts and expires nothing, and events stay in revision order", async () => {
    const clock = new FakeClock();
    const store = fileStore();
    // The eviction guard's collapse rule is off in the fixture; its stall rule reads monotonic time only.
    const { registry } = await createTestRegistry({}, { clock, store });
    const ids: string[] = [];
    for (let i = 0; i < FLEET; i++) ids.push((await registry.registerWorker(worker(i))).id);
    const events: WorkerEvent[] = [];
    const stop = await registry.watch(NO_FILTER, 1, (event) => events.push(event));

    /** A minute of normal life: every worker heartbeats, a task comes and goes, the background work runs. */
    const minute = async (label: string) => {
      clock.advance(MINUTE);
      for (const id of ids) registry.heartbeat(id);
      await registry.updateTaskCount(ids[0]!, 1);
      await registry.updateTaskCount(ids[0]!, -1);
      await registry.tick();
      expect(await registry.cleanup(), `evicted ${label}`).toBe(0);
      await registry.flushHeartbeats();
      await registry.pruneEventLog();
    };
    const assertWhole = (label: string) => {
      const stats = registry.getRegistryStats();
      expect([stats.totalWorkers, stats.healthyWorkers, stats.activeReservations], label).toEqual([FLEET, FLEET, 1]);
    };

    await minute("before any jump");
    const reservation = await registry.acquireWorker({ capabilities: ["odd"], healthStatuses: [], minAvailableCapacity: 0 });
    const wallBefore = clock.now();

    clock.jumpWall(6 * HOUR);
    await registry.tick();
    expect(await registry.cleanup()).toBe(0);
    assertWhole("right after a 6 h jump forwards");
    for (let i = 0; i < 3; i++) await minute(`after the jump forwards (${i})`);
    assertWhole("3 minutes after the jump forwards");
    expect(registry.getWorker(ids[1]!).lastHeartbeatAtMs, "timestamps shown to users follow the wall clock").toBeGreaterThan(wallBefore + 6 * HOUR);

    clock.jumpWall(-12 * HOUR);
    await registry.tick();
    expect(await registry.cleanup()).toBe(0);
    assertWhole("right after a 12 h jump backwards");
    for (let i = 0; i < 3; i++) await minute(`after the jump backwards (${i})`);
    assertWhole("3 minutes after the jump backwards");

    // The reservation (10 min TTL) survived 18 h of wall-clock steps but only 7 minutes of real time: it is still active.
    expect((await registry.releaseWorker(reservation.reservationId, true, 5)).outcome).toBe("released");
    // No health event at all: nobody was ever degraded.
    expect(events.filter((e) => e.type === "health_changed")).toEqual([]);

    // Events: delivered in revision order without gaps, and the log on disk holds the same, in the order the
    // changes were made, although their wall-clock timestamps went 12 h backwards half-way.
    const revisions = events.map((e) => e.revision);
    expect(revisions).toEqual(revisions.map((_, i) => revisions[0]! + i));
    const stored = await store.readEvents(1, 10_000);
    expect(stored.map((e) => e.revision)).toEqual(stored.map((_, i) => stored[0]!.revision + i));
    expect(stored.at(-1)!.revision).toBe(registry.getRegistryStats().revision);
    const taskEvents = stored.filter((e) => e.type === "updated" && e.worker.id === ids[0]);
    const currentTasks = taskEvents.map((e) => e.worker.currentTasks);
    // +1, -1 every minute: 1, 0, 1, 0, ... in revision order.
    expect(currentTasks).toEqual(currentTasks.map((_, i) => (i % 2 === 0 ? 1 : 0)));
    const stamps = stored.map((e) => e.occurredAtMs);
    expect(stamps.some((at, i) => i > 0 && at < stamps[i - 1]!), "the wall-clock timestamps did go backwards").toBe(true);
    stop();

    // Time still works after the jumps: workers that fall silent are degraded, unhealthy, then removed on monotonic time.
    const silent = new Set(ids.slice(0, 5));
    for (let m = 0; m < 16; m++) {
      clock.advance(MINUTE);
      for (const id of ids) if (!silent.has(id)) registry.heartbeat(id);
      await registry.tick();
    }
    expect(await registry.cleanup()).toBe(silent.size);
    expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: FLEET - silent.size, healthyWorkers: FLEET - silent.size });
    await registry.close();
  });

  it("pruning after a jump backwards keeps the log gapless: nothing newer is deleted while something older is kept", async () => {
    const clock = new FakeClock();
    const store = fileStore();
    const { registry } = await createTestRegistry({ eventTtlMs: MINUTE }, { clock, store });
    const id = (await registry.registerWorker(worker(0))).id;
    for (let i = 0; i < 5; i++) await registry.updateTaskCount(id, i % 2 === 0 ? 1 : -1);
    clock.jumpWall(-HOUR);
    for (let i = 0; i < 5; i++) await registry.updateTaskCount(id, i % 2 === 0 ? 1 : -1);
    clock.advance(2 * MINUTE);
    await registry.pruneEventLog();
    // By the wall clock the last five events are an hour old and the first six two minutes: deleting the old-looking
    // ones would punch a hole after revision 6. Pruning stops at the first event young enough to keep.
    expect((await store.readEvents(1, 100)).map((e) => e.revision)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // Once real time has passed the retention for all of them, they all go, and revisions carry on from 11.
    clock.advance(70 * MINUTE);
    registry.heartbeat(id);
    await registry.pruneEventLog();
    expect(await store.readEvents(1, 100)).toEqual([]);
    await registry.updateTaskCount(id, 1);
    expect((await store.readEvents(1, 100)).map((e) => e.revision)).toEqual([12]);
    await registry.close();
  });

  // Regression test: start-up used to remove the workers whose last stored heartbeat was more than the TTL before
  // the registry's last "alive" time, both wall-clock times, and a step forwards shortly before a restart removed
  // 49 of these 50 live workers.
  it("a restart shortly after a jump forwards does not remove the workers that have not heartbeated since the jump", async () => {
    const clock = new FakeClock();
    const store = fileStore();
    const first = await createTestRegistry({}, { clock, store });
    const ids: string[] = [];
    for (let i = 0; i < FLEET; i++) ids.push((await first.registry.registerWorker(worker(i))).id);
    clock.advance(2 * MINUTE);
    for (const id of ids) first.registry.heartbeat(id);
    await first.registry.flushHeartbeats();
    clock.jumpWall(HOUR);
    // One minute later (real time) one worker has heartbeated since the step; the registry flushes and then restarts.
    clock.advance(MINUTE);
    first.registry.heartbeat(ids[0]!);
    await first.registry.flushHeartbeats();
    await first.registry.close();

    clock.advance(10 * SECOND);
    const second = await createTestRegistry({}, { clock, store });
    expect(second.registry.getRegistryStats().totalWorkers).toBe(FLEET);
    await second.registry.close();
  });
});
