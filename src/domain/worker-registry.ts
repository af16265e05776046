import { BinaryHeap, selectTopK } from "./binary-heap.js";
import type { Clock } from "./clock.js";
import { ShuttingDownError, TaskCountOutOfRangeError, WorkerNotFoundError } from "./errors.js";
import { healthForAge, healthTier, nextTransitionAge, type HealthStatus } from "./health.js";
import type { Logger } from "./logger.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import { DuplicateWorkerIdError, type RegistryStore } from "./registry-store.js";
import { scoreWorker, type Score } from "./scoring.js";
import {
  validateDuration,
  validateFilter,
  validateIntegerRange,
  validateRegistration,
  validateWorkerId,
  type FilterInput,
  type RegistrationInput,
} from "./validation.js";
import type { WorkerRecord } from "./worker-record.js";

/** A worker as callers see it, with its health as of the moment it was read. */
export interface WorkerView {
  readonly id: string;
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  readonly currentTasks: number;
  readonly availableCapacity: number;
  readonly successRate: number;
  readonly healthStatus: HealthStatus;
  readonly registeredAtMs: number;
  readonly lastHeartbeatAtMs: number;
  readonly metrics: {
    readonly tasksCompleted: number;
    readonly tasksFailedCount: number;
    readonly averageTaskDurationMs: number;
  };
}

/** A worker with its load-balancing score. */
export interface RankedWorkerView extends Score {
  readonly worker: WorkerView;
}

/** One page of DiscoverWorkers. */
export interface WorkerPage {
  readonly workers: WorkerView[];
  /** The id to resume after, or "" on the last page. */
  readonly nextPageToken: string;
}

/** The fleet at a glance, as of the moment it was computed. */
export interface RegistryStats {
  readonly totalWorkers: number;
  readonly healthyWorkers: number;
  readonly degradedWorkers: number;
  readonly unhealthyWorkers: number;
  readonly totalCapacity: number;
  readonly usedCapacity: number;
  readonly availableCapacity: number;
  readonly tasksCompleted: number;
  readonly tasksFailed: number;
  /** Completed / (completed + failed) over the fleet; 0 before any completion. */
  readonly successRate: number;
}

/** What a heartbeat stream tells the worker after each heartbeat. */
export interface HeartbeatAck {
  readonly healthStatus: HealthStatus;
  readonly nextHeartbeatIntervalMs: number;
}

/** Everything the registry depends on, injected by the composition root. */
export interface WorkerRegistryDeps {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly newWorkerId: () => string;
  readonly log: Logger;
  readonly options: CompiledRegistryOptions;
}

/** Default page size of DiscoverWorkers and limit of load balancing when the caller sends 0. */
export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_RANK_LIMIT = 100;
const ID_ATTEMPTS = 3;

/** The in-memory serving state of one worker. */
interface LiveWorker extends WorkerRecord {
  /** Monotonic ms of the last heartbeat, or of the moment serving began for a recovered worker. */
  lastSeenMono: number;
  /** The health last announced (logged and counted); reads compute health afresh. */
  health: HealthStatus;
  /** Cached: changes only when the task count or the metrics change. */
  score: Score;
  /** True while the worker has its one entry in the schedule. */
  scheduled: boolean;
}

interface ScheduleEntry {
  readonly worker: LiveWorker;
  /** Monotonic ms at or before the worker's next health transition or expiry. */
  readonly atMono: number;
}

/**
 * The registry's rules: registration, heartbeats, health tiers, task
 * accounting, metrics, discovery, ranking and cleanup. It serves from memory
 * and writes durable changes through the store before acknowledging them;
 * heartbeat timestamps are soft state, written behind in batches.
 *
 * Health is a schedule, not a scan: each worker has one entry in a min-heap
 * at (or before) its next transition. A heartbeat only moves the worker's
 * last-seen time, O(1); when an entry comes due, the worker's health is
 * recomputed and its entry pushed again at its real next transition. So
 * transitions are logged as they happen, health counts are exact, and
 * cleanup takes exactly the expired workers.
 *
 * Restarts: workers recovered from the store are given a full healthy window
 * counted from {@link beginServing}, the moment the server accepts calls, so
 * the registry's own downtime never makes them unhealthy. Workers whose TTL
 * had already passed while the registry was still running are dropped by the
 * store at recovery.
 */
