import type Database from "better-sqlite3";
import { LeaseLostError } from "../domain/errors.js";
import {
  DuplicateWorkerIdError,
  type AdjustTaskCountResult,
  type ChangeStateResult,
  type HealthChange,
  type Lease,
  type ReleaseReservationResult,
  type Snapshot,
  type StateTransition,
  type TaskOutcome,
} from "../domain/registry-store.js";
import { encodeEventPayload, type CommittedEvent } from "../domain/worker-events.js";
import type { ReservationRecord, WorkerRecord } from "../domain/worker-record.js";
import { toWorkerRecord, type Statements, type WorkerRow } from "./sqlite-statements.js";

const lastAliveKey = "last_alive_at_ms";
const revisionKey = "revision";
const compactedKey = "compacted_revision";

/** An event before the log numbers it. */
type Draft = Omit<CommittedEvent, "revision">;

/**
 * The SQLite store's operations as transactions: each runs whole or not at
 * all, and returns the events it wrote, built from the rows it changed.
 */
export type Operations = ReturnType<typeof prepareOperations>;

export function prepareOperations(db: Database.Database, s: Statements) {
  /** Numbers and appends events inside the caller's transaction. */
  const log = (drafts: readonly Draft[]): CommittedEvent[] => {
    let revision = s.currentRevision.get()!.value;
    return drafts.map((draft) => {
      const event: CommittedEvent = { ...draft, revision: ++revision };
      s.insertEvent.run({ revision, type: event.type, workerId: event.worker.id, occurredAtMs: event.occurredAtMs, payload: encodeEventPayload(event) });
      return event;
    });
  };
  const updated = (row: WorkerRow, occurredAtMs: number, reservation?: CommittedEvent["reservation"]): Draft => ({
    type: "updated",
    occurredAtMs,
    worker: toWorkerRecord(row),
    ...(reservation === undefined ? {} : { reservation }),
  });
  const fence = (lease: Lease) => {
    const held = s.readLease.get();
    if (held === undefined || held.owner !== lease.owner || held.epoch !== lease.epoch) throw new LeaseLostError();
  };
  /** A draining worker whose task count reached zero leaves, in the transaction that took it there. */
  const drainedIfIdle = (row: WorkerRow | undefined, atMs: number): Draft[] => {
    if (row === undefined || row.state !== "draining" || row.currentTasks !== 0) return [];
    const removed = s.deleteIfDrainedIdle.get(row.id);
    return removed === undefined ? [] : [{ type: "unregistered", reason: "drained", occurredAtMs: atMs, worker: toWorkerRecord(removed) }];
  };
  const complete = (workerId: string, outcome: TaskOutcome, freed: 0 | 1) =>
    s.recordCompletion.get({ id: workerId, succeeded: outcome.success ? 1 : 0, failed: outcome.success ? 0 : 1, durationMs: outcome.durationMs, freed });

  return {
    load: db.transaction(
      (): Snapshot => ({
        workers: s.allWorkers.all().map(toWorkerRecord),
        reservations: s.activeReservations.all(),
        revision: s.currentRevision.get()!.value,
        compactedRevision: s.readMeta.get(compactedKey)?.value ?? 0,
        lastAliveAtMs: s.readMeta.get(lastAliveKey)?.value ?? null,
      }),
    ),
    registerWorker: db.transaction((worker: WorkerRecord, atMs: number) => {
      if (s.insertWorker.run({ ...worker, capabilities: JSON.stringify(worker.capabilities), labels: JSON.stringify(worker.labels) }).changes === 0) {
        throw new DuplicateWorkerIdError(worker.id);
      }
      const replaced = s.workersOfNode.all(worker.nodeId, worker.id).map(({ id }): Draft => {
        const row = s.deleteWorker.get(id)!;
        return { type: "unregistered", reason: "replaced", occurredAtMs: atMs, worker: toWorkerRecord(row) };
      });
      return { events: log([...replaced, { type: "registered", occurredAtMs: atMs, worker }]) };
    }),
    unregisterWorker: db.transaction((workerId: string, atMs: number) => {
      const row = s.deleteWorker.get(workerId);
      return { events: row === undefined ? [] : log([{ type: "unregistered", reason: "unregistered", occurredAtMs: atMs, worker: toWorkerRecord(row) }]) };
    }),
    changeState: db.transaction((workerId: string, transition: StateTransition, atMs: number) => {
      const before = s.stateOf.get(workerId)?.state;
      if (before === undefined) return { events: [], result: { status: "not-found" } as ChangeStateResult };
      if (before === "draining" && transition.to !== "draining") return { events: [], result: { status: "draining" } as ChangeStateResult };
      const row =
        transition.to === "cordoned" ? s.cordon.get(workerId) : transition.to === "active" ? s.uncordon.get(workerId) : s.drain.get({ id: workerId, deadlineMs: transition.deadlineMs });
      if (row === undefined) return { events: [], result: { status: "ok" } as ChangeStateResult };
      const changed: Draft = { type: "state_changed", occurredAtMs: atMs, worker: toWorkerRecord(row), previousState: before };
      return { events: log([changed, ...drainedIfIdle(row, atMs)]), result: { status: "ok" } as ChangeStateResult };
    }),
    removeOverdueDrains: db.transaction((workerIds: readonly string[], atMs: number, lease: Lease) => {
      fence(lease);
      const drafts: Draft[] = [];
      for (const id of workerIds) {
        const row = s.deleteIfDrainOverdue.get(id, atMs);
        if (row !== undefined) drafts.push({ type: "unregistered", reason: "drain_deadline", occurredAtMs: atMs, worker: toWorkerRecord(row) });
      }
      return { events: log(drafts) };
    }),
    // One transaction so the reported counts are the ones that refused the change.
    adjustTaskCount: db.transaction((workerId: string, delta: number, atMs: number) => {
      const row = s.adjustTaskCount.get({ id: workerId, delta });
      if (row !== undefined) return { events: log([updated(row, atMs), ...drainedIfIdle(row, atMs)]), result: { status: "ok" } as AdjustTaskCountResult };
      const current = s.taskCount.get(workerId);
      const result: AdjustTaskCountResult = current === undefined ? { status: "not-found" } : { status: "out-of-range", ...current };
      return { events: [], result };
    }),
    recordCompletion: db.transaction((workerId: string, outcome: TaskOutcome, atMs: number) => {
      const row = complete(workerId, outcome, 0);
      return { events: row === undefined ? [] : log([updated(row, atMs)]) };
    }),
    acquireSlot: db.transaction((reservation: ReservationRecord, atMs: number) => {
      const row = s.takeSlot.get(reservation.workerId);
      if (row === undefined) return { events: [], status: s.workerExists.get(reservation.workerId) ? ("full" as const) : ("not-found" as const) };
      s.insertReservation.run(reservation);
      return { events: log([updated(row, atMs, { granted: reservation })]), status: "ok" as const };
    }),
    releaseReservation: db.transaction((reservationId: string, outcome: TaskOutcome, atMs: number) => {
      const ended = s.endReservation.get({ id: reservationId, state: "released", atMs });
      if (ended !== undefined) {
        const row = complete(ended.workerId, outcome, 1);
        if (row === undefined) throw new Error(`reservation ${reservationId} outlived its worker ${ended.workerId}`);
        const result: ReleaseReservationResult = { status: "released", workerId: ended.workerId };
        return { events: log([updated(row, atMs, { ended: reservationId }), ...drainedIfIdle(row, atMs)]), result };
      }
      const existing = s.reservationState.get(reservationId);
      if (existing?.state === "expired") {
        s.markExpiredReleased.run(reservationId);
        const row = complete(existing.workerId, outcome, 0);
        if (row === undefined) throw new Error(`reservation ${reservationId} outlived its worker ${existing.workerId}`);
        const result: ReleaseReservationResult = { status: "expired", workerId: existing.workerId };
        return { events: log([updated(row, atMs)]), result };
      }
      const result: ReleaseReservationResult = existing === undefined ? { status: "not-found" } : { status: "already-released", workerId: existing.workerId };
      return { events: [], result };
    }),
    changeHealth: db.transaction((changes: readonly HealthChange[], atMs: number, lease: Lease | undefined) => {
      if (lease !== undefined) fence(lease);
      const drafts: Draft[] = [];
      for (const change of changes) {
        const before = s.healthOf.get(change.workerId)?.health;
        const row = s.setHealth.get({ id: change.workerId, to: change.to, from: change.from ?? null, heardUntilMs: change.heardUntilMs ?? null });
        if (row === undefined || before === undefined) continue;
        drafts.push({
          type: "health_changed",
          occurredAtMs: atMs,
          worker: toWorkerRecord(row),
          previousHealth: before,
          ...(change.heardUntilMs === undefined ? {} : { heardUntilMs: change.heardUntilMs }),
        });
      }
      return { events: log(drafts) };
    }),
    removeExpired: db.transaction((candidates: ReadonlyArray<{ readonly workerId: string; readonly heardUntilMs: number }>, atMs: number, lease: Lease) => {
      fence(lease);
      const drafts: Draft[] = [];
      for (const { workerId, heardUntilMs } of candidates) {
        const row = s.deleteIfSilent.get(workerId, heardUntilMs);
        if (row !== undefined) drafts.push({ type: "removed", reason: "expired", occurredAtMs: atMs, worker: toWorkerRecord(row) });
      }
      return { events: log(drafts) };
    }),
    expireReservations: db.transaction((reservationIds: readonly string[], atMs: number, lease: Lease) => {
      fence(lease);
      const drafts: Draft[] = [];
      for (const id of reservationIds) {
        const ended = s.endReservation.get({ id, state: "expired", atMs });
        const row = ended === undefined ? undefined : s.freeSlot.get(ended.workerId);
        if (row !== undefined) drafts.push(updated(row, atMs, { ended: id }), ...drainedIfIdle(row, atMs));
      }
      return { events: log(drafts) };
    }),
    writeHeartbeats: db.transaction((heartbeats: ReadonlyMap<string, number>, aliveAtMs: number) => {
      s.writeHeartbeats.run(JSON.stringify([...heartbeats]));
      s.writeMeta.run(lastAliveKey, aliveAtMs);
    }),
    prune: db.transaction((eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number, lease: Lease) => {
      fence(lease);
      s.pruneReservations.run(reservationsEndedBeforeMs);
      let through: number | undefined;
      for (const event of s.oldestEvents.all(limit)) {
        if (event.occurredAtMs >= eventsBeforeMs) break;
        through = event.revision;
      }
      const compacted = s.readMeta.get(compactedKey)?.value ?? 0;
      if (through === undefined) return compacted;
      s.writeMeta.run(revisionKey, s.currentRevision.get()!.value);
      s.pruneEventsThrough.run(through);
      s.writeMeta.run(compactedKey, Math.max(compacted, through));
      return Math.max(compacted, through);
    }),
    // This process holds the database alone (the lock file proves it): the lease is its own, at once.
    lead: db.transaction((owner: string, ttlMs: number, nowMs: number): Lease => {
      const held = s.readLease.get();
      const epoch = held !== undefined && held.owner === owner ? held.epoch : (held?.epoch ?? 0) + 1;
      const lease = { owner, epoch, expiresAtMs: nowMs + ttlMs };
      s.writeLease.run(lease);
      return lease;
    }),
  };
}
