import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import type { EvictionGuard } from "./eviction-guard.js";
import type { Fleet, LiveWorker } from "./fleet.js";
import type { HealthSchedule } from "./health-schedule.js";
import { RepeatedFailureLog } from "./repeated-failure-log.js";
import type { Logger } from "./logger.js";
import type { HealthChange, RegistryStore } from "./registry-store.js";

/**
 * How a worker shows it is alive, and how this process tells the others.
 *
 * - The hot path ({@link heartbeat}) is O(1) and touches no disk: it moves
 *   the worker's last-seen time and queues the timestamp for the next batch
 *   ({@link flush}, every second), since heartbeats are soft state.
 * - A heartbeat heals a degraded or unhealthy worker at once here, and its
 *   `health_changed` event is written on the next turn, so every process and
 *   watcher hears of it.
 * - A heartbeat stream that fails (not a clean goodbye, not a shutdown) while
 *   it was the worker's last one degrades the worker at once (instant failure
 *   detection), unless a later heartbeat is already known.
 * - With a store shared by several processes, {@link sync} reads the
 *   heartbeats the others wrote, so health is judged on the whole fleet's.
 */
export class Liveness {
  /** Workers heard since the last flush, each once (its `heartbeatPending` flag): their latest timestamp is written. */
  private pending: LiveWorker[] = [];
  private flushing: Promise<void> | undefined;
  /** Health changes to write on the next turn: heals and stream losses. */
  private announcements: HealthChange[] = [];
  private announcing = false;
  /** The latest stored heartbeat this process has read from the store. */
  private syncedUntilMs = 0;
  private readonly failures: { readonly flush: RepeatedFailureLog; readonly announce: RepeatedFailureLog };
  /** Heartbeats accepted, for metrics. */
  heartbeats = 0;

  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly feed: ChangeFeed;
      readonly schedule: HealthSchedule;
      readonly guard: EvictionGuard;
      readonly clock: Clock;
      readonly log: Logger;
    },
  ) {
    this.failures = {
      flush: new RepeatedFailureLog(deps.log, deps.clock, { failed: "heartbeat flush failed; will retry", recovered: "heartbeat flush recovered" }),
      announce: new RepeatedFailureLog(deps.log, deps.clock, { failed: "could not write health changes; will retry", recovered: "health changes written again" }),
    };
  }

  /** A heartbeat from the worker: O(1), no disk access. */
  heartbeat(worker: LiveWorker): void {
    const { clock, fleet } = this.deps;
    const nowMono = clock.monotonic();
    worker.lastSeenMono = nowMono;
    worker.lastHeartbeatAtMs = clock.now();
    // A flag on the record rather than a map by id: a worker beats many times between two flushes.
    if (!worker.heartbeatPending) {
      worker.heartbeatPending = true;
      this.pending.push(worker);
    }
    this.deps.guard.recordHeartbeat(worker);
    this.heartbeats++;
    if (worker.holdUntilMono !== 0) worker.holdUntilMono = 0;
    if (worker.unconfirmed) fleet.setUnconfirmed(worker, false);
    if (worker.health !== "healthy") this.heal(worker);
    this.deps.schedule.heard(worker, nowMono);
  }

  /**
   * A heartbeat stream of the worker ended. If it failed and it was the
   * worker's last stream here, the worker is degraded at once, with an event:
   * the process is probably gone. Its next heartbeat heals it.
   */
  streamEnded(worker: LiveWorker, failed: boolean): void {
    worker.openStreams = Math.max(0, worker.openStreams - 1);
    if (!failed || worker.openStreams > 0 || !this.deps.fleet.isLive(worker) || worker.health !== "healthy") return;
    this.deps.log.info({ workerId: worker.id }, "worker heartbeat stream lost");
    this.deps.fleet.setHealth(worker, "degraded");
    // If a later heartbeat is already stored (the worker reconnected to another process), the store refuses the
    // change, and it is undone here.
    this.announce({ workerId: worker.id, from: "healthy", to: "degraded", heardUntilMs: worker.lastHeartbeatAtMs });
  }

  /** A heartbeat this process holds is newer than a downgrade another process announced: heal again. */
  reheal(worker: LiveWorker): void {
    if (worker.health !== "healthy") this.heal(worker);
  }

  /**
   * Writes the heartbeats received since the last flush, in chunks of one
   * transaction each. On a storage fault they are kept for the next flush;
   * a fault here never fails a caller.
   */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const workers = this.pending;
    this.pending = [];
    // In chunks the store chooses, each its own write: on SQLite, its own turn of the event loop.
    const chunk = this.deps.store.heartbeatBatchRows;
    // Rows are stored in the order workers registered (ids begin with their registration time), so workers
    // that registered near each other share pages: a chunk of them rewrites a few pages rather than one per
    // row (SQLite, 10,000 workers: about 36 µs a row in arrival order, 4 µs in registration order). Sorting
    // 10,000 costs a few ms once a flush.
    if (workers.length > chunk) workers.sort(byRegistration);
    for (const worker of workers) worker.heartbeatPending = false;
    this.flushing = (async () => {
      for (let start = 0; start < Math.max(1, workers.length); start += chunk) {
        // Built per chunk from the workers themselves (no tuple per worker kept for the whole flush, which
        // outlived young-generation collections): each one's latest heartbeat, unless it was removed meanwhile.
        const heartbeats = new Map<string, number>();
        for (let i = start; i < Math.min(start + chunk, workers.length); i++) {
          const worker = workers[i]!;
          if (!worker.released) heartbeats.set(worker.id, worker.lastHeartbeatAtMs);
        }
        try {
          await this.deps.store.writeHeartbeats(heartbeats, this.deps.clock.now());
        } catch (error) {
          // Kept for the next flush, which writes each one's latest timestamp by then.
          for (let i = start; i < workers.length; i++) {
            const worker = workers[i]!;
            if (worker.released || worker.heartbeatPending) continue;
            worker.heartbeatPending = true;
            this.pending.push(worker);
          }
          this.failures.flush.failed({ pending: this.pending.length }, error);
          return;
        }
      }
      this.failures.flush.succeeded();
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /**
   * Reads the heartbeats other processes wrote since the last read, and
   * takes each that is newer than what this process knows. Read with an
   * overlap, since a batch written just before may commit just after.
   */
  async sync(overlapMs: number): Promise<void> {
    const { store, fleet, clock } = this.deps;
    const rows = await store.readHeartbeatsSince(this.syncedUntilMs - overlapMs);
    const nowMono = clock.monotonic();
    const nowMs = clock.now();
    for (const { workerId, lastHeartbeatAtMs } of rows) {
      this.syncedUntilMs = Math.max(this.syncedUntilMs, lastHeartbeatAtMs);
      const worker = fleet.get(workerId);
      if (worker === undefined || lastHeartbeatAtMs <= worker.lastHeartbeatAtMs) continue;
      worker.lastHeartbeatAtMs = lastHeartbeatAtMs;
      worker.lastSeenMono = Math.max(worker.lastSeenMono, nowMono - Math.max(0, nowMs - lastHeartbeatAtMs));
      this.deps.guard.recordHeartbeat(worker);
      if (worker.unconfirmed) fleet.setUnconfirmed(worker, false);
      worker.holdUntilMono = 0;
      this.deps.schedule.heard(worker, nowMono);
    }
  }

  /** Writes the pending health changes now (at shutdown). */
  async close(): Promise<void> {
    await this.flushing;
    await this.flush();
    await this.writeAnnouncements();
  }

  private heal(worker: LiveWorker): void {
    this.deps.fleet.setHealth(worker, "healthy");
    this.announce({ workerId: worker.id, to: "healthy" });
  }

  private announce(change: HealthChange): void {
    this.announcements.push(change);
    if (this.announcing) return;
    this.announcing = true;
    // On the next turn, so that the heartbeat or stream end that caused it is answered first.
    setImmediate(() => {
      this.announcing = false;
      void this.writeAnnouncements();
    });
  }

  /** Writes the heals and stream losses still waiting (the background tick calls it, so failures are retried). */
  async writeAnnouncements(): Promise<void> {
    if (this.announcements.length === 0) return;
    const changes = this.announcements;
    this.announcements = [];
    try {
      const { events } = await this.deps.store.changeHealth(changes, this.deps.clock.now());
      await this.deps.feed.offer(events);
      this.failures.announce.succeeded();
      const written = new Set(events.map((e) => `${e.worker.id}:${e.worker.health}`));
      for (const change of changes) {
        const worker = this.deps.fleet.get(change.workerId);
        if (change.from === undefined || written.has(`${change.workerId}:${change.to}`) || worker?.health !== change.to) continue;
        this.deps.fleet.setHealth(worker, change.from);
      }
    } catch (error) {
      this.announcements = [...changes, ...this.announcements];
      this.failures.announce.failed({ pending: this.announcements.length }, error);
    }
  }
}

function byRegistration(a: LiveWorker, b: LiveWorker): number {
  return a.registeredAtMs - b.registeredAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
