import { Acquisitions, type Acquisition, type Release } from "./acquisition.js";
import { AppliedListeners, type AppliedListener } from "./applied-changes.js";
import { BackgroundLoop, type LoopTiming } from "./background-loop.js";
import { ChangeFeed } from "./change-feed.js";
import { ShuttingDownError } from "./errors.js";
import { EvictionGuard, type EvictionStatus } from "./eviction-guard.js";
import { registryStats, type RegistryStats } from "./registry-stats.js";
import { watchAvailability, type StoreAvailability } from "./store-availability.js";
import { Fleet } from "./fleet.js";
import { FleetQueries, type WorkerPage } from "./fleet-queries.js";
import { HealthSchedule } from "./health-schedule.js";
import { Leadership } from "./leadership.js";
import { FleetLifecycle } from "./lifecycle.js";
import { Liveness } from "./liveness.js";
import { applyToReadModel, reloadReadModel, type ReadModel } from "./read-model.js";
import { loadSnapshot } from "./recovery.js";
import type { Snapshot } from "./registry-store.js";
import { Registrations, type RegisteredWorker } from "./registration.js";
import { ReservationBook } from "./reservation-book.js";
import { StreamHeartbeat } from "./stream-heartbeat.js";
import { TaskAccounting } from "./task-accounting.js";
import { validateReservationId, validateWorkerId, type FilterInput, type RegistrationInput } from "./validation.js";
import { Watches, watchFilter, type EventWatch } from "./watches.js";
import type { CommittedEvent, WatchListener } from "./worker-events.js";
import type { RankedWorkerView, WorkerView } from "./worker-view.js";

export type { Acquisition, Release } from "./acquisition.js";
export type { AppliedChange, AppliedListener } from "./applied-changes.js";
export type { WorkerPage } from "./fleet-queries.js";
export type { RegisteredWorker } from "./registration.js";
export type { RegistryStats } from "./registry-stats.js";
export { StreamHeartbeat } from "./stream-heartbeat.js";
export type { RankedWorkerView, WorkerView } from "./worker-view.js";

import type { HeartbeatAck, RegistryCounters, WorkerRegistryDeps } from "./registry-deps.js";
export type { HeartbeatAck, RegistryCounters, WorkerRegistryDeps } from "./registry-deps.js";

/**
 * The registry, as the transport calls it: a thin facade over its parts.
 *
 * A write is validated, checked against the read model, committed by the
 * store with the events that describe it, and answered once those events are
 * applied to the read model (the change feed), the same way events written by
 * other processes are. Reads come from the read model alone. Heartbeats are
 * soft state ({@link Liveness}); the fleet-wide schedules run on the process
 * that holds the lease ({@link BackgroundLoop}).
 */
export class WorkerRegistry {
  private readonly fleet: Fleet;
  private readonly book = new ReservationBook();
  private readonly feed: ChangeFeed;
  private readonly watches: Watches;
  private readonly schedule: HealthSchedule;
  private readonly guard: EvictionGuard;
  private readonly leadership: Leadership;
  private readonly liveness: Liveness;
  private readonly registrations: Registrations;
  private readonly accounting: TaskAccounting;
  private readonly acquisitions: Acquisitions;
  private readonly lifecycle: FleetLifecycle;
  private readonly queries: FleetQueries;
  private readonly loop: BackgroundLoop;
  private readonly loadedAtMono: number;
  private readonly timing: LoopTiming;
  /** Whether the store takes writes now: the transport reports NOT_SERVING while it does not. */
  readonly availability: StoreAvailability;
  private cold = false;
  private closed = false;
  private readonly applied: AppliedListeners;

  private readonly deps: WorkerRegistryDeps;

