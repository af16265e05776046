import { afterEach, describe, expect, it } from "vitest";
import { LeaseLostError } from "../../src/domain/errors.js";
import { DuplicateWorkerIdError, type Lease, type RegistryStore } from "../../src/domain/registry-store.js";
import type { CommittedEvent } from "../../src/domain/worker-events.js";
import type { ReservationRecord, WorkerRecord } from "../../src/domain/worker-record.js";

/** A store to test, and how to open the same storage again (as after a restart), or a second writer on it. */
export interface StoreHarness {
  readonly store: RegistryStore;
  /** Closes the store and opens the same storage again. */
  reopen(): Promise<RegistryStore>;
  /** Another connection to the same storage, as a second registry process would have. */
  second(): Promise<RegistryStore>;
  /** Releases everything the harness opened. */
  dispose(): Promise<void>;
}

export function worker(id: string, overrides: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id,
    nodeId: `node-of-${id}`,
    capabilities: ["gpu", "cpu"],
    maxConcurrentTasks: 4,
    currentTasks: 0,
    tasksCompleted: 0,
    tasksFailed: 0,
    totalTaskDurationMs: 0,
    registeredAtMs: 1_000,
    lastHeartbeatAtMs: 1_000,
    health: "healthy",
    tokenHash: "a".repeat(64),
    registeredBy: null,
    labels: {},
    version: "",
    state: "active",
    drainDeadlineMs: null,
    ...overrides,
  };
}

export function reservation(id: string, workerId: string, overrides: Partial<ReservationRecord> = {}): ReservationRecord {
  return { id, workerId, createdAtMs: 2_000, expiresAtMs: 32_000, ...overrides };
}

const won = { success: true, durationMs: 100 };
const lost = { success: false, durationMs: 300 };

/**
 * The behaviour every RegistryStore must have, written against the interface
 * only: atomic semantic operations, events built from what was written,
 * revisions gap-free and increasing in commit order, refusals that change
 * nothing, leases that fence, and recovery after a restart. Run by each
 * store's own test file with a harness that opens it.
 */
