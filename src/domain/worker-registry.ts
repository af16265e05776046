import { BinaryHeap, selectTopK } from "./binary-heap.js";
import { OUT_OF_ROTATION, RankIndex, type RankKey } from "./rank-index.js";
import type { Clock } from "./clock.js";
import {
  InvalidArgumentError,
  LimitExceededError,
  NoWorkerAvailableError,
  ReservationNotFoundError,
  ShuttingDownError,
  TaskCountOutOfRangeError,
  WorkerNotFoundError,
} from "./errors.js";
import { EvictionGuard, type EvictionStatus } from "./eviction-guard.js";
import { healthForAge, healthTier, nextTransitionAge, type HealthStatus } from "./health.js";
import type { Logger } from "./logger.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import { EventLog, replayAll, type EventWatch, type PendingEvent } from "./event-log.js";
import { DuplicateWorkerIdError, type EventDraft, type RegistryStore } from "./registry-store.js";
import { scoreWorker, type Score } from "./scoring.js";
import {
  validateDuration,
  validateFilter,
  validateIntegerRange,
  validateRegistration,
  validateReservationId,
  validateWorkerId,
  type FilterInput,
  type RegistrationInput,
} from "./validation.js";
import type { WatchListener } from "./worker-events.js";
import type { WorkerRecord } from "./worker-record.js";
import { issueWorkerToken } from "./worker-token.js";
import type { RankedWorkerView, WorkerView } from "./worker-view.js";

export type { RankedWorkerView, WorkerView } from "./worker-view.js";

/** One page of DiscoverWorkers. */
export interface WorkerPage {
  readonly workers: WorkerView[];
  /** The id to resume after, or "" on the last page. */
  readonly nextPageToken: string;
  /** The revision of the last change reflected in the page. */
  readonly revision: number;
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
  readonly revision: number;
  readonly activeReservations: number;
  readonly eviction: EvictionStatus;
}

/** What a heartbeat stream tells the worker after each heartbeat. */
export interface HeartbeatAck {
  readonly healthStatus: HealthStatus;
  readonly nextHeartbeatIntervalMs: number;
  /** The wall-clock time recorded for this heartbeat: what last_heartbeat_at will show. */
  readonly heartbeatAtMs: number;
}

/** A new worker, with the token it alone receives (the registry keeps only its hash). */
export type RegisteredWorker = WorkerView & { readonly token: string };

/** A slot granted by {@link WorkerRegistry.acquireWorker}. */
export interface Acquisition {
  readonly ranked: RankedWorkerView;
  readonly reservationId: string;
  /** Wall-clock ms. */
  readonly expiresAtMs: number;
}

/** What {@link WorkerRegistry.releaseWorker} did. */
export interface Release {
  readonly outcome: "released" | "already-released" | "expired";
  readonly worker: WorkerView;
}

/** Counters a metrics endpoint reads; they only go up. */
export interface RegistryCounters {
  heartbeats: number;
  acquisitions: number;
  releases: number;
  reservationsExpired: number;
}

/** Everything the registry depends on, injected by the composition root. */
export interface WorkerRegistryDeps {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly newWorkerId: () => string;
  readonly newReservationId: () => string;
  /** 256 random bits, base64url: the secret of a worker token. */
  readonly newWorkerSecret: () => string;
  /** Uniform in [0, 1): AcquireWorker's choice among near-equal workers. */
  readonly random: () => number;
  readonly log: Logger;
  readonly options: CompiledRegistryOptions;
}

/** Default page size of DiscoverWorkers and limit of load balancing when the caller sends 0. */
export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_RANK_LIMIT = 100;
/** Tries at a fresh id, or at another worker when the chosen one filled up meanwhile. */
const ATTEMPTS = 3;
/** AcquireWorker considers this many of the best candidates for its random choice among near-ties. */
const ACQUIRE_CANDIDATES = 16;
const PRUNE_BATCH = 10_000;
/** Heartbeat timestamps written per transaction. */
const HEARTBEAT_CHUNK = 1000;

/** The in-memory serving state of one worker. */
interface LiveWorker extends WorkerRecord {
  /** Monotonic ms of the last heartbeat, or of the moment serving began for a recovered worker. */
  lastSeenMono: number;
  /** The health last announced (logged, counted, sent to watchers); reads compute health afresh. */
  health: HealthStatus;
  /** Its last heartbeat stream failed (connection lost): degraded until the next heartbeat. */
  disconnected: boolean;
  /**
   * Recovered at start-up when it was not healthy as the registry last ran:
   * kept out of ranking and acquisition until it is heard from again.
   */
  unconfirmed: boolean;
  /** Monotonic ms before which its health is held where recovery left it: no downgrade, no expiry. 0: none. */
  holdUntilMono: number;
  /** Heartbeat streams bound to this worker right now. */
  openStreams: number;
  /** Cached: changes only when the task count or the metrics change. */
  score: Score;
  /** True while the worker has its one entry in the schedule. */
  scheduled: boolean;
  /** The eviction guard's intake window this worker was last counted in. */
  intakeWindow: number;
  /** Where the rank index has it filed. */
  rankedAs: RankKey | undefined;
  readonly reservations: Set<LiveReservation>;
  /**
   * AcquireWorker slots being committed: counted when choosing, so concurrent
   * acquisitions do not all pick the last free slot, but never mixed into
   * currentTasks, which mirrors only what the store committed.
   */
  acquiring: number;
}

interface LiveReservation {
  readonly id: string;
  readonly worker: LiveWorker;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  deadlineMono: number;
}

interface ScheduleEntry<T> {
  readonly item: T;
  /** Monotonic ms at or before the item's next deadline. */
  readonly atMono: number;
}