  private constructor(given: WorkerRegistryDeps, snapshot: Snapshot) {
    const watched = watchAvailability(given.store);
    this.deps = { ...given, store: watched.store };
    this.availability = watched.availability;
    const { store, clock, log, options } = this.deps;
    this.fleet = new Fleet(options, !store.shared, (worker, from, to) => log.info({ workerId: worker.id, from, to }, "worker health changed"));
    // Built on first use: events are applied only once every part exists.
    let readModel: ReadModel | undefined;
    const model = (): ReadModel => (readModel ??= { fleet: this.fleet, book: this.book, schedule: this.schedule, watches: this.watches, liveness: this.liveness });
    this.applied = new AppliedListeners(log);
    const apply = (event: CommittedEvent) => this.applied.around(event, this.fleet, () => applyToReadModel(model(), event, clock));
    this.feed = new ChangeFeed(store, apply, () => reloadReadModel(model(), store, options, clock), log, () => clock.now(), snapshot.revision);
    this.watches = new Watches(store, this.feed, snapshot.compactedRevision);
    this.schedule = new HealthSchedule(this.fleet, options);
    this.guard = new EvictionGuard(clock, log, {
      intakeWindowMs: options.heartbeatIntervalMs,
      collapseRatio: options.evictionCollapseRatio,
      collapseMinWorkers: options.collapseMinWorkers,
      historyWindows: Math.ceil(options.workerTtlMs / options.heartbeatIntervalMs) + 1,
      stallThresholdMs: options.stallThresholdMs,
      maxEvictionShare: options.maxEvictionShare,
      maxPauseMs: options.evictionMaxPauseMs,
    });
    const timing: LoopTiming = { leaseTtlMs: 5000, replicaPollMs: 1000, ...given.timing };
    this.timing = timing;
    this.leadership = new Leadership(store, given.replicaId, timing.leaseTtlMs, clock, log, (leading) => this.leadershipChanged(leading));
    const parts = { store, fleet: this.fleet, feed: this.feed, clock, log, options };
    this.liveness = new Liveness({ ...parts, schedule: this.schedule, guard: this.guard });
    this.registrations = new Registrations({ ...parts, guard: this.guard, newWorkerId: given.newWorkerId, newWorkerSecret: given.newWorkerSecret });
    this.accounting = new TaskAccounting(parts);
    this.acquisitions = new Acquisitions({ ...parts, book: this.book, newReservationId: given.newReservationId, random: given.random });
    this.queries = new FleetQueries(this.fleet, clock, options);
    this.lifecycle = new FleetLifecycle(parts);
    this.loop = new BackgroundLoop({ ...parts, book: this.book, schedule: this.schedule, liveness: this.liveness, guard: this.guard, leadership: this.leadership, timing });
    this.loadedAtMono = clock.monotonic();
  }

  /**
   * Loads the store's state into the read model (judging each worker by the
   * restart rule: see recovery.ts) and takes the lease if it is free. Call
   * {@link beginServing} when the server starts accepting calls, and
   * {@link close} at shutdown.
   */
  static async create(deps: WorkerRegistryDeps): Promise<WorkerRegistry> {
    const snapshot = await deps.store.load();
    const registry = new WorkerRegistry(deps, snapshot);
    const { clock, store, options, log } = registry.deps;
    const recovery = loadSnapshot(snapshot, { fleet: registry.fleet, book: registry.book }, options, { mono: clock.monotonic(), ms: clock.now(), shared: store.shared });
    registry.cold = recovery.cold;
    // Downgrades the last run did not get to announce: announced now, so every process and watcher agrees.
    if (recovery.changes.length > 0) await registry.feed.offer((await store.changeHealth(recovery.changes, clock.now())).events);
    log.info(
      { workers: snapshot.workers.length, notHealthyAtLastRun: recovery.notHealthy, reservations: snapshot.reservations.length, lastAliveAtMs: snapshot.lastAliveAtMs, revision: snapshot.revision, cold: recovery.cold },
      "registry recovered",
    );
    await registry.leadership.renew();
    return registry;
  }

  /**
   * Starts serving: on a cold start, the time spent starting up is nobody's
   * silence, so every deadline moves by it. Then the background work starts
   * (unless `backgroundTasks` is false, for tests that drive it by hand).
   */
  beginServing(options: { readonly backgroundTasks: boolean } = { backgroundTasks: true }): void {
    const startupMs = this.deps.clock.monotonic() - this.loadedAtMono;
    if (this.cold && startupMs > 0) {
      this.fleet.postponeDeadlines(startupMs);
      this.book.extend(startupMs);
    }
    this.schedule.trackAll(this.deps.clock.monotonic());
    if (options.backgroundTasks) this.loop.start();
  }

  /** @see Registrations.register */
  async registerWorker(input: RegistrationInput, registeredBy: string | null = null): Promise<RegisteredWorker> {
    this.assertOpen();
    return this.registrations.register(input, registeredBy);
  }

