import { describe, expect, it } from "vitest";
import { ReservationBook } from "../../src/domain/reservation-book.js";
import type { ReservationRecord } from "../../src/domain/worker-record.js";
import { FakeClock } from "../support/fake-clock.js";
import { eventLog, workerRecord } from "../support/worker-records.js";

const MINUTE = 60_000;

function setup() {
  const clock = new FakeClock();
  const book = new ReservationBook();
  const event = eventLog();
  const reservation = (id: string, workerId = "w1", ttlMs = 10 * MINUTE): ReservationRecord => ({ id, workerId, createdAtMs: clock.now(), expiresAtMs: clock.now() + ttlMs });
  /** A reservation granted by a committed event, as every replica's book learns of it. */
  const grant = (record: ReservationRecord) =>
    book.apply(event({ type: "updated", worker: workerRecord({ id: record.workerId, currentTasks: 1 }), reservation: { granted: record } }), clock.monotonic(), clock.now());
  const end = (id: string, workerId = "w1") =>
    book.apply(event({ type: "updated", worker: workerRecord({ id: workerId }), reservation: { ended: id } }), clock.monotonic(), clock.now());
  const dueIds = () => book.due(clock.monotonic()).map((r) => r.id);
  return { clock, book, event, reservation, grant, end, dueIds };
}

describe("ReservationBook: deadlines", () => {
  it("a granted reservation is due exactly at its expiry, not a millisecond before", () => {
    const { clock, book, reservation, grant, dueIds } = setup();
    grant(reservation("r1", "w1", 2 * MINUTE));
    expect(book.size).toBe(1);
    expect(book.get("r1")).toMatchObject({ workerId: "w1", deadlineMono: clock.monotonic() + 2 * MINUTE });
    clock.advance(2 * MINUTE - 1);
    expect(dueIds()).toEqual([]);
    clock.advance(1);
    expect(dueIds()).toEqual(["r1"]);
  });

  it("keeps its deadline on the monotonic clock: a wall-clock step neither expires nor extends it", () => {
    const { clock, reservation, grant, dueIds } = setup();
    grant(reservation("r1", "w1", 2 * MINUTE));
    clock.jumpWall(60 * MINUTE);
    expect(dueIds()).toEqual([]);
    clock.jumpWall(-120 * MINUTE);
    clock.advance(2 * MINUTE);
    expect(dueIds()).toEqual(["r1"]);
  });

  it("places an event's expiry by the time left when it is applied", () => {
    const { clock, book, reservation, grant } = setup();
    const record = reservation("r1", "w1", 5 * MINUTE);
    // Applied 1 minute after it was granted (another replica's event, read late): 4 minutes are left.
    clock.advance(MINUTE);
    grant(record);
    expect(book.get("r1")!.deadlineMono).toBe(clock.monotonic() + 4 * MINUTE);
  });

  it("a reservation booked with no time left is due at once", () => {
    const { clock, book, reservation, dueIds } = setup();
    book.book(reservation("late"), clock.monotonic(), -5_000);
    expect(book.get("late")!.deadlineMono).toBe(clock.monotonic());
    expect(dueIds()).toEqual(["late"]);
  });

  it("returns the due ones oldest deadline first, and leaves the others", () => {
    const { clock, book, reservation, dueIds } = setup();
    book.book(reservation("third"), clock.monotonic(), 3 * MINUTE);
    book.book(reservation("first"), clock.monotonic(), 1 * MINUTE);
    book.book(reservation("later"), clock.monotonic(), 9 * MINUTE);
    book.book(reservation("second"), clock.monotonic(), 2 * MINUTE);
    clock.advance(5 * MINUTE);
    expect(dueIds()).toEqual(["first", "second", "third"]);
    expect(dueIds()).toEqual([]);
    clock.advance(4 * MINUTE);
    expect(dueIds()).toEqual(["later"]);
  });

  it("a due reservation stays booked until its expiry is committed", () => {
    const { clock, book, reservation, grant, end, dueIds } = setup();
    grant(reservation("r1", "w1", MINUTE));
    clock.advance(MINUTE);
    expect(dueIds()).toEqual(["r1"]);
    expect(book.get("r1")).toBeDefined();
    end("r1");
    expect(book.get("r1")).toBeUndefined();
    expect(book.size).toBe(0);
  });
});

