import { HEALTH_STATUSES, healthTier, type HealthStatus } from "./health.js";
import { SortedList } from "./sorted-list.js";

/** Where a worker stands in the ranking, as it was when last indexed. */
export interface RankKey {
  readonly tier: number;
  readonly priority: number;
  readonly currentTasks: number;
}

/** What the index needs of a worker. */
export interface Rankable {
  readonly id: string;
  readonly capabilities: readonly string[];
  /** Set by the index: the key the worker is filed under. */
  rankedAs: RankKey | undefined;
}

/** The ranking order within a tier: highest priority, then fewest current tasks, then id. */
function compareWithinTier(a: Rankable, b: Rankable): number {
  const ka = a.rankedAs!;
  const kb = b.rankedAs!;
  if (ka.priority !== kb.priority) return kb.priority - ka.priority;
  if (ka.currentTasks !== kb.currentTasks) return ka.currentTasks - kb.currentTasks;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The tier of workers kept out of ranking and acquisition whatever their health. */
export const OUT_OF_ROTATION = 3;

/** One list per health tier (healthy, degraded, unhealthy), then the workers out of rotation. */
type Tiers<W extends Rankable> = [SortedList<W>, SortedList<W>, SortedList<W>, SortedList<W>];

function newTiers<W extends Rankable>(): Tiers<W> {
  return [
    new SortedList<W>(compareWithinTier),
    new SortedList<W>(compareWithinTier),
    new SortedList<W>(compareWithinTier),
    new SortedList<W>(compareWithinTier),
  ];
}

/**
 * Workers kept in ranking order, per health tier, for the whole fleet and per
 * capability. Reading the best k of a capability is O(k) (plus whatever the
 * caller skips), never a scan or a sort of the fleet; a worker whose task
 * count, metrics or health change moves in O(log n) per capability it has.
 * This is what keeps AcquireWorker and GetWorkersForLoadBalancing fast at
 * 100,000 workers.
 */
export class RankIndex<W extends Rankable> {
  private readonly all: Tiers<W> = newTiers();
  private readonly byCapability = new Map<string, Tiers<W>>();

  /** Files a new worker under `key`. */
  add(worker: W, key: RankKey): void {
    worker.rankedAs = key;
    for (const tiers of this.tiersOf(worker, true)) tiers[key.tier]!.insert(worker);
  }

  /** Moves a worker to `key`, if it changed. */
  update(worker: W, key: RankKey): void {
    const old = worker.rankedAs;
    if (old !== undefined && old.tier === key.tier && old.priority === key.priority && old.currentTasks === key.currentTasks) return;
    this.remove(worker);
    this.add(worker, key);
  }

  remove(worker: W): void {
    const key = worker.rankedAs;
    if (key === undefined) return;
    for (const tiers of this.tiersOf(worker, false)) tiers[key.tier]!.delete(worker);
    for (const capability of worker.capabilities) {
      const tiers = this.byCapability.get(capability);
      if (tiers !== undefined && tiers.every((list) => list.size === 0)) this.byCapability.delete(capability);
    }
    worker.rankedAs = undefined;
  }

  /** How many workers have the capability (all of them, for undefined). */
  sizeOf(capability: string | undefined): number {
    const tiers = capability === undefined ? this.all : this.byCapability.get(capability);
    return tiers === undefined ? 0 : tiers[0].size + tiers[1].size + tiers[2].size + tiers[3].size;
  }

  /** Every worker with the capability (all, for undefined), ranked or out of rotation, in no useful order. */
  *members(capability: string | undefined): Iterable<W> {
    const tiers = capability === undefined ? this.all : this.byCapability.get(capability);
    if (tiers === undefined) return;
    for (const list of tiers) yield* list;
  }

  /**
   * The ranked workers with the capability (all, for undefined) whose health is one
   * of `statuses`, in ranking order: healthy before degraded before unhealthy,
   * then as {@link compareWithinTier}.
   */
  *ranked(capability: string | undefined, statuses: readonly HealthStatus[] = HEALTH_STATUSES): Iterable<W> {
    const tiers = capability === undefined ? this.all : this.byCapability.get(capability);
    if (tiers === undefined) return;
    const wanted = new Set(statuses.map(healthTier));
    for (let tier = 0; tier < OUT_OF_ROTATION; tier++) if (wanted.has(tier)) yield* tiers[tier]!;
  }

  private tiersOf(worker: W, create: boolean): Tiers<W>[] {
    const result = [this.all];
    for (const capability of worker.capabilities) {
      let tiers = this.byCapability.get(capability);
      if (tiers === undefined && create) this.byCapability.set(capability, (tiers = newTiers()));
      if (tiers !== undefined) result.push(tiers);
    }
    return result;
  }
}