  /** @see Registrations.unregister */
  async unregisterWorker(workerId: string): Promise<void> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    this.queries.find(workerId);
    return this.registrations.unregister(workerId);
  }

  /**
   * Marks a worker alive now: O(1), no disk access; the timestamp is written
   * behind. A degraded or unhealthy worker not yet cleaned up is healthy again.
   * @throws WorkerNotFoundError; InvalidArgumentError.
   */
  heartbeat(workerId: string): WorkerView {
    this.assertOpen();
    const worker = this.queries.find(workerId);
    this.liveness.heartbeat(worker);
    return this.fleet.view(worker, this.deps.clock.monotonic());
  }

  /** {@link streamHeartbeat} for one heartbeat, by an id whose form the caller has validated. @throws WorkerNotFoundError. */
  heartbeatAck(workerId: string): HeartbeatAck {
    const ack = new StreamHeartbeat(workerId);
    this.streamHeartbeat(ack);
    return ack;
  }

  /** {@link heartbeat} for a stream, into its own ack: no view, no allocation, no lookup while its record is live. @throws WorkerNotFoundError. */
  streamHeartbeat(ack: StreamHeartbeat): void {
    this.assertOpen();
    const worker = ack.worker !== undefined && this.fleet.isLive(ack.worker) ? ack.worker : this.fleet.get(ack.workerId) ?? this.queries.find(ack.workerId);
    this.liveness.heartbeat(worker);
    ack.heard(worker, this.deps.options.heartbeatIntervalMs);
  }

  /** A heartbeat stream was bound to the worker (its first heartbeat has been accepted). */
  streamBound(workerId: string): void {
    const worker = this.fleet.get(workerId);
    if (worker !== undefined) worker.openStreams++;
  }

  /** A heartbeat stream of the worker ended; `failed` unless it was a clean goodbye or a shutdown. @see Liveness.streamEnded */
  streamEnded(workerId: string, failed: boolean): void {
    const worker = this.fleet.get(workerId);
    if (worker !== undefined) this.liveness.streamEnded(worker, failed && !this.closed);
  }

  /** @see TaskAccounting.updateTaskCount */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerView> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    return this.accounting.updateTaskCount(workerId, delta);
  }

  /** @see TaskAccounting.recordTaskCompletion */
  async recordTaskCompletion(workerId: string, success: boolean, durationMs: number): Promise<WorkerView> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    return this.accounting.recordTaskCompletion(workerId, success, durationMs);
  }

  /** @see Acquisitions.acquire */
  async acquireWorker(filter: FilterInput): Promise<Acquisition> {
    this.assertOpen();
    this.loop.advance();
    return this.acquisitions.acquire(filter);
  }

  /** @see Acquisitions.release */
  async releaseWorker(reservationId: string, success: boolean, durationMs: number): Promise<Release> {
    this.assertOpen();
    if (this.book.get(reservationId) === undefined) validateReservationId(reservationId);
    await this.feed.catchUpOnMiss(this.book.get(reservationId) !== undefined);
    return this.acquisitions.release(reservationId, success, durationMs);
  }

  /** @see FleetLifecycle.cordon */
  async cordonWorker(workerId: string): Promise<WorkerView> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    return this.lifecycle.cordon(workerId);
  }

  /** @see FleetLifecycle.uncordon */
  async uncordonWorker(workerId: string): Promise<WorkerView> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    return this.lifecycle.uncordon(workerId);
  }

  /** @see FleetLifecycle.drain */
  async drainWorker(workerId: string, graceMs?: number): Promise<WorkerView> {
    this.assertOpen();
    await this.applyWritesOf(workerId);
    return this.lifecycle.drain(workerId, graceMs);
  }

  /** Ends a pause of eviction now (an admin's call). Resolves to whether it was paused, and the status after. */
  resumeEviction(): { readonly wasPaused: boolean; readonly eviction: EvictionStatus } {
    this.assertOpen();
    const wasPaused = this.guard.resume();
    return { wasPaused, eviction: this.guard.status() };
  }

  /** The hash of a worker's token ("" if it has none), or undefined for an unknown worker. */
  workerTokenHash(workerId: string): string | undefined {
    return this.fleet.get(workerId)?.tokenHash;
  }

  /** Why a removed worker left, if this process saw it leave recently; undefined otherwise. */
  removalReasonOf(workerId: string): string | undefined {
    return this.fleet.removalOf(workerId);
  }

  /** Who registered a worker (the hash of a role token, or null), or undefined for an unknown worker. */
  registrantOf(workerId: string): string | null | undefined {
    const worker = this.fleet.get(workerId);
    return worker === undefined ? undefined : worker.registeredBy;
  }

  /** @see FleetQueries.getWorker */
  getWorker(workerId: string): WorkerView {
    return this.queries.getWorker(workerId);
  }

  /** The matching workers, by id, a page at a time, with the revision the page reflects. @see FleetQueries.discover */
  discoverWorkers(filter: FilterInput, pageSize = 0, pageToken = ""): WorkerPage & { readonly revision: number } {
    return { ...this.queries.discover(filter, pageSize, pageToken), revision: this.feed.revision };
  }

  /** @see FleetQueries.rank */
  getWorkersForLoadBalancing(filter: FilterInput, limit = 0): RankedWorkerView[] {
    this.loop.advance();
    return this.queries.rank(filter, limit);
  }

  /** Counts and totals over the fleet, as this process's read model has them now. */
  getRegistryStats(): RegistryStats {
    this.loop.advance();
    return registryStats(this.fleet.totals(), {
      revision: this.feed.revision,
      activeReservations: this.book.size,
      eviction: this.guard.status(),
      leadership: this.leadership.status(),
      replication: { store: this.deps.store.kind, lagMs: this.feed.replicationLagMs, storeWritable: this.availability.writable },
    });
  }

  get counters(): RegistryCounters {
    const { acquisitions, noMatch, noFreeSlot, contended, releases } = this.acquisitions.counters;
    const { heartbeats } = this.liveness;
    return { heartbeats, acquisitions, acquisitionsNoMatch: noMatch, acquisitionsNoFreeSlot: noFreeSlot, acquisitionsContended: contended, releases, reservationsExpired: this.loop.counters.reservationsExpired };
  }

  /**
   * Calls `listener` after each event this process applies, in revision order, its own and other replicas' alike
   * (see AppliedListeners). Not a watcher: cheap, unfiltered, never dropped. @returns the function that removes it.
   */
  onApplied(listener: AppliedListener): () => void {
    return this.applied.add(listener);
  }

  /** The number of open watchers. */
  get watcherCount(): number {
    return this.watches.size;
  }

  /**
   * Calls `visit` with each worker's id and the wall-clock time of its last
   * heartbeat. Read-only and allocation-free, O(workers): for a feed that
   * diffs heartbeat times once per period for all its readers (the dashboard).
   */
  forEachLastHeartbeat(visit: (workerId: string, lastHeartbeatAtMs: number) => void): void {
    for (const worker of this.fleet.values()) visit(worker.id, worker.lastHeartbeatAtMs);
  }

  /**
   * Opens a watch whose replay the caller reads at its reader's pace.
   * @throws RevisionCompactedError; InvalidArgumentError for a bad filter.
   * @see Watches.open
   */
  openWatch(filter: FilterInput, startRevision: number, listener: WatchListener): EventWatch {
    this.assertOpen();
    return this.watches.open(watchFilter(filter, this.deps.options.limits), startRevision, listener);
  }

  /** @see Watches.watch */
  async watch(filter: FilterInput, startRevision: number, listener: WatchListener): Promise<() => void> {
    this.assertOpen();
    return this.watches.watch(watchFilter(filter, this.deps.options.limits), startRevision, listener);
  }

  /** @see BackgroundLoop.tick */
  tick(): Promise<void> {
    return this.loop.tick();
  }

  /** @see BackgroundLoop.cleanup */
  cleanup(): Promise<number> {
    return this.loop.cleanup();
  }

  /** @see Liveness.flush */
  flushHeartbeats(): Promise<void> {
    return this.liveness.flush();
  }

  /** @see BackgroundLoop.prune */
  pruneEventLog(): Promise<void> {
    return this.loop.prune();
  }

  /** Applies what other processes wrote: the log beyond what was applied, and their heartbeats. */
  poll(): Promise<void> {
    return this.loop.poll();
  }

  /** Stops the background work, writes pending heartbeats and health changes, and gives the lease up. Calls after this are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loop.stop();
    await this.liveness.close();
    await this.leadership.resign();
  }

  private leadershipChanged(leading: boolean): void {
    if (!leading || !this.deps.store.shared) return;
    // Taking over from another process, or leading again after the store was out of reach: heartbeats other
    // processes still hold have to reach the store and this process, and the workers of a dead replica are
    // reconnecting elsewhere. No worker is judged before that (Nomad's failover TTL).
    const { clock, options } = this.deps;
    this.fleet.holdAll(clock.monotonic() + options.heartbeatIntervalMs + options.heartbeatFlushIntervalMs + this.timing.replicaPollMs);
    this.schedule.trackAll(clock.monotonic());
  }

  /** A write names a worker: see ChangeFeed.catchUpOnMiss. */
  private async applyWritesOf(workerId: string): Promise<void> {
    if (this.fleet.get(workerId) === undefined) validateWorkerId(workerId);
    await this.feed.catchUpOnMiss(this.fleet.get(workerId) !== undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new ShuttingDownError();
  }
}
