import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import { TaskCountOutOfRangeError } from "./errors.js";
import { recordView, type Fleet, type LiveWorker } from "./fleet.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { RegistryStore } from "./registry-store.js";
import type { CommittedEvent } from "./worker-events.js";
import { validateDuration, validateIntegerRange, validateWorkerId } from "./validation.js";
import type { WorkerView } from "./worker-view.js";

/**
 * The guide's task accounting: UpdateTaskCount keeps current_tasks within
 * reserved..max_concurrent_tasks, RecordTaskCompletion adds to the metrics.
 * Both are committed before they are answered; the store enforces the bounds,
 * so concurrent callers on any process can never push a count out of them.
 */
export class TaskAccounting {
  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly feed: ChangeFeed;
      readonly clock: Clock;
      readonly options: CompiledRegistryOptions;
    },
  ) {}

  /**
   * Adds delta to the worker's current tasks, if the result stays within
   * reserved..max_concurrent_tasks (slots held by AcquireWorker reservations
   * are ReleaseWorker's to free).
   * @throws TaskCountOutOfRangeError (nothing changed); WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerView> {
    const limit = this.deps.options.limits.maxConcurrentTasksLimit;
    validateIntegerRange("delta", delta, -limit, limit);
    const worker = this.find(workerId);
    const target = worker.currentTasks + delta;
    // Refuse in memory first: an impossible change should not cost a write. Only where this process sees every
    // change at once: a replica's read model may not have applied another replica's change yet, so there the
    // store, which checks again in any case, decides.
    if (!this.deps.store.shared && (target < worker.reservedTasks || target > worker.maxConcurrentTasks)) {
      throw new TaskCountOutOfRangeError(workerId, worker.currentTasks, delta, worker.maxConcurrentTasks, worker.reservedTasks);
    }
    const { events, result } = await this.deps.store.adjustTaskCount(workerId, delta, this.deps.clock.now());
    await this.deps.feed.offer(events);
    if (result.status === "not-found") throw this.deps.fleet.notFound(workerId);
    if (result.status === "out-of-range") {
      throw new TaskCountOutOfRangeError(workerId, result.currentTasks, delta, result.maxConcurrentTasks, result.reservedTasks);
    }
    return this.viewAfter(workerId, events);
  }

  /**
   * Adds one completion to the worker's metrics; does not change the task count.
   * @throws WorkerNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async recordTaskCompletion(workerId: string, success: boolean, durationMs: number): Promise<WorkerView> {
    validateDuration(durationMs, this.deps.options.limits);
    this.find(workerId);
    const { events } = await this.deps.store.recordCompletion(workerId, { success, durationMs }, this.deps.clock.now());
    await this.deps.feed.offer(events);
    if (events.length === 0) throw this.deps.fleet.notFound(workerId);
    return this.viewAfter(workerId, events);
  }

  private find(workerId: string): LiveWorker {
    validateWorkerId(workerId);
    const worker = this.deps.fleet.get(workerId);
    if (worker === undefined) throw this.deps.fleet.notFound(workerId);
    return worker;
  }

  /** The worker as the change left it; if it was removed right after, as its event shows it. */
  private viewAfter(workerId: string, events: readonly CommittedEvent[]): WorkerView {
    const worker = this.deps.fleet.get(workerId);
    if (worker !== undefined) return this.deps.fleet.view(worker, this.deps.clock.monotonic());
    return recordView(events[events.length - 1]!.worker);
  }
}
