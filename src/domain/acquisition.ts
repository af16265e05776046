import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import { NoWorkerAvailableError, ReservationNotFoundError } from "./errors.js";
import { recordView, type Fleet, type LiveWorker } from "./fleet.js";
import type { HealthStatus } from "./health.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { RegistryStore } from "./registry-store.js";
import type { ReservationBook } from "./reservation-book.js";
import { compileFilter, matchesLabels, validateDuration, validateReservationId, type CompiledFilter, type FilterInput } from "./validation.js";
import type { RankedWorkerView, WorkerView } from "./worker-view.js";

/** A slot granted by {@link Acquisitions.acquire}. */
export interface Acquisition {
  readonly ranked: RankedWorkerView;
  readonly reservationId: string;
  /** Wall-clock ms. */
  readonly expiresAtMs: number;
}

/** What {@link Acquisitions.release} did. */
export interface Release {
  readonly outcome: "released" | "already-released" | "expired";
  readonly worker: WorkerView;
}

/** Counters a metrics endpoint reads; they only go up. */
export interface AcquisitionCounters {
  /** Slots granted. */
  acquisitions: number;
  /** AcquireWorker calls refused because no worker matched the filter. */
  noMatch: number;
  /** AcquireWorker calls refused because every matching worker was full. */
  noFreeSlot: number;
  /** AcquireWorker calls refused because other acquisitions took the chosen workers first, every attempt. */
  contended: number;
  /** Reservations ended by ReleaseWorker (repeats not counted). */
  releases: number;
}

/** Tries at another worker when the chosen one filled up (or left) meanwhile. */
const ATTEMPTS = 3;
/** AcquireWorker considers this many of the best candidates for its random choice among near-ties. */
const CANDIDATES = 16;

/**
 * AcquireWorker and ReleaseWorker. The choice is made in memory from the rank
 * index; the slot is claimed in the store with a conditional write, so
 * orchestrators on any number of processes never overbook a worker: a lost
 * race means trying the next candidate.
 */
