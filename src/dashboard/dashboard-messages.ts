import type { HealthStatus } from "../domain/health.js";
import type { RemovalReason, WorkerEventType } from "../domain/worker-events.js";
import { scoreWorker, type ScoringOptions } from "../domain/scoring.js";
import type { WorkerEvent } from "../domain/worker-events.js";
import type { WorkerView } from "../domain/worker-view.js";

/**
 * What the dashboard's event stream carries. Each server-sent event is one
 * of these, named by its `event:` field, with its JSON as `data:`:
 *
 * - `snapshot` ({@link SnapshotMessage}): first on every connection, and
 *   again whenever the server resynchronises a browser that fell behind. It
 *   replaces everything the page knew.
 * - `events` ({@link EventsMessage}): watch events since the last message,
 *   in revision order, each published after the snapshot before it, so a
 *   page applies every one of them in order.
 * - `tick` ({@link TickMessage}): once a period, the heartbeat times that
 *   changed since the previous tick, the server's clock and the stats.
 *
 * These types are the contract with the page as well: its modules
 * (src/dashboard/assets) import them in their JSDoc and are type-checked
 * against them. So this file, and what it imports, hold only types and pure
 * code: the page's check has the DOM's types, not Node.js's.
 *
 * Every message carries `topPerformers`: the page orders nothing by the
 * registry's ranking itself, it shows the list it is given.
 */
export type DashboardMessageName = "snapshot" | "events" | "tick";

/** A worker as the dashboard shows it: the view's figures, with its load-balancing priority. */
export interface DashboardWorker {
  readonly id: string;
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly health: HealthStatus;
  readonly currentTasks: number;
  readonly maxConcurrentTasks: number;
  readonly tasksCompleted: number;
  readonly tasksFailed: number;
  /** Completed / (completed + failed); null before the first completion (the scoring prior is not a rate). */
  readonly successRate: number | null;
  /** Null before the first completion. */
  readonly averageTaskDurationMs: number | null;
  /** The priority GetWorkersForLoadBalancing ranks by, with the registry's weights: computed here, never by the page. */
  readonly priority: number;
  /** Wall-clock ms. */
  readonly lastHeartbeatAtMs: number;
  /** Whether it is in rotation: active, cordoned or draining. */
  readonly state: WorkerView["state"];
  /** As given at registration. */
  readonly labels: Readonly<Record<string, string>>;
  /** As given at registration; "" for unversioned. */
  readonly version: string;
  /** While draining, when the registry removes it whatever it still runs (wall-clock ms); else null. */
  readonly drainDeadlineMs: number | null;
}

/** What an operator may do to a worker from the page: the CordonWorker, UncordonWorker and DrainWorker RPCs. */
export type WorkerAction = "cordon" | "uncordon" | "drain";

/**
 * The answers of the page's action routes (dashboard-actions.ts), all JSON:
 * `GET api/permissions` answers {@link PermissionsAnswer}; `POST
 * api/workers/{id}/{action}` answers {@link ActionAnswer}; a failure
 * answers {@link ActionError} with a 4xx or 5xx status.
 */
export interface PermissionsAnswer {
  /** The actions the request's token allows on some worker: the buttons the page shows. */
  readonly actions: readonly WorkerAction[];
}

/** The worker right after the action. */
export interface ActionAnswer {
  readonly worker: DashboardWorker;
}

/** Why an action or a permissions request failed, in the registry's words. */
export interface ActionError {
  readonly error: string;
}

/** The fleet's figures, from the registry's stats. */
export interface DashboardStats {
  readonly totalWorkers: number;
  readonly healthyWorkers: number;
  readonly degradedWorkers: number;
  readonly unhealthyWorkers: number;
  readonly totalCapacity: number;
  readonly usedCapacity: number;
  readonly tasksCompleted: number;
  readonly tasksFailed: number;
  /** Null before any completion in the fleet. */
  readonly successRate: number | null;
  readonly activeReservations: number;
  readonly revision: number;
  readonly evictionPaused: boolean;
  readonly evictionPauseReason: string;
  /** The registry process the page is connected to, among the replicas of its store. */
  readonly replica: DashboardReplica;
}

/** One registry process among those that serve the same store: one on SQLite, any number on PostgreSQL. */
export interface DashboardReplica {
  /** This process's name among the replicas (`--replica-id`; host:pid by default). */
  readonly id: string;
  /** The store's kind: "sqlite" (one process) or "postgres" (replicas). */
  readonly store: string;
  /** Whether this process holds the lease that runs the fleet-wide schedules (health, cleanup, expiry). */
  readonly leading: boolean;
  /** The replica that holds the lease, as this process last saw it; "" if none does. */
  readonly leader: string;
  /**
   * How long after it was written (from the start of the writing call) the last change made by another replica was
   * applied here, by the two processes' clocks; 0 until one was.
   */
  readonly lagMs: number;
}

