import { FutureRevisionError, RevisionCompactedError } from "./errors.js";
import type { HealthStatus } from "./health.js";
import type { EventDraft, RegistryStore, WorkerEventType } from "./registry-store.js";
import {
  decodeStoredEvent,
  encodeEventPayload,
  eventMatches,
  WatchHub,
  type RemovalReason,
  type WatchFilter,
  type WatchListener,
  type WorkerEvent,
} from "./worker-events.js";
import type { WorkerView } from "./worker-view.js";

/** An event about to be written: its snapshot is taken when it happens. */
export interface PendingEvent {
  readonly type: WorkerEventType;
  readonly worker: WorkerView;
  readonly occurredAtMs: number;
  readonly previousHealth?: HealthStatus;
  /** For unregistered and removed: why the worker left. */
  readonly reason?: RemovalReason;
}

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
   * Once the replay has read every event published so far, the watch goes
   * live instead, synchronously within this call: from then on the listener
   * is called for each new event, starting right after the last one
   * replayed, and the promise resolves to `undefined`. Call it again only
   * after the previous call has settled and its events have been handled.
   * Called after {@link close}, it resolves to `undefined` and does nothing.
   * @throws RevisionCompactedError (as a rejection) if pruning removed the
   *   next events before the replay read them.
   */
  nextPage(pageSize: number): Promise<readonly WorkerEvent[] | undefined>;
  /** Ends the watch: no more pages, no more live events. Idempotent. */
  close(): void;
}

/**
 * The registry's side of the revisioned event log: writes events through the
 * store with the changes they describe, publishes them to watchers strictly
 * in revision order, and stitches a watcher's replay from the log to the live
 * events without gaps or repeats.
 *
 * Changes that the store writes (registrations, task counts, ...) carry their
 * events in the same transaction ({@link commit}). Health transitions change
 * nothing stored: they wait in a queue ({@link enqueue}) and are written in
 * one batch, always before the next change, so the log keeps the order in
 * which things happened.
 */
export class EventLog {
  private readonly hub = new WatchHub();
  private queued: PendingEvent[] = [];
  private writing: Promise<void> | undefined;
  /** Written events held until every lower revision has been published. */
  private readonly unpublished = new Map<number, WorkerEvent>();
  private publishedRevision: number;
  private lastRevision: number;
  private compactedRevision: number;
  private openWatches = 0;

  constructor(
    private readonly store: RegistryStore,
    recovered: { readonly revision: number; readonly compactedRevision: number },
  ) {
    this.lastRevision = recovered.revision;
    this.publishedRevision = recovered.revision;
    this.compactedRevision = recovered.compactedRevision;
  }

  /** The revision of the last event written. */
  get revision(): number {
    return this.lastRevision;
  }

  /** The number of open watchers, replaying or live. */
  get watcherCount(): number {
    return this.openWatches;
  }

  /** Queues an event that describes no stored change (a health transition). */
  enqueue(event: PendingEvent): void {
    this.queued.push(event);
  }

  /**
   * Writes a change through the store with the events that describe it, then
   * publishes the events the store wrote. Queued events are written first.
   * `written` picks, from the store's result, the events it wrote (all, none,
   * or for a batch, those of the items it changed), in order.
   */
  async commit<T extends { readonly revision: number }>(
    events: readonly PendingEvent[],
    write: (drafts: EventDraft[]) => Promise<T>,
    written: (result: NoInfer<T>, events: readonly PendingEvent[]) => readonly PendingEvent[],
  ): Promise<T> {
    await this.flush();
    const result = await write(events.map(toDraft));
    this.advance(written(result, events), result.revision);
    return result;
  }

  /** Writes the queued events in one transaction. On a storage fault they stay queued and the promise rejects. */
  flush(): Promise<void> {
    if (this.writing) return this.writing.then(() => this.flush());
    if (this.queued.length === 0) return Promise.resolve();
    const events = this.queued;
    this.queued = [];
    this.writing = this.store
      .appendEvents(events.map(toDraft))
      .then(
        (revision) => this.advance(events, revision),
        (error: unknown) => {
          this.queued = [...events, ...this.queued];
          throw error;
        },
      )
      .finally(() => {
        this.writing = undefined;
      });
    return this.writing;
  }