/**
 * The registry's rules: registration, heartbeats, health tiers, task
 * accounting, metrics, discovery, ranking, slot reservations, the revisioned
 * event log, and cleanup. It serves from memory and writes durable changes,
 * with the events that describe them, through the store before
 * acknowledging them; heartbeat timestamps are soft state, written behind.
 *
 * Health is a schedule, not a scan: each worker has one entry in a min-heap
 * at (or before) its next transition. A heartbeat only moves the worker's
 * last-seen time, O(1); when an entry comes due, the worker's health is
 * recomputed and its entry pushed again at its real next transition. So
 * transitions are announced as they happen, health counts are exact, and
 * cleanup takes exactly the expired workers. Reservations expire the same way.
 *
 * Restarts: workers recovered from the store are given a full healthy window
 * counted from {@link beginServing}, the moment the server accepts calls, so
 * the registry's own downtime never makes them unhealthy; reservations keep
 * the time they had left (at most one TTL).
 */
export class WorkerRegistry {
  private readonly workers = new Map<string, LiveWorker>();
  /** The live workers of each node_id: a registration replaces them. */
  private readonly byNodeId = new Map<string, Set<LiveWorker>>();
  /** The registration in progress for each node_id: registrations of one node_id run one after another. */
  private readonly nodeRegistrations = new Map<string, Promise<unknown>>();
  private readonly ranking = new RankIndex<LiveWorker>();
  private readonly schedule = new BinaryHeap<ScheduleEntry<LiveWorker>>((a, b) => a.atMono < b.atMono);
  private readonly reservations = new Map<string, LiveReservation>();
  private readonly reservationSchedule = new BinaryHeap<ScheduleEntry<LiveReservation>>((a, b) => a.atMono < b.atMono);
  /** Workers past their TTL, waiting for the next cleanup pass, oldest first. */
  private readonly expired = new Set<LiveWorker>();
  private readonly healthCounts: Record<HealthStatus, number> = { healthy: 0, degraded: 0, unhealthy: 0 };
  private totals = { capacity: 0, used: 0, completed: 0, failed: 0 };
  private pendingHeartbeats = new Map<string, number>();
  private flushing: Promise<void> | undefined;
  private readonly events: EventLog;
  private readonly guard: EvictionGuard;
  private recoveredReservations: { readonly reservation: LiveReservation; readonly remainingMs: number }[] = [];
  /** Recovered workers that were not healthy as the registry last ran, with their heartbeat age then. */
  private recoveredUnhealthy: { readonly worker: LiveWorker; readonly health: HealthStatus; readonly ageMs: number }[] = [];
  private timers: NodeJS.Timeout[] = [];
  private flushScheduled = false;
  /** Registrations accepted but not yet committed. */
  private registering = 0;
  private closed = false;
  /** Monotonic counters for metrics. */
  readonly counters: RegistryCounters = { heartbeats: 0, acquisitions: 0, releases: 0, reservationsExpired: 0 };

  private constructor(
    private readonly deps: WorkerRegistryDeps,
    revision: number,
    compactedRevision: number,
  ) {
    this.events = new EventLog(deps.store, { revision, compactedRevision });
    const { options } = deps;
    this.guard = new EvictionGuard(deps.clock, deps.log, {
      intakeWindowMs: options.heartbeatIntervalMs,
      collapseRatio: options.evictionCollapseRatio,
      collapseMinWorkers: options.collapseMinWorkers,
      historyWindows: Math.ceil(options.workerTtlMs / options.heartbeatIntervalMs) + 1,
      stallThresholdMs: options.stallThresholdMs,
      maxEvictionShare: options.maxEvictionShare,
      maxPauseMs: options.evictionMaxPauseMs,
    });
  }

  /**
   * Loads the store's workers and reservations. Call
   * {@link beginServing} when the server starts accepting calls, and
   * {@link close} at shutdown.
   */
  static async create(deps: WorkerRegistryDeps): Promise<WorkerRegistry> {
    const recovered = await deps.store.recover({ workerTtlMs: deps.options.workerTtlMs });
    const registry = new WorkerRegistry(deps, recovered.revision, recovered.compactedRevision);
    // Each worker keeps the health it had when the registry last ran: its heartbeat age then, not now, since
    // the registry's own downtime is nobody's silence. Nothing is removed here: a clock stepped forwards shortly
    // before the shutdown would make a live fleet look overdue, so the grace window and the eviction guard decide.
    const records = [...recovered.expired, ...recovered.workers];
    const lastAliveAtMs = recovered.lastAliveAtMs ?? Math.max(0, ...records.map((r) => r.lastHeartbeatAtMs));
    for (const record of records) {
      const worker = registry.add(record);
      const ageMs = Math.max(0, lastAliveAtMs - record.lastHeartbeatAtMs);
      const health = healthForAge(ageMs, deps.options);
      if (health !== "healthy") registry.recoveredUnhealthy.push({ worker, health, ageMs });
    }
    for (const record of recovered.reservations) {
      const worker = registry.workers.get(record.workerId);
      if (worker === undefined) continue;
      const reservation: LiveReservation = { ...record, worker, deadlineMono: 0 };
      // With no record of when the registry last ran (it died before its first flush), the whole TTL is left.
      const left = record.expiresAtMs - (recovered.lastAliveAtMs ?? record.createdAtMs);
      const remainingMs = Math.min(deps.options.reservationTtlMs, Math.max(0, left));
      registry.recoveredReservations.push({ reservation, remainingMs });
    }
    deps.log.info(
      {
        workers: recovered.workers.length + recovered.expired.length,
        overdueAtLastShutdown: recovered.expired.length,
        notHealthyAtLastRun: registry.recoveredUnhealthy.length,
        reservations: recovered.reservations.length,
        lastAliveAtMs: recovered.lastAliveAtMs,
        revision: recovered.revision,
      },
      "registry recovered",
    );
    return registry;
  }

