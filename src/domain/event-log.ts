import { RevisionCompactedError } from "./errors.js";
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

  /** The number of open watchers. */
  get watcherCount(): number {
    return this.hub.size;
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
   * Replays the retained events from `startRevision` (0: none, only what
   * happens from now), then delivers live events, in revision order without
   * gaps or repeats. Resolves to the function that ends the watch.
   * @throws RevisionCompactedError if events from `startRevision` have been pruned.
   */
  async watch(filter: WatchFilter, startRevision: number, listener: WatchListener): Promise<() => void> {
    // Subscribe before reading the log: live events that overlap the replay are dropped by revision.
    const buffered: WorkerEvent[] = [];
    let live = false;
    let lastSent = startRevision === 0 ? this.publishedRevision : startRevision - 1;
    const deliver = (event: WorkerEvent) => {
      if (event.revision <= lastSent) return;
      lastSent = event.revision;
      listener(event);
    };
    const unsubscribe = this.hub.subscribe(filter, (event) => (live ? deliver(event) : buffered.push(event)));
    try {
      if (startRevision > 0) {
        this.assertRetained(startRevision);
        for (;;) {
          const page = await this.store.readEvents(lastSent + 1, REPLAY_PAGE);
          // Pruning may have run while the replay was reading.
          if (page.length > 0 && page[0]!.revision > lastSent + 1) this.assertRetained(lastSent + 1);
          for (const stored of page) {
            const event = decodeStoredEvent(stored);
            if (eventMatches(filter, event)) deliver(event);
            else lastSent = event.revision;
          }
          if (page.length < REPLAY_PAGE) break;
        }
      }
    } catch (error) {
      unsubscribe();
      throw error;
    }
    buffered.forEach(deliver);
    live = true;
    return unsubscribe;
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

function toDraft(event: PendingEvent): EventDraft {
  return {
    type: event.type,
    workerId: event.worker.id,
    occurredAtMs: event.occurredAtMs,
    payload: encodeEventPayload(event.worker, event.previousHealth, event.reason),
  };
}