export function describeStoreContract(name: string, open: () => Promise<StoreHarness>): void {
  describe(`${name}: the store contract`, () => {
    let harness: StoreHarness | undefined;
    afterEach(async () => {
      await harness?.dispose();
      harness = undefined;
    });
    const start = async () => {
      harness = await open();
      return harness;
    };
    const lead = async (store: RegistryStore, owner = "leader"): Promise<Lease> => {
      const lease = await store.lead(owner, 60_000);
      expect(lease.owner).toBe(owner);
      return lease;
    };
    /** The log, read through the interface, must hold exactly the events the writes returned. */
    const expectLogged = async (store: RegistryStore, written: readonly CommittedEvent[]) => {
      const logged = await store.readEvents(1, 100_000);
      expect(logged).toEqual(written);
      expect(logged.map((e) => e.revision)).toEqual(logged.map((_, i) => i + 1));
      expect(await store.headRevision()).toBe(logged.length);
    };

    it("starts empty: no worker, revision 0, never alive", async () => {
      const { store } = await start();
      expect(await store.load()).toEqual({ workers: [], reservations: [], revision: 0, compactedRevision: 0, lastAliveAtMs: null });
      expect(await store.readEvents(1, 10)).toEqual([]);
      expect(await store.headRevision()).toBe(0);
    });

    it("registers a worker with one event carrying its record, and loads it back", async () => {
      const { store } = await start();
      const record = worker("a", { capabilities: ["zeta", "alpha", "mid"], registeredBy: "b".repeat(64) });
      const { events } = await store.registerWorker(record, 1_500);
      expect(events).toEqual([{ revision: 1, type: "registered", occurredAtMs: 1_500, worker: record }]);
      expect((await store.load()).workers).toEqual([record]);
      await expectLogged(store, events);
    });

    it("refuses a duplicate id with DuplicateWorkerIdError and changes nothing", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a"), 1_000);
      await expect(store.registerWorker(worker("a", { nodeId: "other", capabilities: ["x"] }), 1_100)).rejects.toThrow(DuplicateWorkerIdError);
      expect((await store.load()).workers).toEqual([worker("a")]);
      expect(await store.headRevision()).toBe(1);
    });

    it("a registration replaces the node's other workers with their reservations, each announced as replaced", async () => {
      const { store } = await start();
      await store.registerWorker(worker("old", { nodeId: "n" }), 1_000);
      await store.registerWorker(worker("other", { nodeId: "m" }), 1_000);
      await store.acquireSlot(reservation("r1", "old"), 1_100);
      const { events } = await store.registerWorker(worker("new", { nodeId: "n" }), 1_200);
      expect(events.map((e) => [e.revision, e.type, e.worker.id, e.reason])).toEqual([
        [4, "unregistered", "old", "replaced"],
        [5, "registered", "new", undefined],
      ]);
      expect(events[0]!.worker).toEqual(worker("old", { nodeId: "n", currentTasks: 1 }));
      const loaded = await store.load();
      expect(loaded.workers.map((w) => w.id).sort()).toEqual(["new", "other"]);
      expect(loaded.reservations).toEqual([]);
      expect(await store.findReservation("r1")).toBeUndefined();
    });

    it("unregisters a worker with its reservations; an unknown one changes nothing", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a"), 1_000);
      await store.acquireSlot(reservation("r1", "a"), 1_100);
      const { events } = await store.unregisterWorker("a", 1_200);
      expect(events).toEqual([{ revision: 3, type: "unregistered", reason: "unregistered", occurredAtMs: 1_200, worker: worker("a", { currentTasks: 1 }) }]);
      expect(await store.load()).toMatchObject({ workers: [], reservations: [], revision: 3 });
      expect((await store.unregisterWorker("a", 1_300)).events).toEqual([]);
      expect(await store.headRevision()).toBe(3);
    });

    it("keeps a task count within reserved..max, writing an event only for a change", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a", { maxConcurrentTasks: 2 }), 1_000);
      const up = await store.adjustTaskCount("a", 2, 1_100);
      expect(up.result).toEqual({ status: "ok" });
      expect(up.events).toEqual([{ revision: 2, type: "updated", occurredAtMs: 1_100, worker: worker("a", { maxConcurrentTasks: 2, currentTasks: 2 }) }]);
      expect(await store.adjustTaskCount("a", 1, 1_200)).toEqual({ events: [], result: { status: "out-of-range", currentTasks: 2, maxConcurrentTasks: 2, reservedTasks: 0 } });
      expect(await store.adjustTaskCount("a", -3, 1_200)).toMatchObject({ events: [], result: { status: "out-of-range" } });
      expect(await store.adjustTaskCount("ghost", 1, 1_200)).toEqual({ events: [], result: { status: "not-found" } });
      await store.adjustTaskCount("a", -2, 1_300);
      // Slots held by reservations are ReleaseWorker's to free.
      await store.acquireSlot(reservation("r1", "a"), 1_400);
      expect(await store.adjustTaskCount("a", -1, 1_500)).toEqual({ events: [], result: { status: "out-of-range", currentTasks: 1, maxConcurrentTasks: 2, reservedTasks: 1 } });
      expect(await store.headRevision()).toBe(4);
    });

    it("adds completions to the counters; an unknown worker changes nothing", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a"), 1_000);
      await store.recordCompletion("a", won, 1_100);
      const { events } = await store.recordCompletion("a", lost, 1_200);
      expect(events[0]!.worker).toMatchObject({ tasksCompleted: 1, tasksFailed: 1, totalTaskDurationMs: 400, currentTasks: 0 });
      expect((await store.recordCompletion("ghost", won, 1_300)).events).toEqual([]);
      expect(await store.headRevision()).toBe(3);
    });

    it("takes a slot per reservation up to max, then reports full; an unknown worker is not-found", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a", { maxConcurrentTasks: 2 }), 1_000);
      const first = await store.acquireSlot(reservation("r1", "a"), 1_100);
      expect(first).toEqual({
        status: "ok",
        events: [{ revision: 2, type: "updated", occurredAtMs: 1_100, worker: worker("a", { maxConcurrentTasks: 2, currentTasks: 1 }), reservation: { granted: reservation("r1", "a") } }],
      });
      expect((await store.acquireSlot(reservation("r2", "a"), 1_200)).status).toBe("ok");
      expect(await store.acquireSlot(reservation("r3", "a"), 1_300)).toEqual({ status: "full", events: [] });
      expect(await store.acquireSlot(reservation("r4", "ghost"), 1_300)).toEqual({ status: "not-found", events: [] });
      expect((await store.load()).reservations.map((r) => r.id).sort()).toEqual(["r1", "r2"]);
      expect(await store.findReservation("r3")).toBeUndefined();
    });

    it("never overbooks a worker, however many acquisitions race", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a", { maxConcurrentTasks: 7 }), 1_000);
      const attempts = await Promise.all(Array.from({ length: 40 }, (_, i) => store.acquireSlot(reservation(`r${i}`, "a"), 1_100)));
      expect(attempts.filter((a) => a.status === "ok")).toHaveLength(7);
      expect((await store.load()).workers[0]!.currentTasks).toBe(7);
    });

    it("releases a reservation once: frees its slot and records the outcome; a repeat changes nothing", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a"), 1_000);
      await store.acquireSlot(reservation("r1", "a"), 1_100);
      const released = await store.releaseReservation("r1", won, 1_200);
      expect(released.result).toEqual({ status: "released", workerId: "a" });
      expect(released.events).toEqual([
        { revision: 3, type: "updated", occurredAtMs: 1_200, worker: worker("a", { tasksCompleted: 1, totalTaskDurationMs: 100 }), reservation: { ended: "r1" } },
      ]);
      expect(await store.findReservation("r1")).toEqual({ workerId: "a", state: "released" });
      expect(await store.releaseReservation("r1", won, 1_300)).toEqual({ events: [], result: { status: "already-released", workerId: "a" } });
      expect(await store.releaseReservation("rx", won, 1_300)).toEqual({ events: [], result: { status: "not-found" } });
      expect(await store.headRevision()).toBe(3);
    });

    it("expires reservations under a lease, freeing their slots; a late release records the outcome without freeing another", async () => {
      const { store } = await start();
      const lease = await lead(store);
      await store.registerWorker(worker("a"), 1_000);
      await store.acquireSlot(reservation("r1", "a"), 1_100);
      await store.acquireSlot(reservation("r2", "a"), 1_100);
      const { events } = await store.expireReservations(["r1", "r1", "missing"], 40_000, lease);
      expect(events).toEqual([{ revision: 4, type: "updated", occurredAtMs: 40_000, worker: worker("a", { currentTasks: 1 }), reservation: { ended: "r1" } }]);
      const late = await store.releaseReservation("r1", lost, 41_000);
      expect(late.result).toEqual({ status: "expired", workerId: "a" });
      expect(late.events[0]!.worker).toMatchObject({ currentTasks: 1, tasksFailed: 1 });
      expect(late.events[0]!.reservation).toBeUndefined();
      expect(await store.releaseReservation("r1", lost, 42_000)).toMatchObject({ events: [], result: { status: "already-released" } });
      expect((await store.load()).reservations.map((r) => r.id)).toEqual(["r2"]);
    });

    it("changes health only where its conditions still hold, announcing what it was before", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a", { lastHeartbeatAtMs: 5_000 }), 5_000);
      await store.registerWorker(worker("b", { lastHeartbeatAtMs: 5_000 }), 5_000);
      const { events } = await store.changeHealth(
        [
          { workerId: "a", from: "healthy", to: "degraded", heardUntilMs: 5_000 },
          { workerId: "a", from: "degraded", to: "unhealthy", heardUntilMs: 5_000 },
          // A later heartbeat is stored than the one this was judged by: refused.
          { workerId: "b", from: "healthy", to: "degraded", heardUntilMs: 4_999 },
          // Not from what it is: refused.
          { workerId: "b", from: "degraded", to: "unhealthy" },
          { workerId: "ghost", to: "healthy" },
        ],
        6_000,
      );
      expect(events).toEqual([
        { revision: 3, type: "health_changed", occurredAtMs: 6_000, worker: worker("a", { lastHeartbeatAtMs: 5_000, health: "degraded" }), previousHealth: "healthy", heardUntilMs: 5_000 },
        { revision: 4, type: "health_changed", occurredAtMs: 6_000, worker: worker("a", { lastHeartbeatAtMs: 5_000, health: "unhealthy" }), previousHealth: "degraded", heardUntilMs: 5_000 },
      ]);
      // A heal names no previous state: it applies whatever the health is, unless already healthy.
      const healed = await store.changeHealth([{ workerId: "a", to: "healthy" }, { workerId: "b", to: "healthy" }], 7_000);
      expect(healed.events.map((e) => [e.worker.id, e.previousHealth, e.worker.health])).toEqual([["a", "unhealthy", "healthy"]]);
      expect((await store.load()).workers.map((w) => [w.id, w.health])).toEqual([
        ["a", "healthy"],
        ["b", "healthy"],
      ]);
    });

    it("removes an expired worker only if no later heartbeat was stored meanwhile", async () => {
      const { store } = await start();
      const lease = await lead(store);
      await store.registerWorker(worker("silent", { lastHeartbeatAtMs: 1_000 }), 1_000);
      await store.registerWorker(worker("heard", { lastHeartbeatAtMs: 1_000 }), 1_000);
      await store.writeHeartbeats(new Map([["heard", 9_000]]), 9_000);
      const { events } = await store.removeExpired(
        [
          { workerId: "silent", heardUntilMs: 1_000 },
          { workerId: "heard", heardUntilMs: 1_000 },
          { workerId: "ghost", heardUntilMs: 1_000 },
        ],
        20_000,
        lease,
      );
      expect(events).toEqual([{ revision: 3, type: "removed", reason: "expired", occurredAtMs: 20_000, worker: worker("silent") }]);
      expect((await store.load()).workers.map((w) => w.id)).toEqual(["heard"]);
    });

    it("writes heartbeats of existing workers (the last write wins), records the last-alive time, and reads back the recent ones", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a"), 1_000);
      await store.registerWorker(worker("b"), 1_000);
      await store.writeHeartbeats(new Map([["a", 5_000], ["ghost", 6_000]]), 6_000);
      await store.writeHeartbeats(new Map([["a", 4_000], ["b", 7_000]]), 7_500);
      const loaded = await store.load();
      // A clock stepped back between two batches: the later write still wins.
      expect(loaded.workers.map((w) => [w.id, w.lastHeartbeatAtMs])).toEqual([
        ["a", 4_000],
        ["b", 7_000],
      ]);
      expect(loaded.lastAliveAtMs).toBe(7_500);
      expect((await store.readHeartbeatsSince(4_500)).map((h) => [h.workerId, h.lastHeartbeatAtMs])).toEqual([["b", 7_000]]);
      // Soft state: no event.
      expect(await store.headRevision()).toBe(2);
    });

    it("reads events from a revision, in order, at most limit, exactly as the writes returned them", async () => {
      const { store } = await start();
      const written: CommittedEvent[] = [];
      written.push(...(await store.registerWorker(worker("a"), 1_000)).events);
      written.push(...(await store.adjustTaskCount("a", 1, 1_100)).events);
      written.push(...(await store.recordCompletion("a", won, 1_200)).events);
      written.push(...(await store.changeHealth([{ workerId: "a", from: "healthy", to: "degraded" }], 1_300)).events);
      await expectLogged(store, written);
      expect(await store.readEvents(2, 2)).toEqual(written.slice(1, 3));
    });

    it("revisions stay gap-free and in commit order under concurrent writes", async () => {
      const { store } = await start();
      for (let i = 0; i < 5; i++) await store.registerWorker(worker(`w${i}`, { maxConcurrentTasks: 100 }), 1_000);
      const writes = Array.from({ length: 60 }, (_, i) => store.adjustTaskCount(`w${i % 5}`, 1, 2_000 + i));
      const events = (await Promise.all(writes)).flatMap((w) => w.events);
      expect(events.map((e) => e.revision).sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 6));
      const logged = await store.readEvents(1, 1_000);
      expect(logged.map((e) => e.revision)).toEqual(logged.map((_, i) => i + 1));
      // Each worker's counts rise one by one in revision order.
      for (let w = 0; w < 5; w++) {
        const counts = logged.filter((e) => e.type === "updated" && e.worker.id === `w${w}`).map((e) => e.worker.currentTasks);
        expect(counts).toEqual(counts.map((_, i) => i + 1));
      }
    });

    it("prunes old events in revision order under a lease, and says what is compacted", async () => {
      const { store } = await start();
      const lease = await lead(store);
      await store.registerWorker(worker("a", { maxConcurrentTasks: 100 }), 1_000);
      for (let i = 0; i < 4; i++) await store.adjustTaskCount("a", 1, 2_000 + i);
      await store.acquireSlot(reservation("r1", "a"), 3_000);
      await store.releaseReservation("r1", won, 3_100);
      expect(await store.prune(2_002, 3_000, 100, lease)).toBe(3);
      expect((await store.readEvents(1, 100)).map((e) => e.revision)).toEqual([4, 5, 6, 7]);
      // A limit bounds one pass; a released reservation goes once its end is older than the second cut-off.
      expect(await store.prune(10_000, 4_000, 1, lease)).toBe(4);
      expect(await store.findReservation("r1")).toBeUndefined();
      expect(await store.prune(10_000, 4_000, 100, lease)).toBe(7);
      expect(await store.readEvents(1, 100)).toEqual([]);
      // Revisions carry on after an emptied log.
      expect((await store.adjustTaskCount("a", 1, 11_000)).events[0]!.revision).toBe(8);
      expect((await store.load()).compactedRevision).toBe(7);
    });

    it("grants the lease to one owner at a time and fences the writes of a lease that is no longer current", async () => {
      const { store } = await start();
      const first = await lead(store, "one");
      expect((await store.lead("one", 60_000)).epoch).toBe(first.epoch);
      await store.registerWorker(worker("a"), 1_000);
      await store.resign("one");
      const second = await lead(store, "two");
      expect(second.epoch).toBeGreaterThan(first.epoch);
      await expect(store.removeExpired([{ workerId: "a", heardUntilMs: 1_000 }], 90_000, first)).rejects.toThrow(LeaseLostError);
      await expect(store.changeHealth([{ workerId: "a", from: "healthy", to: "degraded" }], 90_000, first)).rejects.toThrow(LeaseLostError);
      await expect(store.prune(90_000, 90_000, 10, first)).rejects.toThrow(LeaseLostError);
      expect(await store.headRevision()).toBe(1);
      expect((await store.removeExpired([{ workerId: "a", heardUntilMs: 1_000 }], 90_000, second)).events).toHaveLength(1);
    });

    it("recovers every committed change after a restart, with revisions carrying on", async () => {
      const h = await start();
      await h.store.registerWorker(worker("a"), 1_000);
      await h.store.acquireSlot(reservation("r1", "a"), 1_100);
      await h.store.changeHealth([{ workerId: "a", from: "healthy", to: "degraded" }], 1_200);
      await h.store.writeHeartbeats(new Map([["a", 1_300]]), 1_300);
      const before = await h.store.load();
      const again = await h.reopen();
      expect(await again.load()).toEqual(before);
      expect(before).toMatchObject({ revision: 3, lastAliveAtMs: 1_300, reservations: [reservation("r1", "a")] });
      expect((await again.recordCompletion("a", won, 1_400)).events[0]!.revision).toBe(4);
    });

    it("a second writer's events are in the same log, numbered after the first's", async () => {
      const h = await start();
      const other = await h.second();
      await h.store.registerWorker(worker("a"), 1_000);
      await other.registerWorker(worker("b"), 1_100);
      await h.store.adjustTaskCount("b", 1, 1_200);
      expect((await other.readEvents(1, 10)).map((e) => [e.revision, e.type, e.worker.id])).toEqual([
        [1, "registered", "a"],
        [2, "registered", "b"],
        [3, "updated", "b"],
      ]);
      expect(await h.store.headRevision()).toBe(3);
    });

    it("cordons an active worker, uncordons a cordoned one, one state_changed event each; a repeat changes nothing", async () => {
      const { store } = await start();
      await store.registerWorker(worker("a", { labels: { zone: "eu-1", "example.com/ssd": "" }, version: "v7" }), 1_000);
      const cordoned = await store.changeState("a", { to: "cordoned" }, 1_100);
      expect(cordoned).toEqual({
        result: { status: "ok" },
        events: [{ revision: 2, type: "state_changed", occurredAtMs: 1_100, previousState: "active", worker: worker("a", { labels: { zone: "eu-1", "example.com/ssd": "" }, version: "v7", state: "cordoned" }) }],
      });
      expect(await store.changeState("a", { to: "cordoned" }, 1_200)).toEqual({ events: [], result: { status: "ok" } });
      const back = await store.changeState("a", { to: "active" }, 1_300);
      expect(back.events.map((e) => [e.type, e.previousState, e.worker.state])).toEqual([["state_changed", "cordoned", "active"]]);
      expect(await store.changeState("ghost", { to: "cordoned" }, 1_400)).toEqual({ events: [], result: { status: "not-found" } });
      expect((await store.load()).workers[0]).toMatchObject({ state: "active", labels: { zone: "eu-1", "example.com/ssd": "" }, version: "v7" });
      await expectLogged(store, [...(await store.readEvents(1, 10))]);
    });

    it("a slot is never taken on a worker that is not active", async () => {
      const h = await start();
      const other = await h.second();
      await h.store.registerWorker(worker("a"), 1_000);
      // Cordoned by another writer: this one's read model may not know yet, the store does.
      await other.changeState("a", { to: "cordoned" }, 1_100);
      expect(await h.store.acquireSlot(reservation("r1", "a"), 1_200)).toEqual({ events: [], status: "full" });
      await other.registerWorker(worker("b"), 1_250);
      await other.adjustTaskCount("b", 1, 1_260);
      await other.changeState("b", { to: "draining", deadlineMs: 9_000 }, 1_300);
      expect(await h.store.acquireSlot(reservation("r2", "b"), 1_400)).toEqual({ events: [], status: "full" });
      expect((await h.store.load()).reservations).toEqual([]);
    });

    it("drains: an idle worker is deleted in the same transaction (reason drained); a busy one when its count reaches zero", async () => {
      const { store } = await start();
      await store.registerWorker(worker("idle"), 1_000);
      const idle = await store.changeState("idle", { to: "draining", deadlineMs: 61_000 }, 1_100);
      expect(idle.events.map((e) => [e.revision, e.type, e.previousState ?? e.reason, e.worker.state, e.worker.drainDeadlineMs])).toEqual([
        [2, "state_changed", "active", "draining", 61_000],
        [3, "unregistered", "drained", "draining", 61_000],
      ]);
      await store.registerWorker(worker("busy"), 1_200);
      await store.adjustTaskCount("busy", 1, 1_300);
      await store.acquireSlot(reservation("r1", "busy"), 1_400);
      await store.acquireSlot(reservation("r2", "busy"), 1_450);
      await store.changeState("busy", { to: "draining", deadlineMs: 90_000 }, 1_500);
      // A later deadline keeps the earlier one; cordon and uncordon are refused.
      expect(await store.changeState("busy", { to: "draining", deadlineMs: 95_000 }, 1_550)).toEqual({ events: [], result: { status: "ok" } });
      expect(await store.changeState("busy", { to: "active" }, 1_560)).toEqual({ events: [], result: { status: "draining" } });
      expect(await store.changeState("busy", { to: "cordoned" }, 1_570)).toEqual({ events: [], result: { status: "draining" } });
      const sooner = await store.changeState("busy", { to: "draining", deadlineMs: 80_000 }, 1_580);
      expect(sooner.events.map((e) => [e.previousState, e.worker.drainDeadlineMs])).toEqual([["draining", 80_000]]);
      expect((await store.adjustTaskCount("busy", -1, 1_600)).events.map((e) => e.type)).toEqual(["updated"]);
      expect((await store.releaseReservation("r1", won, 1_700)).events.map((e) => e.type)).toEqual(["updated"]);
      const lease = await lead(store);
      const last = await store.expireReservations(["r2"], 1_800, lease);
      expect(last.events.map((e) => [e.type, e.reason, e.worker.currentTasks])).toEqual([
        ["updated", undefined, 0],
        ["unregistered", "drained", 0],
      ]);
      expect((await store.load()).workers).toEqual([]);
      await expectLogged(store, await store.readEvents(1, 100));
    });

    it("removes draining workers at their deadline whatever they run, fenced by the lease", async () => {
      const h = await start();
      await h.store.registerWorker(worker("late"), 1_000);
      await h.store.registerWorker(worker("early"), 1_000);
      await h.store.registerWorker(worker("active"), 1_000);
      for (const id of ["late", "early", "active"]) await h.store.adjustTaskCount(id, 2, 1_100);
      await h.store.changeState("late", { to: "draining", deadlineMs: 9_000 }, 1_200);
      await h.store.changeState("early", { to: "draining", deadlineMs: 5_000 }, 1_200);
      const lease = await lead(h.store);
      const removed = await h.store.removeOverdueDrains(["early", "late", "active"], 5_000, lease);
      expect(removed.events.map((e) => [e.type, e.reason, e.worker.id, e.worker.currentTasks])).toEqual([["unregistered", "drain_deadline", "early", 2]]);
      const other = await h.second();
      await h.store.resign("leader");
      const taken = await other.lead("usurper", 60_000);
      expect(taken.owner).toBe("usurper");
      await expect(h.store.removeOverdueDrains(["late"], 9_000, lease)).rejects.toThrow(LeaseLostError);
      expect((await h.store.load()).workers.map((w) => w.id).sort()).toEqual(["active", "late"]);
    });
  });
}