  /**
   * Starts every recovered worker's healthy window now, resumes recovered
   * reservations with the time they had left, and starts the background work:
   * the one-second tick (stalls, health transitions, reservation expiry),
   * heartbeat write-behind, cleanup and event-log pruning.
   */
  beginServing(options: { readonly backgroundTasks: boolean } = { backgroundTasks: true }): void {
    const now = this.deps.clock.monotonic();
    for (const worker of this.workers.values()) worker.lastSeenMono = now;
    // The grace protects live workers while they reconnect (one heartbeat interval); it never promotes a worker
    // nobody has heard from: those keep their health, stay out of ranking, and are judged by their real age after it.
    const holdUntilMono = now + this.deps.options.heartbeatIntervalMs;
    for (const { worker, health, ageMs } of this.recoveredUnhealthy) {
      worker.lastSeenMono = now - ageMs;
      worker.holdUntilMono = holdUntilMono;
      worker.unconfirmed = true;
      this.healthCounts[worker.health]--;
      this.healthCounts[health]++;
      worker.health = health;
      this.ranking.update(worker, rankKeyOf(worker));
    }
    this.recoveredUnhealthy = [];
    for (const worker of this.workers.values()) this.scheduleNext(worker, now);
    for (const { reservation, remainingMs } of this.recoveredReservations) {
      reservation.deadlineMono = now + remainingMs;
      this.trackReservation(reservation);
    }
    this.recoveredReservations = [];
    if (!options.backgroundTasks) return;
    const { heartbeatFlushIntervalMs, cleanupIntervalMs, eventTtlMs } = this.deps.options;
    this.every(1000, () => this.tick());
    this.every(heartbeatFlushIntervalMs, () => this.flushHeartbeats());
    this.every(cleanupIntervalMs, () => this.cleanup());
    this.every(Math.min(10_000, eventTtlMs), () => this.pruneEventLog());
  }

  /**
   * Registers a worker; durable before it resolves. The result carries the
   * worker's token, given out this once: only its hash is kept.
   * `registeredBy` is the hash of the role token that registers it (null with
   * authentication off): that token may later act on the worker.
   * @throws InvalidArgumentError for bad input; LimitExceededError when the
   *   registry holds `limits.maxWorkers`; StoreUnavailableError.
   */
  async registerWorker(input: RegistrationInput, registeredBy: string | null = null): Promise<RegisteredWorker> {
    this.assertOpen();
    validateRegistration(input, this.deps.options.limits);
    const { maxWorkers } = this.deps.options.limits;
    // Registrations still being committed count too: concurrent ones must not overshoot the limit together.
    if (this.workers.size + this.registering >= maxWorkers) {
      throw new LimitExceededError(`the registry holds its limit of ${maxWorkers} workers; unregister some or raise --max-workers`);
    }
    this.registering++;
    // One node_id at a time, so that each registration sees (and replaces) the one before it.
    const previous = this.nodeRegistrations.get(input.nodeId);
    const mine = (previous === undefined ? Promise.resolve() : previous.catch(() => undefined)).then(() => this.insertNewWorker(input, registeredBy));
    this.nodeRegistrations.set(input.nodeId, mine);
    try {
      return await mine;
    } finally {
      this.registering--;
      if (this.nodeRegistrations.get(input.nodeId) === mine) this.nodeRegistrations.delete(input.nodeId);
    }
  }

  private async insertNewWorker(input: RegistrationInput, registeredBy: string | null): Promise<RegisteredWorker> {
    const now = this.deps.clock.now();
    for (let attempt = 1; ; attempt++) {
      const id = this.deps.newWorkerId();
      const { token, tokenHash } = issueWorkerToken(id, this.deps.newWorkerSecret());
      const record: WorkerRecord = {
        id,
        nodeId: input.nodeId,
        capabilities: [...input.capabilities],
        maxConcurrentTasks: input.maxConcurrentTasks,
        currentTasks: 0,
        tasksCompleted: 0,
        tasksFailed: 0,
        totalTaskDurationMs: 0,
        registeredAtMs: now,
        lastHeartbeatAtMs: now,
        tokenHash,
        registeredBy,
      };
      const event: PendingEvent = { type: "registered", worker: this.recordView(record, "healthy"), occurredAtMs: now };
      // A node_id names one live worker: a process that restarted and registers afresh replaces its old record,
      // which would otherwise live on for a TTL, idle and healthy, and attract work that fails.
      const replacing = [...(this.byNodeId.get(input.nodeId) ?? [])];
      const replacements = replacing.map((old): PendingEvent => ({ type: "unregistered", worker: this.view(old), occurredAtMs: now, reason: "replaced" }));
      let replaced: readonly string[];
      try {
        ({ replaced } = await this.events.commit(
          [...replacements, event],
          (drafts) => this.deps.store.insertWorker(record, drafts.slice(replacements.length), replacing.map((old, i) => ({ id: old.id, event: drafts[i]! }))),
          (result, events) => events.filter((e) => e.type === "registered" || result.replaced.includes(e.worker.id)),
        ));
      } catch (error) {
        if (error instanceof DuplicateWorkerIdError && attempt < ATTEMPTS) continue;
        throw error;
      }
      for (const old of replacing) {
        if (!replaced.includes(old.id)) continue;
        this.remove(old);
        this.deps.log.info({ workerId: old.id, nodeId: old.nodeId, replacedBy: id }, "worker replaced by a new registration of its node");
      }
      const worker = this.add(record);
      this.scheduleNext(worker, worker.lastSeenMono);
      this.guard.recordHeartbeat(worker);
      this.deps.log.info({ workerId: worker.id, nodeId: worker.nodeId, capabilities: worker.capabilities }, "worker registered");
      return { ...this.view(worker), token };
    }
  }

  /**
   * Removes a worker at once, with its reservations.
   * @throws WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async unregisterWorker(workerId: string): Promise<void> {
    this.assertOpen();
    const worker = this.find(workerId);
    const event: PendingEvent = { type: "unregistered", worker: this.view(worker), occurredAtMs: this.deps.clock.now(), reason: "unregistered" };
    const { deleted } = await this.events.commit(
      [event],
      (drafts: EventDraft[]) => this.deps.store.deleteWorkers([{ id: worker.id, event: drafts[0]! }], []),
      eventsOfDeleted,
    );
    if (deleted.length === 0) throw new WorkerNotFoundError(workerId);
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

  /**
   * The heartbeat stream's fast path: {@link heartbeat} without building a
   * view, for an id whose form the caller has already validated.
   * @throws WorkerNotFoundError.
   */
  heartbeatAck(workerId: string): HeartbeatAck {
    const worker = this.touch(workerId, true);
    return { healthStatus: "healthy", nextHeartbeatIntervalMs: this.deps.options.heartbeatIntervalMs, heartbeatAtMs: worker.lastHeartbeatAtMs };
  }