  /**
   * Opens a watch from `startRevision` (0: none, only what happens from now;
   * a listing's revision + 1 resumes right after that listing), whose replay
   * the caller reads with {@link EventWatch.nextPage}. Revisions strictly
   * increase, with no gap or repeat between the replay and the live events.
   * @throws RevisionCompactedError if events from `startRevision` have been
   *   pruned; FutureRevisionError if it is beyond the current revision + 1.
   */
  openWatch(filter: WatchFilter, startRevision: number, listener: WatchListener): EventWatch {
    if (startRevision > 0) this.assertRetained(startRevision);
    if (startRevision > this.lastRevision + 1) throw new FutureRevisionError(startRevision, this.lastRevision);
    // The last revision the replay has read (or skipped); live delivery starts after it.
    let scanned = startRevision === 0 ? this.publishedRevision : startRevision - 1;
    let closed = false;
    let unsubscribe: (() => void) | undefined;
    const close = () => {
      if (closed) return;
      closed = true;
      this.openWatches--;
      unsubscribe?.();
    };
    const goLive = () => {
      // Publication is in revision order: the next event that matters is scanned + 1. Events up to `scanned`
      // that the store had written but not yet published arrive later and are dropped here.
      unsubscribe = this.hub.subscribe(filter, (event) => {
        if (event.revision <= scanned) return;
        scanned = event.revision;
        listener(event);
      });
    };
    const readPage = async (pageSize: number): Promise<readonly WorkerEvent[]> => {
      const from = scanned + 1;
      this.assertRetained(from);
      const page = await this.store.readEvents(from, pageSize);
      if (closed) return [];
      // Pruning deletes a prefix of the log, and every published event was in the store before it was
      // published: a page that starts late, or none where published events should be, means the events
      // from `from` were pruned while the replay was reading.
      const first = page[0]?.revision;
      if (first === undefined ? from <= this.publishedRevision : first > from) {
        throw new RevisionCompactedError(from, first ?? Math.max(this.compactedRevision, this.publishedRevision) + 1);
      }
      const events: WorkerEvent[] = [];
      for (const stored of page) {
        const event = decodeStoredEvent(stored);
        scanned = event.revision;
        if (eventMatches(filter, event)) events.push(event);
      }
      return events;
    };
    this.openWatches++;
    return {
      nextPage: (pageSize) => {
        if (closed) return Promise.resolve(undefined);
        // Decided synchronously: no event can be published between this check and the subscription.
        if (scanned >= this.publishedRevision) {
          goLive();
          return Promise.resolve(undefined);
        }
        return readPage(pageSize);
      },
      close,
    };
  }

  /** Deletes events that occurred before `eventsBeforeMs`, and reservations that ended before the second cut-off. */
  async prune(eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number): Promise<void> {
    const compacted = await this.store.prune(eventsBeforeMs, reservationsEndedBeforeMs, limit);
    this.compactedRevision = Math.max(this.compactedRevision, compacted);
  }

  /** Records events written up to `lastRevision` and publishes them in order. */
  private advance(events: readonly PendingEvent[], lastRevision: number): void {
    this.lastRevision = Math.max(this.lastRevision, lastRevision);
    events.forEach((event, i) => {
      const revision = lastRevision - events.length + 1 + i;
      this.unpublished.set(revision, { ...event, revision });
    });
    for (let next = this.unpublished.get(this.publishedRevision + 1); next !== undefined; next = this.unpublished.get(this.publishedRevision + 1)) {
      this.unpublished.delete(next.revision);
      this.publishedRevision = next.revision;
      this.hub.publish(next);
    }
  }

  private assertRetained(revision: number): void {
    if (revision <= this.compactedRevision) throw new RevisionCompactedError(revision, this.compactedRevision + 1);
  }
}

/**
 * Reads a watch's whole replay into `listener`, page after page, as fast as
 * the log can be read, until it goes live. Resolves to the function that ends
 * the watch. For in-process watchers that keep up by construction; a watcher
 * behind a network connection paces its replay with {@link EventWatch.nextPage}.
 */
export async function replayAll(watch: EventWatch, listener: WatchListener): Promise<() => void> {
  try {
    for (let page = await watch.nextPage(REPLAY_PAGE); page !== undefined; page = await watch.nextPage(REPLAY_PAGE)) page.forEach(listener);
  } catch (error) {
    watch.close();
    throw error;
  }
  return watch.close;
}

function toDraft(event: PendingEvent): EventDraft {
  return {
    type: event.type,
    workerId: event.worker.id,
    occurredAtMs: event.occurredAtMs,
    payload: encodeEventPayload(event.worker, event.previousHealth, event.reason),
  };
}
