import type { ChangeFeed } from "./change-feed.js";
import { FutureRevisionError, InvalidArgumentError, RevisionCompactedError } from "./errors.js";
import { recordView } from "./fleet.js";
import type { RegistryLimits } from "./registry-options.js";
import type { RegistryStore } from "./registry-store.js";
import { compileFilter, type FilterInput } from "./validation.js";
import { eventMatches, type CommittedEvent, type WatchFilter, type WatchListener, type WorkerEvent } from "./worker-events.js";

const REPLAY_PAGE = 1000;

/**
 * One watcher's way through the log: first a replay of retained events,
 * which the caller reads page by page at its reader's pace, then live
 * delivery to the watcher's listener. Nothing is queued for the watcher while
 * it replays: events that happen meanwhile are in the log, and a later page
 * reads them.
 */
export interface EventWatch {
  /**
   * Reads the next page of the replay: the events, among the next `pageSize`
   * in the log, that match the filter, oldest first (possibly none).
   *
   * Once the replay has read every event applied so far, the watch goes live
   * instead, synchronously within this call: from then on the listener is
   * called for each new event, starting right after the last one replayed,
   * and the promise resolves to `undefined`. Call it again only after the
   * previous call has settled and its events have been handled. Called after
   * {@link close}, it resolves to `undefined` and does nothing.
   * @throws RevisionCompactedError (as a rejection) if pruning removed the
   *   next events before the replay read them; FutureRevisionError if the
   *   start revision is beyond the log's head + 1.
   */
  nextPage(pageSize: number): Promise<readonly WorkerEvent[] | undefined>;
  /** Ends the watch: no more pages, no more live events. Idempotent. */
  close(): void;
}

/** The event as watchers see it. */
export function watcherEvent(event: CommittedEvent): WorkerEvent {
  return {
    revision: event.revision,
    type: event.type,
    worker: recordView(event.worker),
    occurredAtMs: event.occurredAtMs,
    ...(event.previousHealth === undefined ? {} : { previousHealth: event.previousHealth }),
    ...(event.reason === undefined ? {} : { reason: event.reason }),
    ...(event.previousState === undefined ? {} : { previousState: event.previousState }),
  };
}

/**
 * WatchWorkers: the revisioned event stream, the same on every process that
 * serves the store, since every process applies the same log in order. Live
 * events come from the change feed as it applies them ({@link publish});
 * a watch that resumes from an earlier revision replays the log first.
 */
export class Watches {
  /**
   * The live watchers, in the order they went live. An array, not a map: publishing visits each one per
   * event (a million visits a second at a thousand watchers), and a closed one is only marked, then
   * dropped after the visit that finds it, so closing during a publish skips no one.
   */
  private live: Subscription[] = [];
  private anyClosed = false;
  private watchers = 0;
  /** Every event up to this revision has been pruned (as far as this process knows). */
  private compacted: number;

  constructor(
    private readonly store: Pick<RegistryStore, "readEvents" | "shared">,
    private readonly feed: Pick<ChangeFeed, "revision" | "catchUp">,
    compactedRevision: number,
  ) {
    this.compacted = compactedRevision;
  }

  /** The number of open watchers, replaying or live. */
  get size(): number {
    return this.watchers;
  }

  /** Records that pruning removed every event up to `revision`. */
  compactedTo(revision: number): void {
    this.compacted = Math.max(this.compacted, revision);
  }

  /** Delivers an applied event to every live watcher whose filter matches it. Called in revision order. */
  publish(event: WorkerEvent): void {
    const live = this.live;
    for (let i = 0; i < live.length; i++) {
      const subscription = live[i]!;
      if (!subscription.closed && (subscription.everything || eventMatches(subscription.filter, event))) subscription.listener(event);
    }
    if (this.anyClosed) {
      this.live = this.live.filter((subscription) => !subscription.closed);
      this.anyClosed = false;
    }
  }

