import type { CompiledRegistryOptions } from "./registry-options.js";
import { healthForAge, healthTier, HEALTH_STATUSES, type HealthStatus } from "./health.js";
import { OUT_OF_ROTATION, RankIndex, type RankKey } from "./rank-index.js";
import { scoreWorker, type Score } from "./scoring.js";
import { WorkerNotFoundError } from "./errors.js";
import type { CommittedEvent, RemovalReason } from "./worker-events.js";
import type { Labels } from "./labels.js";
import type { WorkerRecord, WorkerState } from "./worker-record.js";
import type { WorkerView } from "./worker-view.js";

/**
 * A worker in the read model: its record as of the last event applied, plus
 * what this process alone knows of it (soft state, never stored as such).
 * Every field is spelled out in one order, so all workers share one hidden
 * class whatever object their record came from.
 */
export interface LiveWorker {
  readonly id: string;
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  currentTasks: number;
  tasksCompleted: number;
  tasksFailed: number;
  totalTaskDurationMs: number;
  readonly registeredAtMs: number;
  /** The later of the stored heartbeat and the last one this process heard or learnt of. */
  lastHeartbeatAtMs: number;
  /** The health announced by events, or healed here by a heartbeat whose event is on its way. */
  health: HealthStatus;
  readonly tokenHash: string;
  readonly registeredBy: string | null;
  readonly labels: Labels;
  readonly version: string;
  state: WorkerState;
  /** Wall-clock ms; null unless draining. */
  drainDeadlineMs: number | null;
  /** Monotonic ms of the last heartbeat known here (or of the moment a grace began). */
  lastSeenMono: number;
  /** Monotonic ms before which its health is held where recovery left it: no downgrade, no expiry. 0: none. */
  holdUntilMono: number;
  /** Not heard from since a restart found it not healthy: kept out of ranking and acquisition until it is. */
  unconfirmed: boolean;
  /** Heartbeat streams bound to this worker on this process. */
  openStreams: number;
  /** Slots held by active reservations. */
  reservedTasks: number;
  /** AcquireWorker slots this process is committing: counted when choosing, never in currentTasks. */
  acquiring: number;
  /** Cached: changes only when the task count or the metrics change. */
  score: Score;
  /** The eviction guard's intake window this worker was last counted in. */
  intakeWindow: number;
  /** True while the health schedule holds an entry for it. */
  scheduled: boolean;
  /** Where the rank index has it filed. */
  rankedAs: RankKey | undefined;
  /** Heard since the last heartbeat flush: its timestamp waits in Liveness's batch. */
  heartbeatPending: boolean;
  /** Set when the fleet lets this record go (removed, or replaced by a new registration): see {@link Fleet.isLive}. */
  released: boolean;
}

/** What the fleet adds up, kept exact on every change. */
export interface FleetTotals {
  readonly workers: number;
  readonly capacity: number;
  readonly used: number;
  readonly completed: number;
  readonly failed: number;
  readonly byHealth: Readonly<Record<HealthStatus, number>>;
  readonly byState: Readonly<Record<WorkerState, number>>;
}

/**
 * The read model of the workers: a map by id, the rank index, the node_id
 * index and the totals, changed only by {@link apply}ing committed events in
 * revision order, and by what this process decides itself ahead of its
 * event: a heartbeat heals at once, and the leader's schedule downgrades at
 * once, while the events that announce them are written behind. Reads never
 * touch the store.
 */
export class Fleet {
  private readonly workers = new Map<string, LiveWorker>();
  private readonly byNodeId = new Map<string, Set<LiveWorker>>();
  private readonly ranking = new RankIndex<LiveWorker>();
  private readonly byHealth: Record<HealthStatus, number> = { healthy: 0, degraded: 0, unhealthy: 0 };
  private readonly byState: Record<WorkerState, number> = { active: 0, cordoned: 0, draining: 0 };
  /** The workers draining now: the leader removes those past their deadline. */
  private readonly drainingWorkers = new Set<LiveWorker>();
  /** Why the last workers removed left, oldest first, at most {@link REMEMBERED_REMOVALS}. */
  private readonly removals = new Map<string, RemovalReason>();
  private capacity = 0;
  private used = 0;
  private completed = 0;
  private failed = 0;

