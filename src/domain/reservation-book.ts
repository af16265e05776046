import { BinaryHeap } from "./binary-heap.js";
import type { CommittedEvent } from "./worker-events.js";
import type { ReservationRecord } from "./worker-record.js";

/** An active reservation, with its deadline on this process's monotonic clock. */
export interface BookedReservation extends ReservationRecord {
  deadlineMono: number;
}

/**
 * The active reservations (AcquireWorker slots not yet released or expired),
 * kept from committed events like the rest of the read model, with a min-heap
 * of their deadlines so that the leader expires exactly the due ones.
 *
 * Deadlines are monotonic: a reservation's wall-clock expiry is placed on this
 * process's monotonic clock when it is booked, and a stall of the process
 * moves every deadline by its length ({@link extend}).
 */
export class ReservationBook {
  private readonly active = new Map<string, BookedReservation>();
  private readonly byWorker = new Map<string, Set<string>>();
  private readonly deadlines = new BinaryHeap<{ readonly reservation: BookedReservation; readonly atMono: number }>((a, b) => a.atMono < b.atMono);

  get size(): number {
    return this.active.size;
  }

  get(reservationId: string): BookedReservation | undefined {
    return this.active.get(reservationId);
  }

  /**
   * Books a reservation. `remainingMs` is how long it has left: what its
   * wall-clock expiry says, or for one recovered after a restart, what it had
   * left when the registry stopped.
   */
  book(record: ReservationRecord, nowMono: number, remainingMs: number): void {
    const reservation: BookedReservation = { ...record, deadlineMono: nowMono + Math.max(0, remainingMs) };
    this.active.set(record.id, reservation);
    let ofWorker = this.byWorker.get(record.workerId);
    if (ofWorker === undefined) this.byWorker.set(record.workerId, (ofWorker = new Set()));
    ofWorker.add(record.id);
    this.deadlines.push({ reservation, atMono: reservation.deadlineMono });
  }

  /** Follows a committed event: a reservation granted or ended, or a worker removed with its reservations. */
  apply(event: CommittedEvent, nowMono: number, nowMs: number): void {
    if (event.type === "unregistered" || event.type === "removed") {
      for (const id of this.byWorker.get(event.worker.id) ?? []) this.active.delete(id);
      this.byWorker.delete(event.worker.id);
      return;
    }
    const change = event.reservation;
    if (change === undefined) return;
    if ("granted" in change) this.book(change.granted, nowMono, change.granted.expiresAtMs - nowMs);
    else this.end(change.ended);
  }

  private end(reservationId: string): void {
    const reservation = this.active.get(reservationId);
    if (reservation === undefined) return;
    this.active.delete(reservationId);
    const ofWorker = this.byWorker.get(reservation.workerId);
    ofWorker?.delete(reservationId);
    if (ofWorker?.size === 0) this.byWorker.delete(reservation.workerId);
  }

  /** Forgets every reservation, before the book is filled again from a fresh snapshot. */
  clear(): void {
    this.active.clear();
    this.byWorker.clear();
  }

  /** Moves every deadline later by `ms`: the process was paused, not the orchestrators slow. */
  extend(ms: number): void {
    for (const reservation of this.active.values()) reservation.deadlineMono += ms;
  }

  /** The active reservations whose deadline has passed, oldest first. They stay booked until their expiry is committed. */
  due(nowMono: number): BookedReservation[] {
    const due: BookedReservation[] = [];
    for (let entry = this.deadlines.peek(); entry !== undefined && entry.atMono <= nowMono; entry = this.deadlines.peek()) {
      this.deadlines.pop();
      const { reservation } = entry;
      if (this.active.get(reservation.id) !== reservation) continue;
      // A stall moved the deadline later: wait for it.
      if (reservation.deadlineMono > nowMono) this.deadlines.push({ reservation, atMono: reservation.deadlineMono });
      else due.push(reservation);
    }
    return due;
  }

  /** Puts back reservations whose expiry could not be committed, to be tried again at the next tick. */
  retry(reservations: readonly BookedReservation[], nowMono: number): void {
    for (const reservation of reservations) {
      if (this.active.get(reservation.id) === reservation) this.deadlines.push({ reservation, atMono: nowMono });
    }
  }
}