  /** A heartbeat stream was bound to the worker (its first heartbeat has been accepted). */
  streamBound(workerId: string): void {
    const worker = this.workers.get(workerId);
    if (worker !== undefined) worker.openStreams++;
  }

  /**
   * A heartbeat stream of the worker ended. If it failed (cancelled, or the
   * connection broke) and it was the worker's last stream, the worker is
   * degraded at once, with an event: the process is probably gone. The time
   * thresholds still decide when it becomes unhealthy and is removed; its
   * next heartbeat makes it healthy again.
   */
  streamEnded(workerId: string, failed: boolean): void {
    const worker = this.workers.get(workerId);
    if (worker === undefined) return;
    worker.openStreams = Math.max(0, worker.openStreams - 1);
    if (!failed || worker.openStreams > 0 || worker.disconnected) return;
    worker.disconnected = true;
    this.deps.log.info({ workerId }, "worker heartbeat stream lost");
    this.announceUpTo(worker, this.healthOf(worker, this.deps.clock.monotonic()));
  }

  /**
   * Adds delta to the worker's current tasks, if the result stays within
   * 0..max_concurrent_tasks (and does not give back slots that AcquireWorker
   * reservations hold: ReleaseWorker frees those); durable before it resolves.
   * @throws TaskCountOutOfRangeError (nothing changed); WorkerNotFoundError; InvalidArgumentError.
   */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerView> {
    this.assertOpen();
    const limit = this.deps.options.limits.maxConcurrentTasksLimit;
    validateIntegerRange("delta", delta, -limit, limit);
    const worker = this.find(workerId);
    const target = worker.currentTasks + delta;
    const reserved = worker.reservations.size;
    // Refuse in memory first: an impossible change should not cost a disk write.
    if (target < reserved || target > worker.maxConcurrentTasks) {
      throw new TaskCountOutOfRangeError(workerId, worker.currentTasks, delta, worker.maxConcurrentTasks, reserved);
    }
    const event = this.updatedEvent(worker, { currentTasks: target });
    const result = await this.events.commit([event], (drafts) => this.deps.store.adjustTaskCount(workerId, delta, drafts), (r, evs) => (r.status === "ok" ? evs : []));
    if (result.status === "not-found") throw new WorkerNotFoundError(workerId);
    if (result.status === "out-of-range") {
      throw new TaskCountOutOfRangeError(workerId, result.currentTasks, delta, result.maxConcurrentTasks, result.reservedTasks);
    }
    this.setCurrentTasks(worker, result.currentTasks);
    return this.view(worker);
  }

  /**
   * Adds one completion to the worker's metrics; durable before it resolves.
   * Does not change the task count.
   * @throws WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async recordTaskCompletion(workerId: string, success: boolean, durationMs: number): Promise<WorkerView> {
    this.assertOpen();
    validateDuration(durationMs, this.deps.options.limits);
    const worker = this.find(workerId);
    const event = this.updatedEvent(worker, withCompletion(worker, success, durationMs));
    const { counters } = await this.events.commit(
      [event],
      (drafts) => this.deps.store.recordCompletion(workerId, success, durationMs, drafts),
      (r, evs) => (r.counters !== undefined ? evs : []),
    );
    if (counters === undefined) throw new WorkerNotFoundError(workerId);
    this.setCounters(worker, counters);
    return this.view(worker);
  }

  /**
   * Takes a slot on the best matching worker, atomically: the choice and the
   * slot are one step, so concurrent orchestrators never overbook a worker.
   * Candidates rank as in {@link getWorkersForLoadBalancing}; among those in
   * the best tier whose priority is within `acquireTieTolerance` of the best,
   * one is chosen at random, so near-equal workers share the load.
   * @throws NoWorkerAvailableError (nothing matched, or nothing had a free slot); InvalidArgumentError.
   */
  async acquireWorker(filter: FilterInput): Promise<Acquisition> {
    this.assertOpen();
    validateFilter(filter, this.deps.options.limits);
    for (let attempt = 1; ; attempt++) {
      const worker = this.chooseForAcquisition(filter);
      const createdAtMs = this.deps.clock.now();
      const { reservationTtlMs } = this.deps.options;
      const record = { id: this.deps.newReservationId(), workerId: worker.id, createdAtMs, expiresAtMs: createdAtMs + reservationTtlMs };
      const event = this.updatedEvent(worker, { currentTasks: worker.currentTasks + worker.acquiring + 1 });
      // Count the slot as taken while the store commits, so concurrent acquisitions choose with it counted.
      worker.acquiring++;
      let result: Awaited<ReturnType<RegistryStore["acquireSlot"]>>;
      try {
        result = await this.events.commit([event], (drafts) => this.deps.store.acquireSlot(record, drafts), (r, evs) => (r.status === "ok" ? evs : []));
      } finally {
        worker.acquiring--;
      }
      if (result.status !== "ok") {
        if (attempt < ATTEMPTS) continue;
        throw new NoWorkerAvailableError(`worker ${worker.id} was taken or removed while reserving; retry`);
      }
      this.setCurrentTasks(worker, result.currentTasks);
      const reservation: LiveReservation = { ...record, worker, deadlineMono: this.deps.clock.monotonic() + reservationTtlMs };
      this.trackReservation(reservation);
      this.counters.acquisitions++;
      return { ranked: { worker: this.view(worker), ...worker.score }, reservationId: record.id, expiresAtMs: record.expiresAtMs };
    }
  }

