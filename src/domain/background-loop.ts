import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import { LeaseLostError } from "./errors.js";
import type { EvictionGuard } from "./eviction-guard.js";
import { RepeatedFailureLog } from "./repeated-failure-log.js";
import type { Fleet, LiveWorker } from "./fleet.js";
import type { HealthSchedule } from "./health-schedule.js";
import type { Leadership } from "./leadership.js";
import type { Liveness } from "./liveness.js";
import type { Logger } from "./logger.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { HealthChange, Lease, RegistryStore } from "./registry-store.js";
import type { ReservationBook } from "./reservation-book.js";

const PRUNE_BATCH = 10_000;

/** Counters a metrics endpoint reads; they only go up. */
export interface ScheduleCounters {
  reservationsExpired: number;
  removedByCleanup: number;
}

/** Timing of the loop; the leader's lease and a replica's polling. */
export interface LoopTiming {
  /** How long a lease lasts unless renewed; renewed every third of it. */
  readonly leaseTtlMs: number;
  /** How often a replica of a shared store reads the log and the heartbeats others wrote. */
  readonly replicaPollMs: number;
}

/**
 * The registry's background work, on timers that {@link start} arms and
 * {@link stop} clears (tests call the steps directly on a fake clock):
 *
 * - every second, {@link tick}: notices a stall of this process (and gives
 *   every deadline that time back), and, on the leader only, writes the due
 *   health transitions and expires the due reservations;
 * - heartbeat write-behind, and for a shared store the tail of the log and
 *   the heartbeats other processes wrote;
 * - the lease: taken when free, renewed while held;
 * - on the leader only: {@link cleanup} of workers past their TTL, under the
 *   eviction guard, and pruning of the event log.
 *
 * Every leader write carries the lease, so a process that lost it acts no more.
 */