export class WorkerRegistry {
  private readonly workers = new Map<string, LiveWorker>();
  private readonly byCapability = new Map<string, Set<LiveWorker>>();
  private readonly schedule = new BinaryHeap<ScheduleEntry>((a, b) => a.atMono < b.atMono);
  /** Workers past their TTL, waiting for the next cleanup pass. */
  private readonly expired = new Set<LiveWorker>();
  private readonly healthCounts: Record<HealthStatus, number> = { healthy: 0, degraded: 0, unhealthy: 0 };
  private totals = { capacity: 0, used: 0, completed: 0, failed: 0 };
  private pendingHeartbeats = new Map<string, number>();
  private flushing: Promise<void> | undefined;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;

  private constructor(private readonly deps: WorkerRegistryDeps) {}

  /**
   * Loads the store's workers. Call {@link beginServing} when the server
   * starts accepting calls, and {@link close} at shutdown.
   */
  static async create(deps: WorkerRegistryDeps): Promise<WorkerRegistry> {
    const registry = new WorkerRegistry(deps);
    const recovered = await deps.store.recover({ workerTtlMs: deps.options.workerTtlMs });
    for (const record of recovered.workers) registry.add(record);
    deps.log.info(
      { workers: recovered.workers.length, expiredWhileRunning: recovered.expiredIds.length, lastAliveAtMs: recovered.lastAliveAtMs },
      "registry recovered",
    );
    return registry;
  }

  /**
   * Starts every recovered worker's healthy window now, and the background
   * work: health transitions (every second), heartbeat write-behind, cleanup.
   */
  beginServing(options: { readonly backgroundTasks: boolean } = { backgroundTasks: true }): void {
    const now = this.deps.clock.monotonic();
    for (const worker of this.workers.values()) {
      worker.lastSeenMono = now;
      this.scheduleNext(worker, now);
    }
    if (!options.backgroundTasks) return;
    const { heartbeatFlushIntervalMs, cleanupIntervalMs } = this.deps.options;
    this.every(1000, () => this.advance());
    this.every(heartbeatFlushIntervalMs, () => this.flushHeartbeats());
    this.every(cleanupIntervalMs, () => this.cleanup());
  }

  /**
   * Registers a worker; durable before it resolves.
   * @throws InvalidArgumentError for bad input; StoreUnavailableError.
   */
  async registerWorker(input: RegistrationInput): Promise<WorkerView> {
    this.assertOpen();
    validateRegistration(input, this.deps.options.limits);
    const now = this.deps.clock.now();
    for (let attempt = 1; ; attempt++) {
      const record: WorkerRecord = {
        id: this.deps.newWorkerId(),
        nodeId: input.nodeId,
        capabilities: [...input.capabilities],
        maxConcurrentTasks: input.maxConcurrentTasks,
        currentTasks: 0,
        tasksCompleted: 0,
        tasksFailed: 0,
        totalTaskDurationMs: 0,
        registeredAtMs: now,
        lastHeartbeatAtMs: now,
      };
      try {
        await this.deps.store.insertWorker(record);
      } catch (error) {
        if (error instanceof DuplicateWorkerIdError && attempt < ID_ATTEMPTS) continue;
        throw error;
      }
      const worker = this.add(record);
      this.scheduleNext(worker, worker.lastSeenMono);
      this.deps.log.info({ workerId: worker.id, nodeId: worker.nodeId, capabilities: worker.capabilities }, "worker registered");
      return this.view(worker);
    }
  }

  /**
   * Removes a worker at once.
   * @throws WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async unregisterWorker(workerId: string): Promise<void> {
    this.assertOpen();
    const worker = this.find(workerId);
    await this.deps.store.deleteWorker(worker.id);
    this.remove(worker);
    this.deps.log.info({ workerId }, "worker unregistered");
  }

  /**
   * Marks a worker alive now: O(1), no disk access; the timestamp is written
   * behind. A degraded or unhealthy worker not yet cleaned up is healthy again.
   * @throws WorkerNotFoundError; InvalidArgumentError.
   */
  heartbeat(workerId: string): WorkerView {
    return this.view(this.touch(workerId));
  }

  /** The heartbeat stream's fast path: {@link heartbeat} without building a view. */
  heartbeatAck(workerId: string): HeartbeatAck {
    this.touch(workerId);
    return { healthStatus: "healthy", nextHeartbeatIntervalMs: this.deps.options.heartbeatIntervalMs };
  }