  constructor(
    private readonly options: CompiledRegistryOptions,
    /**
     * Whether this process hears every heartbeat (it holds its store alone),
     * so that a read may judge health by heartbeat age itself. A replica hears
     * other replicas' heartbeats only through the store, late or (while it is
     * unreachable) not at all: it shows the health the leader announced.
     */
    private readonly hearsEveryHeartbeat: boolean,
    /** Called whenever a worker's health changes here, by an event or at once (a heal, the leader's schedule). */
    private readonly onHealthChange: (worker: LiveWorker, from: HealthStatus, to: HealthStatus) => void = () => {},
  ) {}

  get size(): number {
    return this.workers.size;
  }

  get(workerId: string): LiveWorker | undefined {
    return this.workers.get(workerId);
  }

  values(): IterableIterator<LiveWorker> {
    return this.workers.values();
  }

  /** The live workers registered with this node_id. */
  ofNode(nodeId: string): readonly LiveWorker[] {
    return [...(this.byNodeId.get(nodeId) ?? [])];
  }

  /** Empties the read model, before it is filled again from a fresh snapshot. */
  clear(): void {
    for (const worker of [...this.workers.values()]) this.remove(worker);
  }

  /** The workers draining now, in no useful order. */
  draining(): Iterable<LiveWorker> {
    return this.drainingWorkers;
  }

  /** Moves every worker's deadlines `ms` later: time this process was blind (starting up, stalled) is nobody's silence. */
  postponeDeadlines(ms: number): void {
    for (const worker of this.workers.values()) {
      worker.lastSeenMono += ms;
      if (worker.holdUntilMono > 0) worker.holdUntilMono += ms;
    }
  }

  /** Holds every worker's health where it is until `untilMono` (no downgrade, no expiry). */
  holdAll(untilMono: number): void {
    for (const worker of this.workers.values()) worker.holdUntilMono = Math.max(worker.holdUntilMono, untilMono);
  }

  /** The error for a worker not in the fleet, saying why it left if it was removed recently. */
  notFound(workerId: string): WorkerNotFoundError {
    return new WorkerNotFoundError(workerId, this.removals.get(workerId));
  }

  /** Why a worker left, if it was removed recently (the last {@link REMEMBERED_REMOVALS}). */
  removalOf(workerId: string): RemovalReason | undefined {
    return this.removals.get(workerId);
  }

  private rememberRemoval(workerId: string, reason: RemovalReason): void {
    this.removals.delete(workerId);
    this.removals.set(workerId, reason);
    if (this.removals.size > REMEMBERED_REMOVALS) this.removals.delete(this.removals.keys().next().value!);
  }

  /**
   * Whether the worker is the one the fleet holds now: a worker removed meanwhile is never touched again.
   * A flag on the record rather than a lookup by id: a heartbeat stream asks at every heartbeat.
   */
  isLive(worker: LiveWorker): boolean {
    return !worker.released;
  }

  totals(): FleetTotals {
    return {
      workers: this.workers.size,
      capacity: this.capacity,
      used: this.used,
      completed: this.completed,
      failed: this.failed,
      byHealth: { ...this.byHealth },
      byState: { ...this.byState },
    };
  }

  /**
   * Applies one committed event. `nowMono` and `nowMs` place the worker's
   * stored last heartbeat on this process's monotonic clock. Returns the
   * worker as it is now (undefined once removed) and as it was before.
   */
  apply(event: CommittedEvent, nowMono: number, nowMs: number): { readonly before: LiveWorker | undefined; readonly after: LiveWorker | undefined } {
    const record = event.worker;
    const before = this.workers.get(record.id);
    switch (event.type) {
      case "registered":
        if (before !== undefined) this.remove(before);
        return { before, after: this.add(record, nowMono, nowMs) };
      case "unregistered":
      case "removed":
        if (before !== undefined) this.remove(before);
        if (event.reason !== undefined) this.rememberRemoval(record.id, event.reason);
        return { before, after: undefined };
      case "health_changed":
      case "state_changed":
      case "updated":
        if (before === undefined) return { before, after: undefined };
        this.update(before, record, event.type === "health_changed", nowMono, nowMs);
        if (event.type === "state_changed") this.setState(before, record.state, record.drainDeadlineMs);
        if (event.reservation !== undefined) before.reservedTasks += "granted" in event.reservation ? 1 : -1;
        this.rerank(before);
        return { before, after: before };
    }
  }

