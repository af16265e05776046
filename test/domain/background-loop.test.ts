import { afterEach, describe, expect, it, vi } from "vitest";
import { BackgroundLoop } from "../../src/domain/background-loop.js";
import { ChangeFeed } from "../../src/domain/change-feed.js";
import { LeaseLostError } from "../../src/domain/errors.js";
import { EvictionGuard } from "../../src/domain/eviction-guard.js";
import { Fleet } from "../../src/domain/fleet.js";
import { HealthSchedule } from "../../src/domain/health-schedule.js";
import { Leadership } from "../../src/domain/leadership.js";
import { Liveness } from "../../src/domain/liveness.js";
import { silentLogger } from "../../src/domain/logger.js";
import { applyToReadModel, reloadReadModel, type ReadModel } from "../../src/domain/read-model.js";
import { compileRegistryOptions, type RegistryOptions } from "../../src/domain/registry-options.js";
import { ReservationBook } from "../../src/domain/reservation-book.js";
import { Watches } from "../../src/domain/watches.js";
import type { CommittedEvent } from "../../src/domain/worker-events.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { workerRecord } from "../support/worker-records.js";

const MINUTE = 60_000;
const stores: SqliteStore[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** The loop and the parts it drives, wired as the facade wires them, on a real SQLite store and a fake clock. */
function setup(given: RegistryOptions = {}) {
  const clock = new FakeClock();
  // Tests jump the clock by minutes between ticks: no stall and no intake collapse unless a test asks for one.
  const options = compileRegistryOptions({ stallThresholdMs: 365 * 24 * 60 * MINUTE, collapseMinWorkers: 1_000_000, maxEvictionShare: 1, ...given });
  const store = openSqliteStore({ path: ":memory:" });
  stores.push(store);
  const log = silentLogger;
  const fleet = new Fleet(options, true);
  const book = new ReservationBook();
  const schedule = new HealthSchedule(fleet, options);
  let model: ReadModel | undefined;
  const feed = new ChangeFeed(store, (event) => applyToReadModel(model!, event, clock), () => reloadReadModel(model!, store, options, clock), log, () => clock.now(), 0);
  const watches = new Watches(store, feed, 0);
  const guard = new EvictionGuard(clock, log, {
    intakeWindowMs: options.heartbeatIntervalMs,
    collapseRatio: options.evictionCollapseRatio,
    collapseMinWorkers: options.collapseMinWorkers,
    historyWindows: Math.ceil(options.workerTtlMs / options.heartbeatIntervalMs) + 1,
    stallThresholdMs: options.stallThresholdMs,
    maxEvictionShare: options.maxEvictionShare,
    maxPauseMs: options.evictionMaxPauseMs,
  });
  const liveness = new Liveness({ store, fleet, feed, schedule, guard, clock, log });
  model = { fleet, book, schedule, watches, liveness };
  const leadership = new Leadership(store, "me", 5_000, clock, log, (leading) => {
    if (leading) schedule.trackAll(clock.monotonic());
  });
  const loop = new BackgroundLoop({ store, fleet, book, feed, schedule, liveness, guard, leadership, clock, log, options, timing: { leaseTtlMs: 5_000, replicaPollMs: 1_000 } });
  const offer = async (committed: Promise<{ readonly events: readonly CommittedEvent[] }>) => feed.offer((await committed).events);
  const register = async (id: string) => {
    await offer(store.registerWorker(workerRecord({ id, nodeId: `node-${id}`, lastHeartbeatAtMs: clock.now(), registeredAtMs: clock.now() }), clock.now()));
    return fleet.get(id)!;
  };
  const eventTypes = async () => (await store.readEvents(1, 1_000)).map((e) => (e.type === "health_changed" ? `${e.worker.id}:${e.worker.health}` : `${e.worker.id}:${e.type}`));
  return { clock, options, store, fleet, book, schedule, feed, leadership, loop, offer, register, eventTypes };
}

describe("BackgroundLoop: only the leader acts", () => {
  it("a process that does not lead writes no health transition, removes nobody and prunes nothing", async () => {
    const { clock, fleet, loop, register, eventTypes } = setup({ eventTtlMs: MINUTE });
    await register("a");
    clock.advance(40 * MINUTE);
    loop.advance();
    await loop.tick();
    expect(await loop.cleanup()).toBe(0);
    await loop.prune();
    expect(fleet.get("a")!.health).toBe("healthy");
    expect(await eventTypes()).toEqual(["a:registered"]);
  });

  it("the leader writes each due transition at its threshold, and the fleet follows", async () => {
    const { clock, fleet, leadership, loop, register, eventTypes } = setup();
    await register("a");
    await leadership.renew();
    clock.advance(10 * MINUTE - 1);
    await loop.tick();
    expect(await eventTypes()).toEqual(["a:registered"]);
    clock.advance(1);
    await loop.tick();
    expect(fleet.get("a")!.health).toBe("degraded");
    expect(await eventTypes()).toEqual(["a:registered", "a:degraded"]);
    clock.advance(5 * MINUTE + 1);
    await loop.tick();
    expect(await eventTypes()).toEqual(["a:registered", "a:degraded", "a:unhealthy"]);
    expect(fleet.totals().byHealth).toEqual({ healthy: 0, degraded: 0, unhealthy: 1 });
  });

  it("stops acting once it resigns, and acts again when it leads again", async () => {
    const { clock, fleet, leadership, loop, register, eventTypes } = setup();
    await register("a");
    await leadership.renew();
    await leadership.resign();
    clock.advance(10 * MINUTE);
    await loop.tick();
    expect(fleet.get("a")!.health).toBe("healthy");
    await leadership.renew();
    await loop.tick();
    expect(await eventTypes()).toEqual(["a:registered", "a:degraded"]);
  });

  it("advance() shows a due transition at once and writes its event on the next turn", async () => {
    const { clock, fleet, leadership, loop, register, eventTypes } = setup();
    await register("a");
    await leadership.renew();
    clock.advance(10 * MINUTE);
    loop.advance();
    expect(fleet.get("a")!.health).toBe("degraded");
    expect(await eventTypes()).toEqual(["a:registered"]);
    await vi.waitFor(async () => expect(await eventTypes()).toEqual(["a:registered", "a:degraded"]));
  });

  it("a transition the store refuses (another process stored a later heartbeat) is undone here", async () => {
    const { clock, store, fleet, leadership, loop, register, eventTypes } = setup();
    await register("a");
    await leadership.renew();
    clock.advance(10 * MINUTE);
    await store.writeHeartbeats(new Map([["a", clock.now()]]), clock.now());
    await loop.tick();
    expect(await eventTypes()).toEqual(["a:registered"]);
    expect(fleet.get("a")!.health).toBe("healthy");
    expect(fleet.totals().byHealth).toEqual({ healthy: 1, degraded: 0, unhealthy: 0 });
  });

  it("a write refused for a lost lease ends leadership here, and nothing more is written", async () => {
    const { clock, store, leadership, loop, register, eventTypes } = setup();
    await register("a");
    await leadership.renew();
    await store.lead("someone-else", 5_000);
    clock.advance(10 * MINUTE);
    await expect(loop.tick()).rejects.toThrow(LeaseLostError);
    expect(leadership.current).toBeUndefined();
    clock.advance(10 * MINUTE);
    await loop.tick();
    expect(await eventTypes()).toEqual(["a:registered"]);
  });
});

describe("BackgroundLoop: reservations and drains", () => {
  it("expires a reservation at its TTL, not before, and frees its slot", async () => {
    const { clock, store, fleet, book, leadership, loop, offer, register } = setup({ reservationTtlMs: 2 * MINUTE });
    await register("a");
    await leadership.renew();
    await offer(store.acquireSlot({ id: "r1", workerId: "a", createdAtMs: clock.now(), expiresAtMs: clock.now() + 2 * MINUTE }, clock.now()));
    expect(fleet.get("a")!.currentTasks).toBe(1);
    clock.advance(2 * MINUTE - 1);
    await loop.tick();
    expect(book.size).toBe(1);
    clock.advance(1);
    await loop.tick();
    expect(book.size).toBe(0);
    expect(fleet.get("a")!.currentTasks).toBe(0);
    expect(loop.counters.reservationsExpired).toBe(1);
    expect(await store.findReservation("r1")).toMatchObject({ state: "expired" });
  });

  it("removes a draining worker at its drain deadline, whatever it still runs", async () => {
    const { clock, store, fleet, leadership, loop, offer, register } = setup();
    await register("a");
    await offer(store.adjustTaskCount("a", 2, clock.now()));
    await offer(store.changeState("a", { to: "draining", deadlineMs: clock.now() + MINUTE }, clock.now()));
    await leadership.renew();
    clock.advance(MINUTE - 1);
    await loop.tick();
    expect(fleet.get("a")?.state).toBe("draining");
    clock.advance(1);
    await loop.tick();
    expect(fleet.get("a")).toBeUndefined();
    expect(fleet.removalOf("a")).toBe("drain_deadline");
  });
});

describe("BackgroundLoop: cleanup", () => {
  it("removes the workers past their TTL in batches, and none before", async () => {
    const { clock, fleet, leadership, loop, register } = setup({ workerTtlMs: 20 * MINUTE, cleanupBatchSize: 2 });
    for (const id of ["a", "b", "c", "d", "e"]) await register(id);
    await register("fresh");
    await leadership.renew();
    clock.advance(20 * MINUTE);
    // Keep one alive: its heartbeat reaches the read model as any would.
    fleet.get("fresh")!.lastSeenMono = clock.monotonic();
    expect(await loop.cleanup()).toBe(0);
    clock.advance(1);
    expect(await loop.cleanup()).toBe(5);
    expect([...fleet.values()].map((w) => w.id)).toEqual(["fresh"]);
    expect(fleet.removalOf("c")).toBe("expired");
    expect(loop.counters.removedByCleanup).toBe(5);
  });

  it("removes at most the eviction guard's share of the fleet per pass", async () => {
    const { clock, fleet, leadership, loop, register } = setup({ maxEvictionShare: 0.2 });
    for (let i = 0; i < 10; i++) await register(`w${i}`);
    await leadership.renew();
    clock.advance(16 * MINUTE);
    expect(await loop.cleanup()).toBe(2);
    expect(fleet.size).toBe(8);
    expect(await loop.cleanup()).toBe(2);
  });

  it("keeps a worker another process heard from meanwhile, and judges it again", async () => {
    const { clock, store, fleet, schedule, leadership, loop, register } = setup();
    await register("a");
    await leadership.renew();
    clock.advance(16 * MINUTE);
    await loop.tick();
    expect(schedule.expired.has(fleet.get("a")!)).toBe(true);
    await store.writeHeartbeats(new Map([["a", clock.now()]]), clock.now());
    expect(await loop.cleanup()).toBe(0);
    expect(fleet.get("a")).toBeDefined();
    // This process has not heard it itself: it waits in the expired set for the next pass to ask the store again.
    expect(schedule.expired.has(fleet.get("a")!)).toBe(true);
  });

  it("holds eviction after a stall of the registry, and gives every deadline that time back", async () => {
    const { clock, fleet, leadership, loop, register, eventTypes } = setup({ stallThresholdMs: MINUTE });
    await register("a");
    await leadership.renew();
    for (let t = 0; t < 18; t++) {
      clock.advance(30_000);
      await loop.tick();
    }
    // 9 minutes in; the process is paused for 7 minutes, so the worker is 16 minutes old by the clock.
    clock.advance(7 * MINUTE);
    expect(await loop.cleanup()).toBe(0);
    expect(fleet.get("a")!.health).toBe("healthy");
    expect(await eventTypes()).toEqual(["a:registered"]);
    clock.advance(MINUTE - 1);
    await loop.tick();
    expect(fleet.get("a")!.health).toBe("healthy");
    clock.advance(1);
    await loop.tick();
    expect(fleet.get("a")!.health).toBe("degraded");
  });
});

describe("BackgroundLoop: pruning and timers", () => {
  it("the leader prunes the events older than the event TTL", async () => {
    const { clock, store, leadership, loop, register } = setup({ eventTtlMs: MINUTE });
    await register("old");
    clock.advance(2 * MINUTE);
    await register("new");
    await leadership.renew();
    await loop.prune();
    expect((await store.readEvents(1, 10)).map((e) => e.worker.id)).toEqual(["new"]);
  });

  it("start arms the tick every second; stop disarms it", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const { clock, fleet, leadership, loop, register } = setup();
    await register("a");
    await register("b");
    await leadership.renew();
    loop.start();
    clock.advance(10 * MINUTE);
    await vi.advanceTimersByTimeAsync(1_000);
    await vi.waitFor(() => expect(fleet.get("a")!.health).toBe("degraded"));
    loop.stop();
    clock.advance(6 * MINUTE);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(fleet.get("a")!.health).toBe("degraded");
  });
});