export class BackgroundLoop {
  readonly counters: ScheduleCounters = { reservationsExpired: 0, removedByCleanup: 0 };
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  /** Transitions applied here by {@link advance} whose events are not written yet. */
  private transitions: HealthChange[] = [];
  private transitionsScheduled = false;

  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly book: ReservationBook;
      readonly feed: ChangeFeed;
      readonly schedule: HealthSchedule;
      readonly liveness: Liveness;
      readonly guard: EvictionGuard;
      readonly leadership: Leadership;
      readonly clock: Clock;
      readonly log: Logger;
      readonly options: CompiledRegistryOptions;
      readonly timing: LoopTiming;
    },
  ) {}

  /** Arms the timers. */
  start(): void {
    const { options, timing, store } = this.deps;
    this.every("tick", 1000, () => this.tick());
    this.every("heartbeat flush", options.heartbeatFlushIntervalMs, () => this.deps.liveness.flush());
    this.every("lease renewal", Math.max(100, timing.leaseTtlMs / 3), () => this.deps.leadership.renew());
    this.every("cleanup", options.cleanupIntervalMs, () => this.cleanup());
    this.every("event log pruning", Math.min(10_000, options.eventTtlMs), () => this.prune());
    // Another process may write the store: a replica always, and even a store held alone by a tool. Reading the
    // log's head costs one indexed read; the heartbeats of others matter only where they heartbeat elsewhere.
    this.every("log tail", timing.replicaPollMs, () => (store.shared ? this.poll() : this.deps.feed.catchUp()));
    this.unsubscribe = store.subscribe?.((revision) => this.deps.feed.wake(revision));
  }

  /** Clears the timers; steps still running finish. */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  /**
   * Notices a stall of this process and gives every deadline that time back,
   * rolls the eviction guard's windows, and on the leader writes the due
   * health transitions and expires the due reservations. Also writes the
   * heals and stream losses still waiting, so failed writes are retried.
   */
  async tick(): Promise<void> {
    const { guard, fleet, book, clock, log } = this.deps;
    const stallMs = guard.tick(fleet.size);
    if (stallMs > 0) {
      // The registry was blind, not the workers silent: nobody's deadline should have run during the stall.
      fleet.postponeDeadlines(stallMs);
      book.extend(stallMs);
      log.warn({ stallMs, workers: fleet.size }, "registry stall detected; deadlines extended by its length");
    }
    this.advance();
    await this.deps.liveness.writeAnnouncements();
    const lease = this.deps.leadership.current;
    if (lease === undefined) return;
    await this.writeTransitions(lease);
    await this.expireReservations(lease, clock.monotonic());
    await this.removeOverdueDrains(lease);
  }

  /**
   * On the leader, applies every due health transition at once, so that what
   * this process answers is exact as of now, and queues the events that
   * announce them (written by the next {@link tick}, or on the next turn).
   * O(due entries): pops the schedule, never scans the fleet. Elsewhere the
   * transitions arrive as the leader's events.
   */
  advance(): void {
    if (this.deps.leadership.current === undefined) return;
    const changes = this.deps.schedule.due(this.deps.clock.monotonic());
    if (changes.length === 0) return;
    for (const change of changes) {
      const worker = this.deps.fleet.get(change.workerId);
      if (worker !== undefined) this.deps.fleet.setHealth(worker, change.to);
    }
    this.transitions.push(...changes);
    if (this.transitionsScheduled) return;
    this.transitionsScheduled = true;
    setImmediate(() => {
      this.transitionsScheduled = false;
      const lease = this.deps.leadership.current;
      if (lease !== undefined) this.writeTransitions(lease).catch(() => undefined);
    });
  }

  /**
   * Removes workers whose TTL has passed, in transactions of at most
   * cleanupBatchSize, and at most the eviction guard's budget per pass: none
   * while it holds eviction, else `maxEvictionShare` of the fleet. A worker
   * heard from meanwhile by any process is kept. Only the leader removes.
   * Resolves to how many were removed.
   */
  async cleanup(): Promise<number> {
    // After a pause both timers are overdue and either may fire first: the stall must be seen before anyone is evicted.
    await this.tick();
    const { schedule, guard, fleet, store, feed, clock, log, options } = this.deps;
    const lease = this.deps.leadership.current;
    if (lease === undefined) return 0;
    let budget = guard.evictionBudget(fleet.size);
    if (schedule.expired.size > 0 && budget === 0) log.warn({ expired: schedule.expired.size, reason: guard.status().reason }, "cleanup held back: eviction paused");
    let removed = 0;
    while (schedule.expired.size > 0 && budget > 0 && !this.stopped) {
      const batch: LiveWorker[] = [];
      for (const worker of schedule.expired) {
        batch.push(worker);
        if (batch.length === Math.min(budget, options.cleanupBatchSize)) break;
      }
      for (const worker of batch) schedule.expired.delete(worker);
      const candidates = batch.map((worker) => ({ workerId: worker.id, heardUntilMs: worker.lastHeartbeatAtMs }));
      let events;
      try {
        ({ events } = await this.fenced(() => store.removeExpired(candidates, clock.now(), lease)));
      } catch (error) {
        for (const worker of batch) schedule.track(worker, clock.monotonic());
        throw error;
      }
      await feed.offer(events);
      for (const event of events) log.info({ workerId: event.worker.id, nodeId: event.worker.nodeId }, "worker removed by cleanup");
      // Kept by the store: heard from by another process since; judged again from what this one knows.
      for (const worker of batch) if (fleet.isLive(worker)) schedule.track(worker, clock.monotonic());
      removed += events.length;
      this.counters.removedByCleanup += events.length;
      budget -= batch.length;
    }
    if (removed > 0) log.info({ removed, waiting: schedule.expired.size, remaining: fleet.size }, "cleanup pass finished");
    return removed;
  }

  /** Deletes events older than the event TTL, and reservations that ended more than a reservation TTL ago. */
  async prune(): Promise<void> {
    const lease = this.deps.leadership.current;
    if (lease === undefined) return;
    const { store, clock, options } = this.deps;
    const now = clock.now();
    await this.fenced(() => store.prune(now - options.eventTtlMs, now - options.reservationTtlMs, PRUNE_BATCH, lease));
  }

  /** A replica's tail: the events and heartbeats other processes wrote. */
  async poll(): Promise<void> {
    await this.deps.feed.catchUp();
    await this.deps.liveness.sync(this.deps.timing.replicaPollMs + 1000);
  }

  /** Writes the transitions {@link advance} applied; one the store refused (a later heartbeat is stored) is undone here. */
  private async writeTransitions(lease: Lease): Promise<void> {
    if (this.transitions.length === 0) return;
    const changes = this.transitions;
    this.transitions = [];
    const { store, feed, fleet, schedule, clock } = this.deps;
    let events;
    try {
      ({ events } = await this.fenced(() => store.changeHealth(changes, clock.now(), lease)));
    } catch (error) {
      if (!(error instanceof LeaseLostError)) this.transitions = [...changes, ...this.transitions];
      throw error;
    }
    await feed.offer(events);
    const written = new Set(events.map((e) => `${e.worker.id}:${e.worker.health}`));
    for (const change of changes) {
      if (written.has(`${change.workerId}:${change.to}`)) continue;
      const worker = fleet.get(change.workerId);
      if (worker === undefined || worker.health !== change.to) continue;
      if (change.from !== undefined) fleet.setHealth(worker, change.from);
      schedule.retry([worker.id], clock.monotonic());
    }
  }

  private async expireReservations(lease: Lease, nowMono: number): Promise<void> {
    const { book, store, feed, clock, log } = this.deps;
    const due = book.due(nowMono);
    if (due.length === 0) return;
    let events;
    try {
      ({ events } = await this.fenced(() => store.expireReservations(due.map((r) => r.id), clock.now(), lease)));
    } catch (error) {
      book.retry(due, clock.monotonic());
      throw error;
    }
    await feed.offer(events);
    for (const event of events) {
      const change = event.reservation;
      if (change === undefined || !("ended" in change)) continue;
      this.counters.reservationsExpired++;
      log.info({ reservationId: change.ended, workerId: event.worker.id }, "reservation expired; slot freed");
    }
  }

  /** Removes the draining workers past their drain deadline, whatever they still run. O(draining workers). */
  private async removeOverdueDrains(lease: Lease): Promise<void> {
    const { fleet, store, feed, clock, log } = this.deps;
    const now = clock.now();
    const overdue: string[] = [];
    for (const worker of fleet.draining()) if (worker.drainDeadlineMs !== null && worker.drainDeadlineMs <= now) overdue.push(worker.id);
    if (overdue.length === 0) return;
    const { events } = await this.fenced(() => store.removeOverdueDrains(overdue, now, lease));
    await feed.offer(events);
    for (const event of events) {
      log.warn({ workerId: event.worker.id, nodeId: event.worker.nodeId, currentTasks: event.worker.currentTasks }, "draining worker removed at its drain deadline");
    }
  }

  /** Runs a leader write; a refusal for a lost lease ends leadership here. */
  private async fenced<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (error instanceof LeaseLostError) this.deps.leadership.lost();
      throw error;
    }
  }

  private every(name: string, intervalMs: number, task: () => unknown): void {
    const failures = new RepeatedFailureLog(this.deps.log, this.deps.clock, { failed: `background ${name} failed; will retry`, recovered: `background ${name} works again` });
    const timer = setInterval(() => {
      Promise.resolve()
        .then(task)
        .then(
          () => failures.succeeded(),
          (error: unknown) => {
            // A lost lease is not a failure: leadership has moved on and this process says so once.
            if (!(error instanceof LeaseLostError)) failures.failed({}, error);
          },
        );
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }
}