  /** Adds a worker from a snapshot or an event. */
  add(record: WorkerRecord, nowMono: number, nowMs: number): LiveWorker {
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
      health: record.health,
      tokenHash: record.tokenHash,
      registeredBy: record.registeredBy,
      labels: record.labels,
      version: record.version,
      state: record.state,
      drainDeadlineMs: record.drainDeadlineMs,
      lastSeenMono: nowMono - Math.max(0, nowMs - record.lastHeartbeatAtMs),
      holdUntilMono: 0,
      unconfirmed: false,
      openStreams: 0,
      reservedTasks: 0,
      acquiring: 0,
      score: scoreWorker(record, this.options.scoring),
      intakeWindow: -1,
      scheduled: false,
      rankedAs: undefined,
      heartbeatPending: false,
      released: false,
    };
    this.workers.set(worker.id, worker);
    let sameNode = this.byNodeId.get(worker.nodeId);
    if (sameNode === undefined) this.byNodeId.set(worker.nodeId, (sameNode = new Set()));
    sameNode.add(worker);
    this.ranking.add(worker, rankKeyOf(worker));
    this.byHealth[worker.health]++;
    this.byState[worker.state]++;
    if (worker.state === "draining") this.drainingWorkers.add(worker);
    this.capacity += worker.maxConcurrentTasks;
    this.used += worker.currentTasks;
    this.completed += worker.tasksCompleted;
    this.failed += worker.tasksFailed;
    return worker;
  }

  /**
   * Sets the health this process shows for a worker without an event: a
   * heartbeat heals at once while its event is written behind, and a restart
   * puts a worker back at the health it had.
   */
  setHealth(worker: LiveWorker, health: HealthStatus): void {
    if (!this.isLive(worker) || worker.health === health) return;
    const from = worker.health;
    this.byHealth[from]--;
    this.byHealth[health]++;
    worker.health = health;
    this.rerank(worker);
    this.onHealthChange(worker, from, health);
  }

  /** Puts a worker out of rotation until it is heard from, or back in. */
  setUnconfirmed(worker: LiveWorker, unconfirmed: boolean): void {
    if (!this.isLive(worker) || worker.unconfirmed === unconfirmed) return;
    worker.unconfirmed = unconfirmed;
    this.rerank(worker);
  }

  /**
   * The health a caller sees now: the announced one, or, where this process
   * hears every heartbeat, worse if the last heartbeat is older than the
   * announced one allows (the schedule has not caught up yet); held where
   * recovery left it during a grace.
   */
  healthOf(worker: LiveWorker, nowMono: number): HealthStatus {
    if (!this.hearsEveryHeartbeat || nowMono < worker.holdUntilMono) return worker.health;
    const byAge = healthForAge(nowMono - worker.lastSeenMono, this.options);
    return healthTier(byAge) > healthTier(worker.health) ? byAge : worker.health;
  }

  /**
   * The ranked workers that have every capability and whose announced health
   * is one of `statuses`, in ranking order (healthy before degraded, then
   * highest priority, fewest tasks, id). Walks the capability with the fewest
   * workers and checks the others. Workers out of rotation are never ranked.
   */
  *ranked(capabilities: readonly string[], statuses: readonly HealthStatus[] = HEALTH_STATUSES): Iterable<LiveWorker> {
    const smallest = this.smallestCapability(capabilities);
    for (const worker of this.ranking.ranked(smallest, statuses)) {
      if (capabilities.length > 1 && !capabilities.every((c) => worker.capabilities.includes(c))) continue;
      yield worker;
    }
  }

  /** Every worker that has every capability, ranked or not, in no useful order. */
  *members(capabilities: readonly string[]): Iterable<LiveWorker> {
    const smallest = this.smallestCapability(capabilities);
    for (const worker of this.ranking.members(smallest)) {
      if (capabilities.length > 1 && !capabilities.every((c) => worker.capabilities.includes(c))) continue;
      yield worker;
    }
  }

  /** The worker as callers see it now. */
  view(worker: LiveWorker, nowMono: number): WorkerView {
    return { ...recordFields(worker), healthStatus: this.healthOf(worker, nowMono) };
  }

  private update(worker: LiveWorker, record: WorkerRecord, healthChanged: boolean, nowMono: number, nowMs: number): void {
    this.used += record.currentTasks - worker.currentTasks;
    this.completed += record.tasksCompleted - worker.tasksCompleted;
    this.failed += record.tasksFailed - worker.tasksFailed;
    const rescore =
      worker.currentTasks !== record.currentTasks ||
      worker.tasksCompleted !== record.tasksCompleted ||
      worker.tasksFailed !== record.tasksFailed ||
      worker.totalTaskDurationMs !== record.totalTaskDurationMs;
    worker.currentTasks = record.currentTasks;
    worker.tasksCompleted = record.tasksCompleted;
    worker.tasksFailed = record.tasksFailed;
    worker.totalTaskDurationMs = record.totalTaskDurationMs;
    if (record.lastHeartbeatAtMs > worker.lastHeartbeatAtMs) {
      worker.lastHeartbeatAtMs = record.lastHeartbeatAtMs;
      worker.lastSeenMono = Math.max(worker.lastSeenMono, nowMono - Math.max(0, nowMs - record.lastHeartbeatAtMs));
    }
    if (rescore) worker.score = scoreWorker(worker, this.options.scoring);
    // Health changes only by its own events: any other event carries the stored health, which a heartbeat
    // healed here may be ahead of until its event arrives.
    if (healthChanged && worker.health !== record.health) {
      const from = worker.health;
      this.byHealth[from]--;
      this.byHealth[record.health]++;
      worker.health = record.health;
      this.onHealthChange(worker, from, record.health);
    }
  }

  private remove(worker: LiveWorker): void {
    this.workers.delete(worker.id);
    worker.released = true;
    const sameNode = this.byNodeId.get(worker.nodeId);
    sameNode?.delete(worker);
    if (sameNode?.size === 0) this.byNodeId.delete(worker.nodeId);
    this.ranking.remove(worker);
    this.byHealth[worker.health]--;
    this.byState[worker.state]--;
    this.drainingWorkers.delete(worker);
    this.capacity -= worker.maxConcurrentTasks;
    this.used -= worker.currentTasks;
    this.completed -= worker.tasksCompleted;
    this.failed -= worker.tasksFailed;
  }

  private setState(worker: LiveWorker, state: WorkerState, drainDeadlineMs: number | null): void {
    this.byState[worker.state]--;
    this.byState[state]++;
    worker.state = state;
    worker.drainDeadlineMs = drainDeadlineMs;
    if (state === "draining") this.drainingWorkers.add(worker);
    else this.drainingWorkers.delete(worker);
  }

  private rerank(worker: LiveWorker): void {
    this.ranking.update(worker, rankKeyOf(worker));
  }

  private smallestCapability(capabilities: readonly string[]): string | undefined {
    let smallest: string | undefined;
    for (const capability of capabilities) {
      if (smallest === undefined || this.ranking.sizeOf(capability) < this.ranking.sizeOf(smallest)) smallest = capability;
    }
    return smallest;
  }
}