  /**
   * The worker AcquireWorker takes a slot on: a random one among the
   * near-equal best. Reads the rank index from the front: O(candidates
   * skipped), not a scan of the fleet.
   */
  private chooseForAcquisition(filter: FilterInput): LiveWorker {
    this.advance();
    const statuses = loadBalancingStatuses(filter);
    const slotsNeeded = Math.max(1, filter.minAvailableCapacity);
    let matched = 0;
    const best: LiveWorker[] = [];
    for (const worker of this.ranked(filter.capabilities, statuses)) {
      matched++;
      if (worker.maxConcurrentTasks - worker.currentTasks - worker.acquiring < slotsNeeded) continue;
      best.push(worker);
      if (best.length === ACQUIRE_CANDIDATES) break;
    }
    if (best.length === 0) throw new NoWorkerAvailableError(describeShortage(filter, statuses, matched, slotsNeeded));
    const top = best[0]!;
    const tolerance = this.deps.options.acquireTieTolerance;
    const ties = best.filter((w) => w.health === top.health && top.score.priority - w.score.priority <= tolerance);
    return ties[Math.min(ties.length - 1, Math.floor(this.deps.random() * ties.length))]!;
  }

  /**
   * Ends a reservation: frees its slot and records the task's outcome, in one
   * transaction. Idempotent: a repeat changes nothing and says so; a
   * reservation that had expired (its slot already freed) gets its outcome
   * recorded.
   * @throws ReservationNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async releaseWorker(reservationId: string, success: boolean, durationMs: number): Promise<Release> {
    this.assertOpen();
    validateReservationId(reservationId);
    validateDuration(durationMs, this.deps.options.limits);
    const atMs = this.deps.clock.now();
    const active = this.reservations.get(reservationId);
    const known = active ? { workerId: active.worker.id, state: "active" as const } : await this.deps.store.findReservation(reservationId);
    const worker = known && this.workers.get(known.workerId);
    if (!known || !worker) throw new ReservationNotFoundError(reservationId);
    if (known.state === "released") return { outcome: "already-released", worker: this.view(worker) };

    const completed = withCompletion(worker, success, durationMs);
    const event = this.updatedEvent(worker, known.state === "active" ? { ...completed, currentTasks: worker.currentTasks - 1 } : completed);
    const result = await this.events.commit(
      [event],
      (drafts) => this.deps.store.releaseReservation(reservationId, { success, durationMs, atMs }, drafts),
      (r, evs) => (r.status === "released" || r.status === "expired" ? evs : []),
    );
    switch (result.status) {
      case "not-found":
        throw new ReservationNotFoundError(reservationId);
      case "already-released":
        return { outcome: "already-released", worker: this.view(worker) };
      case "released":
        this.untrackReservation(reservationId);
        this.setCurrentTasks(worker, result.currentTasks);
        this.setCounters(worker, result.counters);
        this.counters.releases++;
        return { outcome: "released", worker: this.view(worker) };
      case "expired":
        this.setCounters(worker, result.counters);
        this.counters.releases++;
        return { outcome: "expired", worker: this.view(worker) };
    }
  }

  /** The hash of a worker's token ("" if it has none), or undefined for an unknown worker. */
  workerTokenHash(workerId: string): string | undefined {
    return this.workers.get(workerId)?.tokenHash;
  }

  /** Who registered a worker (the hash of a role token, or null), or undefined for an unknown worker. */
  registrantOf(workerId: string): string | null | undefined {
    const worker = this.workers.get(workerId);
    return worker === undefined ? undefined : worker.registeredBy;
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
    return {
      workers: page.map((w) => this.view(w, now)),
      nextPageToken: hasMore ? page[page.length - 1]!.id : "",
      revision: this.events.revision,
    };
  }

