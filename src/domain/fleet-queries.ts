import { loadBalancingStatuses } from "./acquisition.js";
import { selectTopK } from "./binary-heap.js";
import type { Clock } from "./clock.js";
import type { Fleet, LiveWorker } from "./fleet.js";
import type { HealthStatus } from "./health.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import { compileFilter, matchesLabels, validateIntegerRange, validateWorkerId, type FilterInput } from "./validation.js";
import type { RankedWorkerView, WorkerView } from "./worker-view.js";

/** Default page size of DiscoverWorkers and limit of load balancing when the caller sends 0. */
export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_RANK_LIMIT = 100;

/** One page of DiscoverWorkers. */
export interface WorkerPage {
  readonly workers: WorkerView[];
  /** The id to resume after, or "" on the last page. */
  readonly nextPageToken: string;
}

/**
 * The read side: GetWorker, DiscoverWorkers and GetWorkersForLoadBalancing,
 * answered from the read model alone (so they keep working while the store
 * is unreachable), never by a scan or sort of the fleet where an index serves.
 */
export class FleetQueries {
  constructor(
    private readonly fleet: Fleet,
    private readonly clock: Clock,
    private readonly options: CompiledRegistryOptions,
  ) {}

  /** @throws WorkerNotFoundError; InvalidArgumentError. */
  find(workerId: string): LiveWorker {
    validateWorkerId(workerId);
    const worker = this.fleet.get(workerId);
    if (worker === undefined) throw this.fleet.notFound(workerId);
    return worker;
  }

  /** @throws WorkerNotFoundError; InvalidArgumentError. */
  getWorker(workerId: string): WorkerView {
    return this.fleet.view(this.find(workerId), this.clock.monotonic());
  }

  /**
   * The workers matching the filter, ordered by id, one page at a time. An
   * empty health filter matches every status; health is as of now.
   * @throws InvalidArgumentError for a bad filter, page size or page token.
   */
  discover(input: FilterInput, pageSize: number, pageToken: string): WorkerPage {
    const filter = compileFilter(input, this.options.limits);
    validateIntegerRange("page_size", pageSize, 0, this.options.limits.maxPageSize);
    if (pageToken !== "") validateWorkerId(pageToken, "page_token");
    const size = pageSize === 0 ? DEFAULT_PAGE_SIZE : pageSize;
    const now = this.clock.monotonic();
    const statuses = filter.healthStatuses.length > 0 && filter.healthStatuses.length < 3 ? new Set<HealthStatus>(filter.healthStatuses) : undefined;
    const matches = (worker: LiveWorker) =>
      worker.id > pageToken &&
      worker.maxConcurrentTasks - worker.currentTasks >= filter.minAvailableCapacity &&
      (statuses === undefined || statuses.has(this.fleet.healthOf(worker, now))) &&
      matchesLabels(filter, worker);
    // One more than the page tells whether another page follows, without counting the rest.
    const page = selectTopK(filtered(this.fleet.members(filter.capabilities), matches), size + 1, (a, b) => a.id < b.id);
    const hasMore = page.length > size;
    if (hasMore) page.pop();
    return { workers: page.map((w) => this.fleet.view(w, now)), nextPageToken: hasMore ? page[page.length - 1]!.id : "" };
  }

  /**
   * The best workers for a task: healthy before degraded, then highest
   * priority, then fewest current tasks, then id. An empty health filter means
   * healthy and degraded. Reads the rank index from the front: O(limit +
   * candidates skipped by the filter).
   * @throws InvalidArgumentError for a bad filter or limit.
   */
  rank(input: FilterInput, limit: number): RankedWorkerView[] {
    const filter = compileFilter(input, this.options.limits);
    validateIntegerRange("limit", limit, 0, this.options.limits.maxPageSize);
    const now = this.clock.monotonic();
    const wanted = limit === 0 ? DEFAULT_RANK_LIMIT : limit;
    const best: RankedWorkerView[] = [];
    for (const worker of this.fleet.ranked(filter.capabilities, loadBalancingStatuses(filter))) {
      if (worker.maxConcurrentTasks - worker.currentTasks < filter.minAvailableCapacity || !matchesLabels(filter, worker)) continue;
      best.push({ worker: this.fleet.view(worker, now), ...worker.score });
      if (best.length === wanted) break;
    }
    return best;
  }
}

function* filtered<T>(items: Iterable<T>, keep: (item: T) => boolean): Iterable<T> {
  for (const item of items) if (keep(item)) yield item;
}