  /**
   * Adds delta to the worker's current tasks, if the result stays within
   * 0..max_concurrent_tasks; durable before it resolves.
   * @throws TaskCountOutOfRangeError (nothing changed); WorkerNotFoundError; InvalidArgumentError.
   */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerView> {
    this.assertOpen();
    const limit = this.deps.options.limits.maxConcurrentTasksLimit;
    validateIntegerRange("delta", delta, -limit, limit);
    const worker = this.find(workerId);
    const target = worker.currentTasks + delta;
    // Refuse in memory first: an impossible change should not cost a disk write.
    if (target < 0 || target > worker.maxConcurrentTasks) {
      throw new TaskCountOutOfRangeError(workerId, worker.currentTasks, delta, worker.maxConcurrentTasks);
    }
    const result = await this.deps.store.adjustTaskCount(workerId, delta);
    if (result.status === "not-found") throw new WorkerNotFoundError(workerId);
    if (result.status === "out-of-range") {
      throw new TaskCountOutOfRangeError(workerId, result.currentTasks, delta, result.maxConcurrentTasks);
    }
    const current = this.workers.get(workerId) ?? worker;
    this.totals.used += result.currentTasks - current.currentTasks;
    current.currentTasks = result.currentTasks;
    this.rescore(current);
    return this.view(current);
  }

  /**
   * Adds one completion to the worker's metrics; durable before it resolves.
   * Does not change the task count.
   * @throws WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async recordTaskCompletion(workerId: string, success: boolean, durationMs: number): Promise<WorkerView> {
    this.assertOpen();
    validateDuration(durationMs, this.deps.options.limits);
    this.find(workerId);
    const counters = await this.deps.store.recordCompletion(workerId, success, durationMs);
    const worker = this.workers.get(workerId);
    if (counters === undefined || worker === undefined) throw new WorkerNotFoundError(workerId);
    this.totals.completed += counters.tasksCompleted - worker.tasksCompleted;
    this.totals.failed += counters.tasksFailed - worker.tasksFailed;
    Object.assign(worker, counters);
    this.rescore(worker);
    return this.view(worker);
  }

  /** @throws WorkerNotFoundError; InvalidArgumentError. */
  getWorker(workerId: string): WorkerView {
    return this.view(this.find(workerId));
  }

  /**
   * The workers matching the filter, ordered by id, one page at a time.
   * An empty health filter matches every status.
   * @throws InvalidArgumentError for a bad filter, page size or page token.
   */
  discoverWorkers(filter: FilterInput, pageSize = 0, pageToken = ""): WorkerPage {
    validateFilter(filter, this.deps.options.limits);
    validateIntegerRange("page_size", pageSize, 0, this.deps.options.limits.maxPageSize);
    if (pageToken !== "") validateWorkerId(pageToken, "page_token");
    const size = pageSize === 0 ? DEFAULT_PAGE_SIZE : pageSize;
    const now = this.deps.clock.monotonic();
    const matches = this.matching(filter, filter.healthStatuses, now);
    const after = pageToken === "" ? matches : filterIterable(matches, (w) => w.id > pageToken);
    // One more than the page tells whether another page follows, without counting the rest.
    const page = selectTopK(after, size + 1, (a, b) => a.id < b.id);
    const hasMore = page.length > size;
    if (hasMore) page.pop();
    return { workers: page.map((w) => this.view(w, now)), nextPageToken: hasMore ? page[page.length - 1]!.id : "" };
  }

  /**
   * The best workers for a task: healthy before degraded, then highest
   * priority, then fewest current tasks, then id (so equal workers rank in a
   * stable order). An empty health filter means healthy and degraded.
   * O(candidates x log limit): no sort of the fleet.
   * @throws InvalidArgumentError for a bad filter or limit.
   */
  getWorkersForLoadBalancing(filter: FilterInput, limit = 0): RankedWorkerView[] {
    validateFilter(filter, this.deps.options.limits);
    validateIntegerRange("limit", limit, 0, this.deps.options.limits.maxPageSize);
    const now = this.deps.clock.monotonic();
    const statuses: readonly HealthStatus[] = filter.healthStatuses.length > 0 ? filter.healthStatuses : ["healthy", "degraded"];
    const ranked = mapIterable(this.matching(filter, statuses, now), (worker) => ({ worker, tier: healthTier(this.healthOf(worker, now)) }));
    const best = selectTopK(ranked, limit === 0 ? DEFAULT_RANK_LIMIT : limit, rankedBefore);
    return best.map(({ worker }) => ({ worker: this.view(worker, now), ...worker.score }));
  }

  /** Counts and totals over the fleet, exact as of now. */
  getRegistryStats(): RegistryStats {
    this.advance();
    const { capacity, used, completed, failed } = this.totals;
    return {
      totalWorkers: this.workers.size,
      healthyWorkers: this.healthCounts.healthy,
      degradedWorkers: this.healthCounts.degraded,
      unhealthyWorkers: this.healthCounts.unhealthy,
      totalCapacity: capacity,
      usedCapacity: used,
      availableCapacity: capacity - used,
      tasksCompleted: completed,
      tasksFailed: failed,
      successRate: completed + failed === 0 ? 0 : completed / (completed + failed),
    };
  }