  /**
   * The best workers for a task: healthy before degraded, then highest
   * priority, then fewest current tasks, then id (so equal workers rank in a
   * stable order). An empty health filter means healthy and degraded.
   * Reads the rank index from the front: O(limit + candidates skipped by the
   * filter), no scan or sort of the fleet.
   * @throws InvalidArgumentError for a bad filter or limit.
   */
  getWorkersForLoadBalancing(filter: FilterInput, limit = 0): RankedWorkerView[] {
    validateFilter(filter, this.deps.options.limits);
    validateIntegerRange("limit", limit, 0, this.deps.options.limits.maxPageSize);
    this.advance();
    const now = this.deps.clock.monotonic();
    const wanted = limit === 0 ? DEFAULT_RANK_LIMIT : limit;
    const best: RankedWorkerView[] = [];
    for (const worker of this.ranked(filter.capabilities, loadBalancingStatuses(filter))) {
      if (worker.maxConcurrentTasks - worker.currentTasks < filter.minAvailableCapacity) continue;
      best.push({ worker: this.view(worker, now), ...worker.score });
      if (best.length === wanted) break;
    }
    return best;
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
      revision: this.events.revision,
      activeReservations: this.reservations.size,
      eviction: this.guard.status(),
    };
  }

  /**
   * Ends a pause of eviction now (an admin's call): cleanup removes expired
   * workers again at its per-pass limit. Resolves to whether it was paused,
   * and the status after.
   */
  resumeEviction(): { readonly wasPaused: boolean; readonly eviction: EvictionStatus } {
    this.assertOpen();
    const wasPaused = this.guard.resume();
    return { wasPaused, eviction: this.guard.status() };
  }

  /** The number of open watchers. */
  get watcherCount(): number {
    return this.events.watcherCount;
  }

  /**
   * Calls `visit` with each worker's id and the wall-clock time of its last
   * heartbeat. Read-only and allocation-free, O(workers): for a feed that
   * diffs heartbeat times once per period for all its readers (the
   * dashboard), since heartbeats are not watch events.
   */
  forEachLastHeartbeat(visit: (workerId: string, lastHeartbeatAtMs: number) => void): void {
    for (const worker of this.workers.values()) visit(worker.id, worker.lastHeartbeatAtMs);
  }

  /**
   * Starts a watch: replays the retained events from `startRevision` (0: none,
   * only what happens from now), then delivers live events, all in revision
   * order without gaps or repeats. The listener is called synchronously for
   * each event; resolves to the function that ends the watch.
   * @throws RevisionCompactedError if events from `startRevision` have been pruned;
   *   FutureRevisionError if it is beyond the current revision + 1;
   *   InvalidArgumentError for a bad filter.
   */
  async watch(filter: FilterInput, startRevision: number, listener: WatchListener): Promise<() => void> {
    return replayAll(this.openWatch(filter, startRevision, listener), listener);
  }

  /**
   * Opens a watch whose replay the caller reads page by page, at its
   * reader's pace ({@link EventWatch.nextPage}), before live events go to
   * `listener`. See {@link watch} for the order and the errors, thrown here.
   */
  openWatch(filter: FilterInput, startRevision: number, listener: WatchListener): EventWatch {
    this.assertOpen();
    validateFilter(filter, this.deps.options.limits);
    if (filter.minAvailableCapacity !== 0) {
      throw new InvalidArgumentError("filter.min_available_capacity", "is not supported by WatchWorkers: it must be 0");
    }
    return this.events.openWatch({ capabilities: filter.capabilities, healthStatuses: filter.healthStatuses }, startRevision, listener);
  }

  /**
   * The background tick: detects a stall of the registry itself (and gives
   * every worker and reservation that time back), rolls the eviction guard's
   * intake windows, applies due health transitions and expires due
   * reservations.
   */
  async tick(): Promise<void> {
    const stallMs = this.guard.tick(this.workers.size);
    if (stallMs > 0) {
      // The registry was blind, not the workers silent: nobody's deadline should have run during the stall.
      for (const worker of this.workers.values()) {
        worker.lastSeenMono += stallMs;
        if (worker.holdUntilMono > 0) worker.holdUntilMono += stallMs;
      }
      for (const reservation of this.reservations.values()) reservation.deadlineMono += stallMs;
      this.deps.log.warn({ stallMs, workers: this.workers.size }, "registry stall detected; deadlines extended by its length");
    }
    this.advance();
    await this.expireReservations();
    await this.events.flush();
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
      const worker = entry.item;
      if (this.workers.get(worker.id) !== worker) continue;
      worker.scheduled = false;
      this.announceUpTo(worker, this.healthOf(worker, now));
      if (now >= worker.holdUntilMono && now - worker.lastSeenMono > this.deps.options.workerTtlMs) this.expired.add(worker);
      else this.scheduleNext(worker, now);
    }
  }

  /**
   * Removes workers whose TTL has passed, in transactions of at most
   * cleanupBatchSize, and at most the eviction guard's budget per pass: none
   * while it holds eviction, else `maxEvictionShare` of the fleet. Resolves to
   * how many were removed.
   */
  async cleanup(): Promise<number> {
    // After a pause both timers are overdue and either may fire first: the stall must be seen before anyone is evicted.
    await this.tick();
    let budget = this.guard.evictionBudget(this.workers.size);
    if (this.expired.size > 0 && budget === 0) {
      this.deps.log.warn({ expired: this.expired.size, reason: this.guard.status().reason }, "cleanup held back: eviction paused");
    }
    let removed = 0;
    while (this.expired.size > 0 && budget > 0 && !this.closed) {
      const batch = [...take(this.expired, Math.min(budget, this.deps.options.cleanupBatchSize))];
      const now = this.deps.clock.now();
      const events = batch.map((worker): PendingEvent => ({ type: "removed", worker: this.view(worker), occurredAtMs: now, reason: "expired" }));
      await this.events.commit(
        events,
        (drafts: EventDraft[]) => this.deps.store.deleteWorkers(batch.map((worker, i) => ({ id: worker.id, event: drafts[i]! })), []),
        eventsOfDeleted,
      );
      for (const worker of batch) {
        this.remove(worker);
        this.deps.log.info({ workerId: worker.id, nodeId: worker.nodeId }, "worker removed by cleanup");
      }
      removed += batch.length;
      budget -= batch.length;
    }
    if (removed > 0) this.deps.log.info({ removed, waiting: this.expired.size, remaining: this.workers.size }, "cleanup pass finished");
    return removed;
  }

  /**
   * Writes the heartbeats received since the last flush in one transaction.
   * On a storage fault they are kept for the next flush; heartbeats are soft
   * state, so a fault here never fails a caller.
   */
  async flushHeartbeats(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = [...this.pendingHeartbeats];
    this.pendingHeartbeats = new Map();
    this.flushing = (async () => {
      // In chunks, each its own commit: a fleet's worth of UPDATEs in one transaction would hold the event loop.
      for (let start = 0; start < Math.max(1, batch.length); start += HEARTBEAT_CHUNK) {
        const chunk = batch.slice(start, start + HEARTBEAT_CHUNK);
        try {
          await this.deps.store.writeHeartbeats(new Map(chunk), this.deps.clock.now());
        } catch (error) {
          for (const [id, at] of batch.slice(start)) if (!this.pendingHeartbeats.has(id)) this.pendingHeartbeats.set(id, at);
          this.deps.log.warn({ err: error, pending: this.pendingHeartbeats.size }, "heartbeat flush failed; will retry");
          return;
        }
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Deletes events older than the event TTL, and reservations that ended more than a reservation TTL ago. */
  async pruneEventLog(): Promise<void> {
    const now = this.deps.clock.now();
    await this.events.prune(now - this.deps.options.eventTtlMs, now - this.deps.options.reservationTtlMs, PRUNE_BATCH);
  }

  /** Stops the background work and writes pending heartbeats and events. Calls after this are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.flushing;
    await this.flushHeartbeats();
    await this.events.flush().catch((error: unknown) => this.deps.log.warn({ err: error }, "could not write the last events"));
  }

  /** `validated`: the caller has checked the id's form already (a bound stream), so the hot path skips it. */
  private touch(workerId: string, validated = false): LiveWorker {
    this.assertOpen();
    const worker = validated ? this.workers.get(workerId) : this.find(workerId);
    if (worker === undefined) throw new WorkerNotFoundError(workerId);
    const now = this.deps.clock.monotonic();
    worker.lastSeenMono = now;
    worker.lastHeartbeatAtMs = this.deps.clock.now();
    worker.disconnected = false;
    worker.holdUntilMono = 0;
    if (worker.unconfirmed) {
      worker.unconfirmed = false;
      this.ranking.update(worker, rankKeyOf(worker));
    }
    this.pendingHeartbeats.set(worker.id, worker.lastHeartbeatAtMs);
    this.guard.recordHeartbeat(worker);
    this.counters.heartbeats++;
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
    // Every field spelled out, in one order: one hidden class for all workers, whatever object the record
    // came from (a row from SQLite is a dictionary-mode object, and a spread would copy that slowness).
    const worker: LiveWorker = {
      id: record.id,
      nodeId: record.nodeId,
      capabilities: record.capabilities,
      maxConcurrentTasks: record.maxConcurrentTasks,
      currentTasks: record.currentTasks,
      tasksCompleted: record.tasksCompleted,
      tasksFailed: record.tasksFailed,
      totalTaskDurationMs: record.totalTaskDurationMs,
      registeredAtMs: record.registeredAtMs,
      lastHeartbeatAtMs: record.lastHeartbeatAtMs,
      tokenHash: record.tokenHash,
      registeredBy: record.registeredBy,
      lastSeenMono: this.deps.clock.monotonic(),
      health: "healthy",
      disconnected: false,
      unconfirmed: false,
      holdUntilMono: 0,
      openStreams: 0,
      score: scoreWorker(record, this.deps.options.scoring),
      scheduled: false,
      intakeWindow: -1,
      rankedAs: undefined,
      reservations: new Set(),
      acquiring: 0,
    };
    this.workers.set(worker.id, worker);
    let sameNode = this.byNodeId.get(worker.nodeId);
    if (sameNode === undefined) this.byNodeId.set(worker.nodeId, (sameNode = new Set()));
    sameNode.add(worker);
    this.ranking.add(worker, rankKeyOf(worker));
    this.healthCounts.healthy++;
    this.totals.capacity += worker.maxConcurrentTasks;
    this.totals.used += worker.currentTasks;
    this.totals.completed += worker.tasksCompleted;
    this.totals.failed += worker.tasksFailed;
    return worker;
  }

  private remove(worker: LiveWorker): void {
    if (!this.isLive(worker)) return;
    this.workers.delete(worker.id);
    const sameNode = this.byNodeId.get(worker.nodeId);
    sameNode?.delete(worker);
    if (sameNode?.size === 0) this.byNodeId.delete(worker.nodeId);
    this.ranking.remove(worker);
    for (const reservation of worker.reservations) this.reservations.delete(reservation.id);
    worker.reservations.clear();
    this.expired.delete(worker);
    this.pendingHeartbeats.delete(worker.id);
    this.healthCounts[worker.health]--;
    this.totals.capacity -= worker.maxConcurrentTasks;
    this.totals.used -= worker.currentTasks;
    this.totals.completed -= worker.tasksCompleted;
    this.totals.failed -= worker.tasksFailed;
  }

  /**
   * Whether the worker is the one the fleet holds now. A write that was in
   * flight when its worker was removed must not touch it afterwards: adjusting
   * its count or ranking would put a ghost back in the index and skew the totals.
   */
  private isLive(worker: LiveWorker): boolean {
    return this.workers.get(worker.id) === worker;
  }

  private setCurrentTasks(worker: LiveWorker, currentTasks: number): void {
    if (!this.isLive(worker)) return;
    this.totals.used += currentTasks - worker.currentTasks;
    worker.currentTasks = currentTasks;
    worker.score = scoreWorker(worker, this.deps.options.scoring);
    this.ranking.update(worker, rankKeyOf(worker));
  }

  private setCounters(worker: LiveWorker, counters: { tasksCompleted: number; tasksFailed: number; totalTaskDurationMs: number }): void {
    if (!this.isLive(worker)) return;
    this.totals.completed += counters.tasksCompleted - worker.tasksCompleted;
    this.totals.failed += counters.tasksFailed - worker.tasksFailed;
    Object.assign(worker, counters);
    worker.score = scoreWorker(worker, this.deps.options.scoring);
    this.ranking.update(worker, rankKeyOf(worker));
  }

  private trackReservation(reservation: LiveReservation): void {
    if (!this.isLive(reservation.worker)) return;
    this.reservations.set(reservation.id, reservation);
    reservation.worker.reservations.add(reservation);
    this.reservationSchedule.push({ item: reservation, atMono: reservation.deadlineMono });
  }

  private untrackReservation(reservationId: string): void {
    const reservation = this.reservations.get(reservationId);
    if (reservation === undefined) return;
    this.reservations.delete(reservationId);
    reservation.worker.reservations.delete(reservation);
  }

  /** Expires the reservations whose deadline has passed, freeing their slots in one transaction. */
  private async expireReservations(): Promise<void> {
    const now = this.deps.clock.monotonic();
    const due: LiveReservation[] = [];
    for (let entry = this.reservationSchedule.peek(); entry !== undefined && entry.atMono <= now; entry = this.reservationSchedule.peek()) {
      this.reservationSchedule.pop();
      const reservation = entry.item;
      if (this.reservations.get(reservation.id) !== reservation) continue;
      // A stall moved the deadline later: wait for it.
      if (reservation.deadlineMono > now) this.reservationSchedule.push({ item: reservation, atMono: reservation.deadlineMono });
      else due.push(reservation);
    }
    if (due.length === 0) return;
    const freedPerWorker = new Map<LiveWorker, number>();
    for (const { worker } of due) freedPerWorker.set(worker, (freedPerWorker.get(worker) ?? 0) + 1);
    const events = [...freedPerWorker].map(([worker, freed]) => this.updatedEvent(worker, { currentTasks: worker.currentTasks - freed }));
    const { expired } = await this.events.commit(
      events,
      (drafts) => this.deps.store.expireReservations(due.map((r) => r.id), this.deps.clock.now(), drafts),
      (r, evs) => (r.expired.length > 0 ? evs : []),
    );
    for (const id of expired) {
      const reservation = this.reservations.get(id);
      if (reservation === undefined) continue;
      this.untrackReservation(id);
      this.setCurrentTasks(reservation.worker, reservation.worker.currentTasks - 1);
      this.counters.reservationsExpired++;
      this.deps.log.info({ reservationId: id, workerId: reservation.worker.id }, "reservation expired; slot freed");
    }
  }

  /** The workers that pass the filter, in no useful order; health is computed as of `now`. */
  private *matching(filter: FilterInput, statuses: readonly HealthStatus[], now: number): Iterable<LiveWorker> {
    const wantsStatus = statuses.length > 0 && statuses.length < 3 ? new Set(statuses) : undefined;
    for (const worker of this.ranked(filter.capabilities, undefined, true)) {
      if (worker.maxConcurrentTasks - worker.currentTasks < filter.minAvailableCapacity) continue;
      if (wantsStatus !== undefined && !wantsStatus.has(this.healthOf(worker, now))) continue;
      yield worker;
    }
  }

  /**
   * The workers that have every capability, in ranking order by their
   * announced health (call {@link advance} first to make it current). Walks
   * the capability with the fewest workers and checks the others.
   */
  private *ranked(capabilities: readonly string[], statuses?: readonly HealthStatus[], includeOutOfRotation = false): Iterable<LiveWorker> {
    let smallest: string | undefined;
    for (const capability of capabilities) {
      if (smallest === undefined || this.ranking.sizeOf(capability) < this.ranking.sizeOf(smallest)) smallest = capability;
    }
    const members = includeOutOfRotation ? this.ranking.members(smallest) : this.ranking.ranked(smallest, statuses);
    for (const worker of members) {
      if (capabilities.length > 1 && !capabilities.every((c) => worker.capabilities.includes(c))) continue;
      yield worker;
    }
  }

  private healthOf(worker: LiveWorker, now: number): HealthStatus {
    if (now < worker.holdUntilMono) return worker.health;
    const health = healthForAge(now - worker.lastSeenMono, this.deps.options);
    return health === "healthy" && worker.disconnected ? "degraded" : health;
  }

  /**
   * Announces the worker's way down to `health` one tier at a time, so that a
   * watcher never misses the degraded step even when a tick came late; a way
   * up (a heartbeat) is one step.
   */
  private announceUpTo(worker: LiveWorker, health: HealthStatus): void {
    while (worker.health !== health) {
      const next = healthTier(health) > healthTier(worker.health) ? (worker.health === "healthy" ? "degraded" : "unhealthy") : health;
      this.announce(worker, next);
    }
  }

  private announce(worker: LiveWorker, to: HealthStatus): void {
    const from = worker.health;
    this.healthCounts[from]--;
    this.healthCounts[to]++;
    worker.health = to;
    this.ranking.update(worker, rankKeyOf(worker));
    this.deps.log.info({ workerId: worker.id, from, to }, "worker health changed");
    const view = { ...this.view(worker), healthStatus: to };
    this.events.enqueue({ type: "health_changed", worker: view, occurredAtMs: this.deps.clock.now(), previousHealth: from });
    this.scheduleEventFlush();
  }

  /** Writes queued health events on the next turn of the event loop, so watchers hear of a transition at once. */
  private scheduleEventFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.events.flush().catch((error: unknown) => this.deps.log.warn({ err: error }, "could not write health events; will retry"));
    });
  }

  private scheduleNext(worker: LiveWorker, now: number): void {
    if (now < worker.holdUntilMono) {
      this.schedule.push({ item: worker, atMono: worker.holdUntilMono });
      worker.scheduled = true;
      return;
    }
    const age = nextTransitionAge(now - worker.lastSeenMono, this.deps.options, this.deps.options.workerTtlMs);
    if (age === undefined) return;
    this.schedule.push({ item: worker, atMono: worker.lastSeenMono + age });
    worker.scheduled = true;
  }

  /** An `updated` event with the worker as it will be once `change` is applied. */
  private updatedEvent(worker: LiveWorker, change: Partial<WorkerRecord>): PendingEvent {
    const next = { ...worker, ...change };
    return { type: "updated", worker: this.view({ ...next, score: scoreWorker(next, this.deps.options.scoring) }), occurredAtMs: this.deps.clock.now() };
  }

  /** The view of a record that is not (or no longer) live. */
  private recordView(record: WorkerRecord, health: HealthStatus): WorkerView {
    const score = scoreWorker(record, this.deps.options.scoring);
    return { ...this.view({ ...record, score, lastSeenMono: 0, disconnected: false } as LiveWorker), healthStatus: health };
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
      // The observed rate: the scoring prior stays inside the score (RankedWorkerView.successScore).
      successRate: completions === 0 ? 0 : worker.tasksCompleted / completions,
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

/** Where a worker belongs in the rank index now. */
function rankKeyOf(worker: LiveWorker): RankKey {
  const tier = worker.unconfirmed ? OUT_OF_ROTATION : healthTier(worker.health);
  return { tier, priority: worker.score.priority, currentTasks: worker.currentTasks };
}

function loadBalancingStatuses(filter: FilterInput): readonly HealthStatus[] {
  return filter.healthStatuses.length > 0 ? filter.healthStatuses : ["healthy", "degraded"];
}

function withCompletion(worker: WorkerRecord, success: boolean, durationMs: number): Partial<WorkerRecord> {
  return {
    tasksCompleted: worker.tasksCompleted + (success ? 1 : 0),
    tasksFailed: worker.tasksFailed + (success ? 0 : 1),
    totalTaskDurationMs: worker.totalTaskDurationMs + durationMs,
  };
}

function describeShortage(filter: FilterInput, statuses: readonly HealthStatus[], matched: number, slotsNeeded: number): string {
  const wanted = `capabilities [${filter.capabilities.join(", ")}] and health ${statuses.join(" or ")}`;
  if (matched === 0) return `no worker matches ${wanted}`;
  return `${matched} worker${matched === 1 ? "" : "s"} match ${wanted}, but none has ${slotsNeeded} free slot${slotsNeeded === 1 ? "" : "s"}`;
}

/** The events of the workers a batch delete actually deleted. */
function eventsOfDeleted(result: { readonly deleted: readonly string[] }, events: readonly PendingEvent[]): readonly PendingEvent[] {
  const deleted = new Set(result.deleted);
  return events.filter((event) => deleted.has(event.worker.id));
}

function* filterIterable<T>(items: Iterable<T>, keep: (item: T) => boolean): Iterable<T> {
  for (const item of items) if (keep(item)) yield item;
}

function* take<T>(items: Iterable<T>, count: number): Iterable<T> {
  if (count <= 0) return;
  for (const item of items) {
    yield item;
    if (--count === 0) return;
  }
}
