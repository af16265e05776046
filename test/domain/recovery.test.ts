import { describe, expect, it } from "vitest";
import { Fleet } from "../../src/domain/fleet.js";
import { COLD_START_GAP_MS, loadSnapshot } from "../../src/domain/recovery.js";
import { compileRegistryOptions } from "../../src/domain/registry-options.js";
import type { Snapshot } from "../../src/domain/registry-store.js";
import { ReservationBook } from "../../src/domain/reservation-book.js";
import type { ReservationRecord, WorkerRecord } from "../../src/domain/worker-record.js";
import { workerRecord } from "../support/worker-records.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const options = compileRegistryOptions({ heartbeatIntervalMs: MINUTE, reservationTtlMs: 10 * MINUTE });
/** The registry last ran at LAST_ALIVE and starts again an hour later. */
const LAST_ALIVE = Date.UTC(2026, 0, 1, 12);
const NOW = { mono: 5_000_000, ms: LAST_ALIVE + HOUR };

function snapshot(workers: WorkerRecord[], extra: Partial<Snapshot> = {}): Snapshot {
  return { workers, reservations: [], revision: 7, compactedRevision: 0, lastAliveAtMs: LAST_ALIVE, ...extra };
}

function load(snap: Snapshot, now: { mono: number; ms: number; shared: boolean } = { ...NOW, shared: false }) {
  const fleet = new Fleet(options, !now.shared);
  const book = new ReservationBook();
  const recovery = loadSnapshot(snap, { fleet, book }, options, now);
  return { fleet, book, recovery };
}

/** A worker last heard `ageAtLastRunMs` before the registry last ran. */
const heardBefore = (id: string, ageAtLastRunMs: number, extra: Partial<WorkerRecord> = {}) => workerRecord({ id, lastHeartbeatAtMs: LAST_ALIVE - ageAtLastRunMs, ...extra });
const rankedIds = (fleet: Fleet) => [...fleet.ranked([])].map((w) => w.id);

describe("loadSnapshot: cold or not", () => {
  it.each([
    ["a store held alone, whatever the gap", true, { shared: false, ms: LAST_ALIVE + 1 }, undefined],
    ["a new shared store", true, { shared: true, ms: LAST_ALIVE + 1 }, null],
    ["a shared store last written more than the gap ago", true, { shared: true, ms: LAST_ALIVE + COLD_START_GAP_MS + 1 }, undefined],
    ["a shared store written the gap ago, not more (replicas running)", false, { shared: true, ms: LAST_ALIVE + COLD_START_GAP_MS }, undefined],
  ] as const)("%s: cold is %s", (_name, cold, now, lastAliveAtMs) => {
    const snap = snapshot([], lastAliveAtMs === null ? { lastAliveAtMs: null } : {});
    expect(load(snap, { mono: NOW.mono, ...now }).recovery).toEqual({ cold, notHealthy: 0, changes: [] });
  });
});

