import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NoWorkerAvailableError, ReservationNotFoundError } from "../../src/domain/errors.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coders = { ...NO_FILTER, capabilities: ["coder"] };

describe("AcquireWorker and ReleaseWorker", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it("takes a slot on the best-ranked worker and says when it expires", async () => {
    const { registry, clock } = await createTestRegistry({ reservationTtlMs: 2 * MINUTE });
    const small = await registry.registerWorker({ nodeId: "small", capabilities: ["coder"], maxConcurrentTasks: 2 });
    const big = await registry.registerWorker({ nodeId: "big", capabilities: ["coder"], maxConcurrentTasks: 10 });
    await registry.updateTaskCount(small.id, 1);
    const acquired = await registry.acquireWorker(coders);
    expect(acquired.ranked.worker).toMatchObject({ id: big.id, currentTasks: 1 });
    expect(acquired.reservationId).toMatch(/^rsv-\d+-[a-z0-9]+$/);
    expect(acquired.expiresAtMs).toBe(clock.now() + 2 * MINUTE);
    expect(registry.getRegistryStats()).toMatchObject({ usedCapacity: 2, activeReservations: 1 });
  });

  it("never grants more than the capacity, then says none has a free slot", async () => {
    const { registry } = await createTestRegistry();
    for (const max of [1, 2, 3]) await registry.registerWorker({ nodeId: `n${max}`, capabilities: ["coder"], maxConcurrentTasks: max });
    const grants = await Promise.all(Array.from({ length: 6 }, () => registry.acquireWorker(coders)));
    const perWorker = new Map<string, number>();
    for (const grant of grants) perWorker.set(grant.ranked.worker.nodeId, (perWorker.get(grant.ranked.worker.nodeId) ?? 0) + 1);
    expect(Object.fromEntries(perWorker)).toEqual({ n1: 1, n2: 2, n3: 3 });
    await expect(registry.acquireWorker(coders)).rejects.toThrow(
      new NoWorkerAvailableError("3 workers match capabilities [coder] and health healthy or degraded, but none has 1 free slot"),
    );
    await expect(registry.acquireWorker({ ...NO_FILTER, capabilities: ["painter"] })).rejects.toThrow(/^no worker matches capabilities \[painter\]/);
  });

  it("spreads acquisitions over near-equal workers at random", async () => {
    const { registry } = await createTestRegistry();
    for (let i = 0; i < 4; i++) await registry.registerWorker({ nodeId: `w${i}`, capabilities: ["coder"], maxConcurrentTasks: 1000 });
    const counts = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const { ranked } = await registry.acquireWorker(coders);
      counts.set(ranked.worker.nodeId, (counts.get(ranked.worker.nodeId) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(["w0", "w1", "w2", "w3"]);
    expect(Math.min(...counts.values())).toBeGreaterThanOrEqual(4);
  });

  it("with no tolerance, always takes the single best worker", async () => {
    const { registry } = await createTestRegistry({ acquireTieTolerance: 0 });
    await registry.registerWorker({ nodeId: "a", capabilities: ["coder"], maxConcurrentTasks: 1000 });
    await registry.registerWorker({ nodeId: "b", capabilities: ["coder"], maxConcurrentTasks: 1000 });
    const first = await registry.acquireWorker(coders);
    const second = await registry.acquireWorker(coders);
    expect(second.ranked.worker.nodeId).not.toBe(first.ranked.worker.nodeId);
  });

  it("releases once: frees the slot and records the outcome; a repeat says so and changes nothing", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 2 });
    const { reservationId } = await registry.acquireWorker(coders);
    const released = await registry.releaseWorker(reservationId, false, 1500);
    expect(released.outcome).toBe("released");
    expect(released.worker).toMatchObject({ id: worker.id, currentTasks: 0, metrics: { tasksCompleted: 0, tasksFailedCount: 1, averageTaskDurationMs: 1500 } });
    const again = await registry.releaseWorker(reservationId, true, 10);
    expect(again.outcome).toBe("already-released");
    expect(again.worker.metrics).toEqual(released.worker.metrics);
    await expect(registry.releaseWorker("rsv-1-unknown", true, 1)).rejects.toThrow(ReservationNotFoundError);
  });

  it("expires a reservation after its TTL, freeing the slot; a late release records the outcome only", async () => {
    const { registry, clock } = await createTestRegistry({ reservationTtlMs: MINUTE });
    const worker = await registry.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 });
    const { reservationId } = await registry.acquireWorker(coders);
    clock.advance(MINUTE - 1);
    await registry.tick();
    expect(registry.getWorker(worker.id).currentTasks).toBe(1);
    clock.advance(1);
    await registry.tick();
    expect(registry.getWorker(worker.id).currentTasks).toBe(0);
    expect(registry.counters.reservationsExpired).toBe(1);
    const late = await registry.releaseWorker(reservationId, true, 61_000);
    expect(late.outcome).toBe("expired");
    expect(late.worker).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 1 } });
    expect((await registry.releaseWorker(reservationId, true, 1)).outcome).toBe("already-released");
  });

  it("drops a worker's reservations when the worker is removed", async () => {
    const { registry } = await createTestRegistry();
    const worker = await registry.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 });
    const { reservationId } = await registry.acquireWorker(coders);
    await registry.unregisterWorker(worker.id);
    expect(registry.getRegistryStats().activeReservations).toBe(0);
    await expect(registry.releaseWorker(reservationId, true, 1)).rejects.toThrow(ReservationNotFoundError);
  });

  it("keeps reservations across a restart with the time they had left", async () => {
    const dir = mkdtempSync(join(tmpdir(), "registry-reservations-"));
    dirs.push(dir);
    const path = join(dir, "registry.db");
    const clock = new FakeClock();
    const first = await createTestRegistry({ reservationTtlMs: 10 * MINUTE }, { clock, store: openSqliteStore({ path }) });
    const worker = await first.registry.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 2 });
    const { reservationId } = await first.registry.acquireWorker(coders);
    clock.advance(4 * MINUTE);
    await first.registry.flushHeartbeats();
    await first.registry.close();
    await first.store.close();

    clock.advance(60 * MINUTE);
    const second = await createTestRegistry({ reservationTtlMs: 10 * MINUTE }, { clock, store: openSqliteStore({ path }) });
    expect(second.registry.getRegistryStats()).toMatchObject({ activeReservations: 1, usedCapacity: 1 });
    clock.advance(6 * MINUTE - 1);
    await second.registry.tick();
    expect(second.registry.getWorker(worker.id).currentTasks).toBe(1);
    clock.advance(1);
    await second.registry.tick();
    expect(second.registry.getWorker(worker.id).currentTasks).toBe(0);
    expect((await second.registry.releaseWorker(reservationId, true, 1)).outcome).toBe("expired");
    await second.registry.close();
    await second.store.close();
  });
});