/** How many removals the fleet remembers the reason of: enough for every worker of a large drain to be told. */
const REMEMBERED_REMOVALS = 100_000;

/** Where a worker belongs in the rank index now. */
function rankKeyOf(worker: LiveWorker): RankKey {
  // Cordoned and draining workers keep heartbeating and keep their health, but are never ranked or granted.
  const tier = worker.unconfirmed || worker.state !== "active" ? OUT_OF_ROTATION : healthTier(worker.health);
  return { tier, priority: worker.score.priority, currentTasks: worker.currentTasks };
}

/** A worker's view without its health, for a live worker or a record alike. */
export function recordFields(worker: Omit<WorkerRecord, "health">): Omit<WorkerView, "healthStatus"> {
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
    registeredAtMs: worker.registeredAtMs,
    lastHeartbeatAtMs: worker.lastHeartbeatAtMs,
    labels: worker.labels,
    version: worker.version,
    state: worker.state,
    drainDeadlineMs: worker.drainDeadlineMs,
    metrics: {
      tasksCompleted: worker.tasksCompleted,
      tasksFailedCount: worker.tasksFailed,
      averageTaskDurationMs: completions === 0 ? 0 : worker.totalTaskDurationMs / completions,
    },
  };
}

/** The view of a record as an event carries it: its announced health. */
export function recordView(record: WorkerRecord): WorkerView {
  return { ...recordFields(record), healthStatus: record.health };
}