describe("loadSnapshot: a cold start", () => {
  it("a worker healthy when the registry stopped gets a full healthy window from now", () => {
    const { fleet, recovery } = load(snapshot([heardBefore("a", 9 * MINUTE)]));
    const worker = fleet.get("a")!;
    expect(worker.lastSeenMono).toBe(NOW.mono);
    expect(worker).toMatchObject({ health: "healthy", unconfirmed: false, holdUntilMono: 0 });
    expect(fleet.healthOf(worker, NOW.mono + 10 * MINUTE - 1)).toBe("healthy");
    expect(rankedIds(fleet)).toEqual(["a"]);
    expect(recovery.notHealthy).toBe(0);
  });

  it("one degraded then keeps that health, out of rotation, held for a heartbeat interval; its downgrade is owed", () => {
    const heardAt = LAST_ALIVE - 12 * MINUTE;
    const { fleet, recovery } = load(snapshot([heardBefore("a", 12 * MINUTE), heardBefore("b", MINUTE)]));
    const worker = fleet.get("a")!;
    expect(worker).toMatchObject({ unconfirmed: true, holdUntilMono: NOW.mono + MINUTE, health: "healthy" });
    // Its age excludes the downtime: 12 minutes, not an hour and 12.
    expect(worker.lastSeenMono).toBe(NOW.mono - 12 * MINUTE);
    expect(recovery).toEqual({ cold: true, notHealthy: 1, changes: [{ workerId: "a", from: "healthy", to: "degraded", heardUntilMs: heardAt }] });
    expect(rankedIds(fleet)).toEqual(["b"]);
    expect(fleet.healthOf(worker, NOW.mono + MINUTE - 1)).toBe("healthy");
  });

  it("one unhealthy then but announced healthy is owed both steps, degraded first", () => {
    const { recovery } = load(snapshot([heardBefore("a", 20 * MINUTE)]));
    expect(recovery.changes.map(({ from, to }) => [from, to])).toEqual([
      ["healthy", "degraded"],
      ["degraded", "unhealthy"],
    ]);
  });

  it("health already announced is owed nothing, and never healed by the judgement", () => {
    const { fleet, recovery } = load(snapshot([heardBefore("a", 20 * MINUTE, { health: "unhealthy" }), heardBefore("b", MINUTE, { health: "degraded" })]));
    expect(recovery).toEqual({ cold: true, notHealthy: 2, changes: [] });
    expect(fleet.get("b")).toMatchObject({ health: "degraded", unconfirmed: true });
    expect(rankedIds(fleet)).toEqual([]);
  });

  it("a new store's workers are judged against their own latest heartbeat", () => {
    const latest = LAST_ALIVE;
    const { fleet, recovery } = load(snapshot([workerRecord({ id: "a", lastHeartbeatAtMs: latest }), workerRecord({ id: "b", lastHeartbeatAtMs: latest - 11 * MINUTE })], { lastAliveAtMs: null }));
    expect(fleet.get("a")!.unconfirmed).toBe(false);
    expect(recovery.changes).toEqual([expect.objectContaining({ workerId: "b", to: "degraded" })]);
  });

  it("reservations keep the time they had left when the registry stopped, at most a TTL", () => {
    const reservations: ReservationRecord[] = [
      { id: "r-left-3", workerId: "a", createdAtMs: LAST_ALIVE - 7 * MINUTE, expiresAtMs: LAST_ALIVE + 3 * MINUTE },
      { id: "r-capped", workerId: "a", createdAtMs: LAST_ALIVE, expiresAtMs: LAST_ALIVE + 30 * MINUTE },
      { id: "r-gone", workerId: "missing", createdAtMs: LAST_ALIVE - 20 * MINUTE, expiresAtMs: LAST_ALIVE - 10 * MINUTE },
    ];
    const { fleet, book } = load(snapshot([heardBefore("a", 0, { currentTasks: 2 })], { reservations }));
    expect(book.get("r-left-3")!.deadlineMono).toBe(NOW.mono + 3 * MINUTE);
    expect(book.get("r-capped")!.deadlineMono).toBe(NOW.mono + 10 * MINUTE);
    expect(book.get("r-gone")!.deadlineMono).toBe(NOW.mono);
    expect(fleet.get("a")!.reservedTasks).toBe(2);
  });

  it("with no record of when the registry last ran, a reservation gets its whole TTL", () => {
    const reservation = { id: "r", workerId: "a", createdAtMs: LAST_ALIVE - HOUR, expiresAtMs: LAST_ALIVE - HOUR + 4 * MINUTE };
    const { book } = load(snapshot([heardBefore("a", 0)], { reservations: [reservation], lastAliveAtMs: null }));
    expect(book.get("r")!.deadlineMono).toBe(NOW.mono + 4 * MINUTE);
  });
});

describe("loadSnapshot: joining running replicas", () => {
  const warm = { mono: NOW.mono, ms: LAST_ALIVE + 2_000, shared: true };

  it("judges every worker by its real heartbeat age: no grace, no hold, nothing owed", () => {
    const { fleet, recovery } = load(snapshot([heardBefore("a", 12 * MINUTE), heardBefore("b", MINUTE)]), warm);
    expect(recovery).toEqual({ cold: false, notHealthy: 0, changes: [] });
    expect(fleet.get("a")).toMatchObject({ unconfirmed: false, holdUntilMono: 0, lastSeenMono: NOW.mono - 12 * MINUTE - 2_000 });
    expect(fleet.get("b")!.lastSeenMono).toBe(NOW.mono - MINUTE - 2_000);
    // Shown as announced on a replica; ranked as announced.
    expect(rankedIds(fleet).sort()).toEqual(["a", "b"]);
  });

  it("reservations keep their real wall-clock expiry", () => {
    const reservation = { id: "r", workerId: "a", createdAtMs: LAST_ALIVE - MINUTE, expiresAtMs: LAST_ALIVE + 5 * MINUTE };
    const { fleet, book } = load(snapshot([heardBefore("a", 0, { currentTasks: 1 })], { reservations: [reservation] }), warm);
    expect(book.get("r")!.deadlineMono).toBe(NOW.mono + 5 * MINUTE - 2_000);
    expect(fleet.get("a")!.reservedTasks).toBe(1);
  });
});