export class Acquisitions {
  readonly counters: AcquisitionCounters = { acquisitions: 0, noMatch: 0, noFreeSlot: 0, contended: 0, releases: 0 };

  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly book: ReservationBook;
      readonly feed: ChangeFeed;
      readonly clock: Clock;
      readonly options: CompiledRegistryOptions;
      readonly newReservationId: () => string;
      /** Uniform in [0, 1): the choice among near-equal workers. */
      readonly random: () => number;
    },
  ) {}

  /**
   * Takes a slot on the best matching worker, atomically. Candidates rank as
   * for load balancing; among those in the best tier whose priority is within
   * `acquireTieTolerance` of the best, one is chosen at random, so near-equal
   * workers share the load.
   * @throws NoWorkerAvailableError (nothing matched, or nothing had a free slot); InvalidArgumentError; StoreUnavailableError.
   */
  async acquire(input: FilterInput): Promise<Acquisition> {
    const { options, store, feed, fleet, clock } = this.deps;
    const filter = compileFilter(input, options.limits);
    for (let attempt = 1; ; attempt++) {
      const worker = this.choose(filter);
      const createdAtMs = clock.now();
      const reservation = { id: this.deps.newReservationId(), workerId: worker.id, createdAtMs, expiresAtMs: createdAtMs + options.reservationTtlMs };
      // Counted apart from currentTasks while the store commits, so concurrent acquisitions choose with it taken.
      worker.acquiring++;
      let committed;
      try {
        committed = await store.acquireSlot(reservation, createdAtMs);
      } finally {
        worker.acquiring--;
      }
      await feed.offer(committed.events);
      if (committed.status !== "ok") {
        if (attempt < ATTEMPTS) continue;
        this.counters.contended++;
        throw new NoWorkerAvailableError(`worker ${worker.id} was taken, removed or taken out of rotation while reserving; retry`);
      }
      this.counters.acquisitions++;
      // Removed right after the grant: the worker as the grant left it.
      const current = fleet.get(worker.id) ?? worker;
      return { ranked: { worker: fleet.view(current, clock.monotonic()), ...current.score }, reservationId: reservation.id, expiresAtMs: reservation.expiresAtMs };
    }
  }

  /**
   * Ends a reservation: frees its slot and records the task's outcome, in one
   * transaction. Idempotent: a repeat changes nothing and says so; one that
   * had expired (its slot already freed) gets its outcome recorded.
   * @throws ReservationNotFoundError; InvalidArgumentError; StoreUnavailableError.
   */
  async release(reservationId: string, success: boolean, durationMs: number): Promise<Release> {
    const { options, store, feed, fleet, clock, book } = this.deps;
    validateReservationId(reservationId);
    validateDuration(durationMs, options.limits);
    const active = book.get(reservationId);
    const known = active !== undefined ? { workerId: active.workerId, state: "active" as const } : await store.findReservation(reservationId);
    if (known === undefined || fleet.get(known.workerId) === undefined) throw new ReservationNotFoundError(reservationId);
    if (known.state === "released") return { outcome: "already-released", worker: this.viewOf(known.workerId) };
    const { events, result } = await store.releaseReservation(reservationId, { success, durationMs }, clock.now());
    await feed.offer(events);
    if (result.status === "not-found") throw new ReservationNotFoundError(reservationId);
    if (result.status !== "already-released") this.counters.releases++;
    // A draining worker is removed in the release's own transaction when it frees its last slot: as the event left it.
    const removed = events.filter((event) => event.worker.id === result.workerId && (event.type === "unregistered" || event.type === "removed")).at(-1);
    return { outcome: result.status, worker: removed === undefined ? this.viewOf(result.workerId) : recordView(removed.worker) };
  }

  /**
   * The worker AcquireWorker takes a slot on: a random one among the
   * near-equal best. Reads the rank index from the front: O(candidates
   * skipped), not a scan of the fleet.
   */
  private choose(filter: CompiledFilter): LiveWorker {
    const statuses = loadBalancingStatuses(filter);
    const slotsNeeded = Math.max(1, filter.minAvailableCapacity);
    let matched = 0;
    const best: LiveWorker[] = [];
    for (const worker of this.deps.fleet.ranked(filter.capabilities, statuses)) {
      if (!matchesLabels(filter, worker)) continue;
      matched++;
      if (worker.maxConcurrentTasks - worker.currentTasks - worker.acquiring < slotsNeeded) continue;
      best.push(worker);
      if (best.length === CANDIDATES) break;
    }
    if (best.length === 0) {
      if (matched === 0) this.counters.noMatch++;
      else this.counters.noFreeSlot++;
      throw new NoWorkerAvailableError(describeShortage(filter, statuses, matched, slotsNeeded));
    }
    const top = best[0]!;
    const tolerance = this.deps.options.acquireTieTolerance;
    const ties = best.filter((w) => w.health === top.health && top.score.priority - w.score.priority <= tolerance);
    return ties[Math.min(ties.length - 1, Math.floor(this.deps.random() * ties.length))]!;
  }

  private viewOf(workerId: string): WorkerView {
    const worker = this.deps.fleet.get(workerId);
    if (worker === undefined) throw new ReservationNotFoundError(workerId);
    return this.deps.fleet.view(worker, this.deps.clock.monotonic());
  }
}

/** The health statuses load balancing considers: those asked for, or healthy and degraded. */
export function loadBalancingStatuses(filter: FilterInput): readonly HealthStatus[] {
  return filter.healthStatuses.length > 0 ? filter.healthStatuses : ["healthy", "degraded"];
}

function describeShortage(filter: CompiledFilter, statuses: readonly HealthStatus[], matched: number, slotsNeeded: number): string {
  const labels = (filter.labelSelector ?? "").trim() === "" ? "" : ` and labels ${JSON.stringify(filter.labelSelector)}`;
  const versions = filter.versions.length === 0 ? "" : ` and version ${filter.versions.join(" or ")}`;
  const wanted = `capabilities [${filter.capabilities.join(", ")}] and health ${statuses.join(" or ")}${labels}${versions}`;
  if (matched === 0) return `no worker matches ${wanted}`;
  return `${matched} worker${matched === 1 ? "" : "s"} match ${wanted}, but none has ${slotsNeeded} free slot${slotsNeeded === 1 ? "" : "s"}`;
}