  /**
   * Applies every health transition and expiry that is due: pops the
   * schedule's due entries only, never scans the fleet. Runs every second,
   * and before stats are read.
   */
  advance(): void {
    const now = this.deps.clock.monotonic();
    for (let entry = this.schedule.peek(); entry !== undefined && entry.atMono <= now; entry = this.schedule.peek()) {
      this.schedule.pop();
      const { worker } = entry;
      if (this.workers.get(worker.id) !== worker) continue;
      worker.scheduled = false;
      const health = this.healthOf(worker, now);
      if (health !== worker.health) this.announce(worker, health);
      if (now - worker.lastSeenMono > this.deps.options.workerTtlMs) this.expired.add(worker);
      else this.scheduleNext(worker, now);
    }
  }

  /**
   * Removes the workers whose TTL has passed, in transactions of at most
   * cleanupBatchSize. Resolves to how many were removed.
   */
  async cleanup(): Promise<number> {
    this.advance();
    let removed = 0;
    while (this.expired.size > 0 && !this.closed) {
      const batch = [...take(this.expired, this.deps.options.cleanupBatchSize)];
      await this.deps.store.deleteWorkers(batch.map((w) => w.id));
      for (const worker of batch) {
        this.expired.delete(worker);
        this.remove(worker);
        this.deps.log.info({ workerId: worker.id, nodeId: worker.nodeId }, "worker removed by cleanup");
      }
      removed += batch.length;
    }
    if (removed > 0) this.deps.log.info({ removed, remaining: this.workers.size }, "cleanup pass finished");
    return removed;
  }