describe("ReservationBook: release and removal", () => {
  it("a reservation ended before its deadline is never due", () => {
    const { clock, book, reservation, grant, end, dueIds } = setup();
    grant(reservation("r1", "w1", MINUTE));
    grant(reservation("r2", "w1", MINUTE));
    end("r1");
    expect(book.size).toBe(1);
    clock.advance(MINUTE);
    expect(dueIds()).toEqual(["r2"]);
  });

  it("ending an unknown reservation changes nothing", () => {
    const { book, reservation, grant, end } = setup();
    grant(reservation("r1"));
    end("nope");
    expect(book.size).toBe(1);
  });

  it("a worker that leaves takes its reservations with it, and no one else's", () => {
    const { clock, book, event, reservation, grant, dueIds } = setup();
    grant(reservation("a1", "a", MINUTE));
    grant(reservation("a2", "a", MINUTE));
    grant(reservation("b1", "b", MINUTE));
    book.apply(event({ type: "removed", reason: "expired", worker: workerRecord({ id: "a" }) }), clock.monotonic(), clock.now());
    expect([book.get("a1"), book.get("a2")]).toEqual([undefined, undefined]);
    expect(book.size).toBe(1);
    clock.advance(MINUTE);
    expect(dueIds()).toEqual(["b1"]);
    book.apply(event({ type: "unregistered", reason: "unregistered", worker: workerRecord({ id: "b" }) }), clock.monotonic(), clock.now());
    expect(book.size).toBe(0);
  });

  it("an event without a reservation changes nothing", () => {
    const { clock, book, event, reservation, grant } = setup();
    grant(reservation("r1"));
    book.apply(event({ type: "health_changed", previousHealth: "healthy", worker: workerRecord({ id: "w1", health: "degraded" }) }), clock.monotonic(), clock.now());
    expect(book.size).toBe(1);
  });

  it("a reservation re-booked under the same id is due by its new deadline only", () => {
    const { clock, book, reservation, dueIds } = setup();
    const record = reservation("r1");
    book.book(record, clock.monotonic(), MINUTE);
    book.book(record, clock.monotonic(), 3 * MINUTE);
    clock.advance(MINUTE);
    expect(dueIds()).toEqual([]);
    clock.advance(2 * MINUTE);
    expect(dueIds()).toEqual(["r1"]);
  });
});

describe("ReservationBook: stalls, retries, resets", () => {
  it("extend moves every deadline by the stall: due at the old deadline no more, at the new one yes", () => {
    const { clock, book, reservation, dueIds } = setup();
    book.book(reservation("r1"), clock.monotonic(), MINUTE);
    book.book(reservation("r2"), clock.monotonic(), 2 * MINUTE);
    clock.advance(30_000);
    book.extend(5 * MINUTE);
    clock.advance(2 * MINUTE);
    expect(dueIds()).toEqual([]);
    clock.advance(3 * MINUTE + 30_000 - 1);
    expect(dueIds()).toEqual([]);
    clock.advance(1);
    expect(dueIds()).toEqual(["r1"]);
    clock.advance(MINUTE);
    expect(dueIds()).toEqual(["r2"]);
  });

  it("retry puts back an expiry that could not be committed, for the next tick", () => {
    const { clock, book, reservation, dueIds } = setup();
    book.book(reservation("r1"), clock.monotonic(), MINUTE);
    clock.advance(MINUTE);
    const due = book.due(clock.monotonic());
    expect(dueIds()).toEqual([]);
    book.retry(due, clock.monotonic());
    expect(dueIds()).toEqual(["r1"]);
  });

  it("retry skips a reservation ended meanwhile", () => {
    const { clock, book, reservation, grant, end, dueIds } = setup();
    grant(reservation("r1", "w1", MINUTE));
    clock.advance(MINUTE);
    const due = book.due(clock.monotonic());
    end("r1");
    book.retry(due, clock.monotonic());
    expect(dueIds()).toEqual([]);
  });

  it("clear forgets every reservation; nothing of them comes due", () => {
    const { clock, book, reservation, dueIds } = setup();
    book.book(reservation("r1"), clock.monotonic(), MINUTE);
    book.clear();
    expect(book.size).toBe(0);
    clock.advance(MINUTE);
    expect(dueIds()).toEqual([]);
  });
});
