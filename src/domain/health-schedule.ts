import { BinaryHeap } from "./binary-heap.js";
import type { Fleet, LiveWorker } from "./fleet.js";
import { healthForAge, healthTier, nextTransitionAge, type HealthStatus } from "./health.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { HealthChange } from "./registry-store.js";

/**
 * Health as a schedule, not a scan (etcd's lessor): each worker has at most
 * one entry in a min-heap, at or before its next transition (healthy to
 * degraded, degraded to unhealthy, past its record TTL). A heartbeat costs
 * nothing here: it only moves the worker's last-seen time, and when the
 * entry comes due the worker is judged afresh and its entry pushed again at
 * its real next transition (a lazy deadline).
 *
 * {@link due} returns the transitions that are due, one tier at a time so a
 * watcher never misses the degraded step, each conditioned on the heartbeat
 * it was judged by; the leader writes them, and the fleet changes when their
 * events are applied. Workers past their TTL wait in the expired set, oldest
 * first, for cleanup.
 */
export class HealthSchedule {
  private readonly heap = new BinaryHeap<{ readonly worker: LiveWorker; readonly atMono: number }>((a, b) => a.atMono < b.atMono);
  /** Workers past their TTL, waiting for cleanup, oldest first. */
  readonly expired = new Set<LiveWorker>();

  constructor(
    private readonly fleet: Fleet,
    private readonly options: CompiledRegistryOptions,
  ) {}

  /** Gives the worker its entry, if it has none. */
  track(worker: LiveWorker, nowMono: number): void {
    if (worker.scheduled || !this.fleet.isLive(worker)) return;
    // Announced healthier than its age says (tracked afresh, on a start or a reload): that downgrade is owed now.
    const owed = nowMono >= worker.holdUntilMono && healthTier(healthForAge(nowMono - worker.lastSeenMono, this.options)) > healthTier(worker.health);
    this.enter(worker, owed ? nowMono : this.nextDeadline(worker, nowMono));
  }

  /** Pushes the worker's entry at `atMono`, or, past its TTL (undefined), puts it in the expired set. */
  private enter(worker: LiveWorker, atMono: number | undefined): void {
    if (atMono === undefined) {
      this.expired.add(worker);
      return;
    }
    this.heap.push({ worker, atMono });
    worker.scheduled = true;
  }

  /** The worker was heard from: it is no longer expired, and it needs an entry if it had none. */
  heard(worker: LiveWorker, nowMono: number): void {
    if (this.expired.size > 0) this.expired.delete(worker);
    if (!worker.scheduled) this.track(worker, nowMono);
  }

  /** A removed worker leaves the expired set (its heap entry is dropped when it comes due). */
  forget(worker: LiveWorker): void {
    this.expired.delete(worker);
  }

  /**
   * Pops the entries that are due and judges their workers: the downgrades to
   * announce (conditioned on the heartbeat they were judged by), and the
   * workers now past their TTL (added to {@link expired}). O(due entries).
   */
  due(nowMono: number): HealthChange[] {
    const changes: HealthChange[] = [];
    for (let entry = this.heap.peek(); entry !== undefined && entry.atMono <= nowMono; entry = this.heap.peek()) {
      this.heap.pop();
      const { worker } = entry;
      if (!this.fleet.isLive(worker)) continue;
      worker.scheduled = false;
      changes.push(...this.downgradesOf(worker, nowMono));
      // Judged by its age just now: the downgrades bring its health there, so its next deadline is ahead.
      this.enter(worker, this.nextDeadline(worker, nowMono));
    }
    return changes;
  }

  /** Judges the workers again at the next {@link due}: their downgrades could not be written. */
  retry(workerIds: Iterable<string>, nowMono: number): void {
    for (const id of workerIds) {
      const worker = this.fleet.get(id);
      if (worker === undefined) continue;
      this.heap.push({ worker, atMono: nowMono });
      worker.scheduled = true;
    }
  }

  /** Forgets every entry, before the fleet is filled again from a fresh snapshot. */
  clear(): void {
    while (this.heap.size > 0) this.heap.pop();
    this.expired.clear();
  }

  /** Every worker gets an entry: on becoming leader, since the schedule may have been idle. */
  trackAll(nowMono: number): void {
    for (const worker of this.fleet.values()) this.track(worker, nowMono);
  }

  /** The steps from the announced health down to the one the heartbeat age gives now. */
  private downgradesOf(worker: LiveWorker, nowMono: number): HealthChange[] {
    if (nowMono < worker.holdUntilMono) return [];
    const target = healthForAge(nowMono - worker.lastSeenMono, this.options);
    const steps: HealthChange[] = [];
    let from: HealthStatus = worker.health;
    while (healthTier(target) > healthTier(from)) {
      const to: HealthStatus = from === "healthy" ? "degraded" : "unhealthy";
      steps.push({ workerId: worker.id, from, to, heardUntilMs: worker.lastHeartbeatAtMs });
      from = to;
    }
    return steps;
  }

  /** Monotonic ms of the worker's next transition, or undefined once it is past its TTL. */
  private nextDeadline(worker: LiveWorker, nowMono: number): number | undefined {
    if (nowMono < worker.holdUntilMono) return worker.holdUntilMono;
    const age = nextTransitionAge(nowMono - worker.lastSeenMono, this.options, this.options.workerTtlMs);
    return age === undefined ? undefined : worker.lastSeenMono + age;
  }
}