  /**
   * Writes the heartbeats received since the last flush in one transaction.
   * On a storage fault they are kept for the next flush; heartbeats are soft
   * state, so a fault here never fails a caller.
   */
  async flushHeartbeats(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = this.pendingHeartbeats;
    this.pendingHeartbeats = new Map();
    this.flushing = this.deps.store
      .writeHeartbeats(batch, this.deps.clock.now())
      .catch((error: unknown) => {
        for (const [id, at] of batch) if (!this.pendingHeartbeats.has(id)) this.pendingHeartbeats.set(id, at);
        this.deps.log.warn({ err: error, pending: this.pendingHeartbeats.size }, "heartbeat flush failed; will retry");
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** True once {@link close} has begun. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Stops the background work and writes pending heartbeats. Calls after this are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.flushing;
    await this.flushHeartbeats();
  }

  private touch(workerId: string): LiveWorker {
    this.assertOpen();
    const worker = this.find(workerId);
    const now = this.deps.clock.monotonic();
    worker.lastSeenMono = now;
    worker.lastHeartbeatAtMs = this.deps.clock.now();
    this.pendingHeartbeats.set(worker.id, worker.lastHeartbeatAtMs);
    if (worker.health !== "healthy") this.announce(worker, "healthy");
    this.expired.delete(worker);
    if (!worker.scheduled) this.scheduleNext(worker, now);
    return worker;
  }

  private find(workerId: string): LiveWorker {
    validateWorkerId(workerId);
    const worker = this.workers.get(workerId);
    if (worker === undefined) throw new WorkerNotFoundError(workerId);
    return worker;
  }

  private add(record: WorkerRecord): LiveWorker {
    const worker: LiveWorker = {
      ...record,
      lastSeenMono: this.deps.clock.monotonic(),
      health: "healthy",
      score: scoreWorker(record, this.deps.options.scoring),
      scheduled: false,
    };
    this.workers.set(worker.id, worker);
    for (const capability of worker.capabilities) {
      let set = this.byCapability.get(capability);
      if (set === undefined) this.byCapability.set(capability, (set = new Set()));
      set.add(worker);
    }
    this.healthCounts.healthy++;
    this.totals.capacity += worker.maxConcurrentTasks;
    this.totals.used += worker.currentTasks;
    this.totals.completed += worker.tasksCompleted;
    this.totals.failed += worker.tasksFailed;
    return worker;
  }

  private remove(worker: LiveWorker): void {
    if (this.workers.get(worker.id) !== worker) return;
    this.workers.delete(worker.id);
    for (const capability of worker.capabilities) {
      const set = this.byCapability.get(capability);
      set?.delete(worker);
      if (set?.size === 0) this.byCapability.delete(capability);
    }
    this.expired.delete(worker);
    this.pendingHeartbeats.delete(worker.id);
    this.healthCounts[worker.health]--;
    this.totals.capacity -= worker.maxConcurrentTasks;
    this.totals.used -= worker.currentTasks;
    this.totals.completed -= worker.tasksCompleted;
    this.totals.failed -= worker.tasksFailed;
  }

  /** The workers that pass the filter; walks the smallest capability set, never the whole fleet when a capability is given. */
  private *matching(filter: FilterInput, statuses: readonly HealthStatus[], now: number): Iterable<LiveWorker> {
    let smallest: Iterable<LiveWorker> = this.workers.values();
    let smallestSize = Infinity;
    for (const capability of filter.capabilities) {
      const set = this.byCapability.get(capability);
      if (set === undefined) return;
      if (set.size < smallestSize) [smallest, smallestSize] = [set, set.size];
    }
    const wantsStatus = statuses.length > 0 && statuses.length < 3 ? new Set(statuses) : undefined;
    for (const worker of smallest) {
      if (worker.maxConcurrentTasks - worker.currentTasks < filter.minAvailableCapacity) continue;
      if (wantsStatus !== undefined && !wantsStatus.has(this.healthOf(worker, now))) continue;
      if (filter.capabilities.length > 1 && !filter.capabilities.every((c) => worker.capabilities.includes(c))) continue;
      yield worker;
    }
  }

  private healthOf(worker: LiveWorker, now: number): HealthStatus {
    return healthForAge(now - worker.lastSeenMono, this.deps.options);
  }

  private announce(worker: LiveWorker, to: HealthStatus): void {
    const from = worker.health;
    this.healthCounts[from]--;
    this.healthCounts[to]++;
    worker.health = to;
    this.deps.log.info({ workerId: worker.id, from, to }, "worker health changed");
  }

  private scheduleNext(worker: LiveWorker, now: number): void {
    const age = nextTransitionAge(now - worker.lastSeenMono, this.deps.options, this.deps.options.workerTtlMs);
    if (age === undefined) return;
    this.schedule.push({ worker, atMono: worker.lastSeenMono + age });
    worker.scheduled = true;
  }

  private rescore(worker: LiveWorker): void {
    worker.score = scoreWorker(worker, this.deps.options.scoring);
  }

  private view(worker: LiveWorker, now = this.deps.clock.monotonic()): WorkerView {
    const completions = worker.tasksCompleted + worker.tasksFailed;
    return {
      id: worker.id,
      nodeId: worker.nodeId,
      capabilities: worker.capabilities,
      maxConcurrentTasks: worker.maxConcurrentTasks,
      currentTasks: worker.currentTasks,
      availableCapacity: worker.maxConcurrentTasks - worker.currentTasks,
      successRate: worker.score.successScore,
      healthStatus: this.healthOf(worker, now),
      registeredAtMs: worker.registeredAtMs,
      lastHeartbeatAtMs: worker.lastHeartbeatAtMs,
      metrics: {
        tasksCompleted: worker.tasksCompleted,
        tasksFailedCount: worker.tasksFailed,
        averageTaskDurationMs: completions === 0 ? 0 : worker.totalTaskDurationMs / completions,
      },
    };
  }

  private every(intervalMs: number, task: () => unknown): void {
    const timer = setInterval(() => {
      Promise.resolve()
        .then(task)
        .catch((error: unknown) => this.deps.log.error({ err: error }, "background task failed"));
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  private assertOpen(): void {
    if (this.closed) throw new ShuttingDownError();
  }
}

function rankedBefore(a: { worker: LiveWorker; tier: number }, b: { worker: LiveWorker; tier: number }): boolean {
  if (a.tier !== b.tier) return a.tier < b.tier;
  if (a.worker.score.priority !== b.worker.score.priority) return a.worker.score.priority > b.worker.score.priority;
  if (a.worker.currentTasks !== b.worker.currentTasks) return a.worker.currentTasks < b.worker.currentTasks;
  return a.worker.id < b.worker.id;
}

function* filterIterable<T>(items: Iterable<T>, keep: (item: T) => boolean): Iterable<T> {
  for (const item of items) if (keep(item)) yield item;
}

function* mapIterable<T, U>(items: Iterable<T>, map: (item: T) => U): Iterable<U> {
  for (const item of items) yield map(item);
}

function* take<T>(items: Iterable<T>, count: number): Iterable<T> {
  if (count <= 0) return;
  for (const item of items) {
    yield item;
    if (--count === 0) return;
  }
}