  /**
   * Opens a watch from `startRevision` (0: none, only what happens from now;
   * a listing's revision + 1 resumes from that listing), whose replay the
   * caller reads with {@link EventWatch.nextPage}. Revisions strictly
   * increase, with no gap or repeat between the replay and the live events.
   * @throws RevisionCompactedError if events from `startRevision` have been pruned;
   *   FutureRevisionError if it is beyond the head + 1 (at the first page for a shared store).
   */
  open(filter: WatchFilter, startRevision: number, listener: WatchListener): EventWatch {
    if (startRevision > 0) this.assertRetained(startRevision);
    // A process that holds its store alone knows the head; a replica may lag another and checks at the first page.
    if (!this.store.shared && startRevision > this.feed.revision + 1) throw new FutureRevisionError(startRevision, this.feed.revision);
    // The last revision the replay has read (or skipped); live delivery starts after it.
    let scanned = startRevision === 0 ? this.feed.revision : startRevision - 1;
    let checkedHead = startRevision <= this.feed.revision + 1;
    let closed = false;
    let subscription: Subscription | undefined;
    const subscriber: WatchListener = (event) => {
      if (event.revision <= scanned) return;
      scanned = event.revision;
      listener(event);
    };
    const close = () => {
      if (closed) return;
      closed = true;
      this.watchers--;
      if (subscription !== undefined) {
        subscription.closed = true;
        this.anyClosed = true;
      }
    };
    const readPage = async (pageSize: number): Promise<readonly WorkerEvent[]> => {
      const from = scanned + 1;
      this.assertRetained(from);
      const page = await this.store.readEvents(from, pageSize);
      if (closed) return [];
      // Pruning deletes a prefix of the log, and every applied event was in the store before it was applied:
      // a page that starts late, or none where applied events should be, means the events from `from` were
      // pruned while the replay was reading.
      const first = page[0]?.revision;
      if (first === undefined ? from <= this.feed.revision : first > from) {
        throw new RevisionCompactedError(from, first ?? Math.max(this.compacted, this.feed.revision) + 1);
      }
      const events: WorkerEvent[] = [];
      for (const committed of page) {
        const event = watcherEvent(committed);
        scanned = event.revision;
        if (eventMatches(filter, event)) events.push(event);
      }
      return events;
    };
    this.watchers++;
    return {
      nextPage: async (pageSize) => {
        if (closed) return undefined;
        if (!checkedHead) {
          // Another process may be ahead of this one: catch up before calling the revision one of the future.
          await this.feed.catchUp();
          if (startRevision > this.feed.revision + 1) {
            close();
            throw new FutureRevisionError(startRevision, this.feed.revision);
          }
          checkedHead = true;
        }
        // Decided synchronously: no event can be applied between this check and the subscription.
        if (scanned >= this.feed.revision) {
          subscription = { listener: subscriber, filter, everything: matchesEverything(filter), closed: false };
          this.live.push(subscription);
          return undefined;
        }
        return readPage(pageSize);
      },
      close,
    };
  }

  /**
   * Replays the retained events from `startRevision` (0: none) to the
   * listener as fast as the log can be read, then delivers live events.
   * Resolves to the function that ends the watch. For in-process watchers
   * that keep up by construction; a watcher behind a network connection
   * paces its replay with {@link open}.
   * @throws RevisionCompactedError; FutureRevisionError.
   */
  async watch(filter: WatchFilter, startRevision: number, listener: WatchListener): Promise<() => void> {
    const watch = this.open(filter, startRevision, listener);
    try {
      for (let page = await watch.nextPage(REPLAY_PAGE); page !== undefined; page = await watch.nextPage(REPLAY_PAGE)) page.forEach(listener);
    } catch (error) {
      watch.close();
      throw error;
    }
    return watch.close;
  }

  private assertRetained(revision: number): void {
    if (revision <= this.compacted) throw new RevisionCompactedError(revision, this.compacted + 1);
  }
}

/**
 * The watch filter of a caller's filter: capabilities and health only, since
 * free capacity cannot be compared before and after an event.
 * @throws InvalidArgumentError naming the field.
 */
export function watchFilter(filter: FilterInput, limits: RegistryLimits): WatchFilter {
  const compiled = compileFilter(filter, limits);
  if (filter.minAvailableCapacity !== 0) {
    throw new InvalidArgumentError("filter.min_available_capacity", "is not supported by WatchWorkers: it must be 0");
  }
  return { capabilities: filter.capabilities, healthStatuses: filter.healthStatuses, labelSelector: compiled.selector, versions: compiled.versions };
}

/** A live watcher: its listener, its filter, and whether the filter lets every event through. */
interface Subscription {
  readonly listener: WatchListener;
  readonly filter: WatchFilter;
  readonly everything: boolean;
  closed: boolean;
}

function matchesEverything(filter: WatchFilter): boolean {
  return filter.capabilities.length === 0 && filter.healthStatuses.length === 0 && filter.versions.length === 0 && filter.labelSelector.isEmpty;
}