/** The health thresholds, so the page can say what its colours mean. */
export interface DashboardThresholds {
  readonly healthyThresholdMs: number;
  readonly degradedThresholdMs: number;
  readonly heartbeatIntervalMs: number;
}

/**
 * The ids of the best workers for a task, best first, as
 * GetWorkersForLoadBalancing returns them when the message is sent: the
 * registry's own ranking, which the page shows as given and never
 * recomputes. At most the feed's `topPerformers` option; every id is of a
 * worker the page has received, in this message or before it.
 */
export type TopPerformers = readonly string[];

export interface SnapshotMessage {
  /** The registry's revision when the snapshot was taken. Every event sent after a snapshot was published after it was taken. */
  readonly revision: number;
  /** The server's wall clock when the snapshot was taken: the page ages heartbeats against it, not its own clock. */
  readonly serverTimeMs: number;
  readonly thresholds: DashboardThresholds;
  readonly stats: DashboardStats;
  /** Every worker, ordered by id. */
  readonly workers: readonly DashboardWorker[];
  readonly topPerformers: TopPerformers;
}

export interface DashboardEvent {
  readonly revision: number;
  readonly type: WorkerEventType;
  readonly occurredAtMs: number;
  /** The worker right after the event; for unregistered and removed, as it was when it left. */
  readonly worker: DashboardWorker;
  /** For health_changed: the health before. */
  readonly previousHealth?: HealthStatus;
  /** For a change of state (cordoned, uncordoned, set draining): the state before. */
  readonly previousState?: WorkerView["state"];
  /** For unregistered and removed: why the worker left. */
  readonly removalReason?: RemovalReason;
}

export interface EventsMessage {
  readonly events: readonly DashboardEvent[];
  /** The stats as the batch is sent. */
  readonly stats: DashboardStats;
  readonly topPerformers: TopPerformers;
}

export interface TickMessage {
  readonly serverTimeMs: number;
  /** [worker id, last heartbeat wall-clock ms] of the workers that heartbeated since the previous tick. */
  readonly heartbeats: readonly (readonly [string, number])[];
  readonly stats: DashboardStats;
  /**
   * Also on ticks, so that the list follows the registry's ranking within a
   * tick even when a change of rank reaches the feed before its watch event
   * (or with none).
   */
  readonly topPerformers: TopPerformers;
}

/**
 * A worker view as the dashboard shows it. The priority is computed as the
 * registry computes it, from the view: the total duration is the average
 * times the completions. Fields are copied one by one, so nothing else a
 * view may carry reaches the page.
 */
export function toDashboardWorker(view: WorkerView, scoring: ScoringOptions): DashboardWorker {
  const { tasksCompleted, tasksFailedCount: tasksFailed, averageTaskDurationMs } = view.metrics;
  const completions = tasksCompleted + tasksFailed;
  const { priority } = scoreWorker(
    {
      maxConcurrentTasks: view.maxConcurrentTasks,
      currentTasks: view.currentTasks,
      tasksCompleted,
      tasksFailed,
      totalTaskDurationMs: averageTaskDurationMs * completions,
    },
    scoring,
  );
  return {
    id: view.id,
    nodeId: view.nodeId,
    capabilities: view.capabilities,
    health: view.healthStatus,
    currentTasks: view.currentTasks,
    maxConcurrentTasks: view.maxConcurrentTasks,
    tasksCompleted,
    tasksFailed,
    successRate: completions === 0 ? null : tasksCompleted / completions,
    averageTaskDurationMs: completions === 0 ? null : averageTaskDurationMs,
    priority,
    lastHeartbeatAtMs: view.lastHeartbeatAtMs,
    state: view.state,
    labels: view.labels,
    version: view.version,
    drainDeadlineMs: view.drainDeadlineMs,
  };
}

/** A watch event as the dashboard sends it. */
export function toDashboardEvent(event: WorkerEvent, scoring: ScoringOptions): DashboardEvent {
  return {
    revision: event.revision,
    type: event.type,
    occurredAtMs: event.occurredAtMs,
    worker: toDashboardWorker(event.worker, scoring),
    ...(event.previousHealth === undefined ? {} : { previousHealth: event.previousHealth }),
    ...(event.previousState === undefined ? {} : { previousState: event.previousState }),
    ...(event.reason === undefined ? {} : { removalReason: event.reason }),
  };
}
