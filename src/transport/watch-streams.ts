import { status, type ServerWritableStream } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import { WatcherTooSlowError } from "../domain/errors.js";
import type { Logger } from "../domain/logger.js";
import type { EventWatch } from "../domain/watches.js";
import type { WorkerEvent } from "../domain/worker-events.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import { validateIntegerRange } from "../domain/validation.js";
import type { WatchWorkersRequest, WatchWorkersResponse } from "@sentinel/worker-registry-client/contract";
import type { CallGuard } from "./call-guard.js";
import { filterFromProto } from "./proto-mapping.js";
import { statusForError } from "./status.js";
import { WatchEventEncoder } from "./watch-encoding.js";
import type { TransportObserver } from "./transport-observer.js";

/** Responses are encoded by watch-encoding.ts (the service definition's WatchWorkers serializer sends its bytes as they are). */
type WatchCall = ServerWritableStream<WatchWorkersRequest, Buffer | WatchWorkersResponse>;

/** Log entries read per page of a replay: what one watcher may hold in memory while its reader catches up. */
export const REPLAY_PAGE_EVENTS = 256;

/**
 * Batching watchers are flushed at most this often (ms): each write costs the
 * same whatever it carries, so under a steady stream of events fewer, fuller
 * messages are what lets one process feed a thousand watchers (issue 16).
 */
export const BATCH_FLUSH_INTERVAL_MS = 10;

/** The most events a watcher may ask for in one message (`max_events_per_message`); more is INVALID_ARGUMENT. */
export const MAX_EVENTS_PER_MESSAGE = 1000;

/**
 * Serves WatchWorkers calls. A watch that resumes from an earlier revision
 * first replays the log page by page, reading the next page only once the
 * connection has taken the last one (grpc-js's `write()` returning false
 * means wait for `drain`), so a reader that keeps up always catches up,
 * however far back it starts. Then it goes live: each new event is written
 * as fast as the connection takes it, and events that arrive meanwhile wait
 * in a queue of at most `bufferEvents`. A live watcher whose queue fills is
 * ended with RESOURCE_EXHAUSTED, naming the revision to resume from, so a
 * slow reader can never grow the server's memory. A watch opened with a role
 * token that a reload of the tokens file removes is ended with
 * UNAUTHENTICATED.
 *
 * A watcher that asks for up to `max_events_per_message` events per message
 * (above 1) gets what waits for it packed: a replay page in messages of that
 * many, and live events gathered for the rest of the event-loop turn they
 * arrive in, then written together by one flush for every such watcher, at
 * most every BATCH_FLUSH_INTERVAL_MS (or at once, when a full message or the
 * buffer's worth waits).
 * One write per message instead of one per event is what batching saves.
 *
 * The observer hears how long after it occurred each live event was written
 * (replayed events are old by design and not timed), of each watcher dropped
 * for falling behind, and of each watch ended or refused with an error,
 * except at a shutdown.
 */
export class WatchStreams {
  private readonly open = new Map<WatchCall, () => void>();
  private readonly encoder = new WatchEventEncoder();
  /** The pumps of batching watchers with live events waiting for this turn's flush. */
  private readonly flushes = new Set<() => void>();
  private flushScheduled = false;
  /** When batching watchers were last flushed, on the monotonic clock. */
  private lastFlushMono = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly guard: CallGuard,
    private readonly log: Logger,
    private readonly bufferEvents: number,
    private readonly clock: Clock,
    private readonly observer: TransportObserver,
  ) {}

  /** The number of open watch streams. */
  get size(): number {
    return this.open.size;
  }

  /** The grpc-js handler for WatchWorkers. */
  readonly handle = (call: WatchCall): void => {
    let releaseSlot: () => void;
    const perMessage = call.request.maxEventsPerMessage;
    try {
      const principal = this.guard.principal(call.metadata);
      this.guard.authorize(principal, "read-fleet");
      validateIntegerRange("max_events_per_message", perMessage, 0, MAX_EVENTS_PER_MESSAGE);
      releaseSlot = this.guard.openStream(call.getPeer(), principal, "watch", (details) => finish(status.UNAUTHENTICATED, details));
    } catch (error) {
      const refusal = statusForError(error, this.log, "WatchWorkers");
      this.observer.callRefused("WatchWorkers", status[refusal.code]);
      call.emit("error", refusal);
      return;
    }
    /** Events to write, oldest first: replayed ones (never timed) ahead of live ones (timed when written). */
    const queue: WorkerEvent[] = [];
    /** How many at the head of the queue are replayed: a replay is read before the watch goes live, never after. */
    let replayedAhead = 0;
    let writable = true;
    let finished = false;
    let lastSent = 0;
    let watch: EventWatch | undefined;
    /** Resolves the replay's wait for the connection to take what was written. */
    let onRoom: (() => void) | undefined;
    const batching = perMessage > 1;
    /** Writing a batch at once, without waiting for the turn's flush, once this many events wait (the cut-off never meets a writable watcher). */
    const flushAt = Math.min(perMessage, this.bufferEvents);
    const release = () => {
      finished = true;
      this.open.delete(call);
      this.flushes.delete(pump);
      releaseSlot();
      watch?.close();
      onRoom?.();
    };
    const finish = (code: status, details: string, refused = true) => {
      if (finished) return;
      release();
      if (refused) this.observer.callRefused("WatchWorkers", status[code]);
      call.emit("error", { code, details });
    };
    /** Times the live ones among `events` just written (one clock read for them all). */
    const delivered = (events: readonly WorkerEvent[]) => {
      const live = Math.max(0, events.length - replayedAhead);
      replayedAhead = Math.max(0, replayedAhead - events.length);
      if (live === 0) return;
      const nowMs = this.clock.now();
      // Clocks of two replicas may disagree by a little: a lag below zero is none.
      for (let i = events.length - live; i < events.length; i++) this.observer.watchEventDelivered(Math.max(0, nowMs - events[i]!.occurredAtMs) / 1000);
    };
    const pump = () => {
      while (writable && queue.length > 0 && !finished) {
        const taken = queue.splice(0, batching ? perMessage : 1);
        lastSent = taken[taken.length - 1]!.revision;
        writable = call.write(batching ? this.encoder.batch(taken) : this.encoder.bytes(taken[0]!));
        delivered(taken);
      }
      if (writable && queue.length === 0) onRoom?.();
    };
    /** Resolves once everything queued has been handed to the connection and it takes more (or the watch ended). */
    const room = () =>
      new Promise<void>((resolve) => {
        if (finished || (writable && queue.length === 0)) resolve();
        else
          onRoom = () => {
            onRoom = undefined;
            resolve();
          };
      });
    this.open.set(call, () => finish(status.UNAVAILABLE, "registry is shutting down; resume the watch from your last revision", false));
    call.on("drain", () => {
      writable = true;
      pump();
    });
    call.on("cancelled", release);
    call.on("error", release);

    // Only live events come here: the replay is read, not queued.
    const listener = (event: WorkerEvent) => {
      if (finished) return;
      if (queue.length >= this.bufferEvents) {
        const { code, details } = statusForError(new WatcherTooSlowError(queue.length, lastSent), this.log, "WatchWorkers");
        this.observer.watcherDropped();
        finish(code, details);
        return;
      }
      queue.push(event);
      if (!batching || queue.length >= flushAt) pump();
      // Already waiting for the flush (or for the connection's drain) when it held events before this one.
      else if (queue.length === 1) this.flushAtEndOfTurn(pump);
    };
    const fail = (error: unknown) => {
      // A page read still in flight when the watch ended (the store closing at shutdown) is nobody's concern.
      if (finished) return;
      const { code, details } = statusForError(error, this.log, "WatchWorkers");
      finish(code, details);
    };
    try {
      watch = this.registry.openWatch(filterFromProto(call.request.filter), Number(call.request.startRevision), listener);
    } catch (error) {
      fail(error);
      return;
    }
    const opened = watch;
    void (async () => {
      for (let page = await opened.nextPage(REPLAY_PAGE_EVENTS); page !== undefined && !finished; page = await opened.nextPage(REPLAY_PAGE_EVENTS)) {
        for (const event of page) queue.push(event);
        replayedAhead += page.length;
        pump();
        await room();
      }
    })().catch(fail);
  };

  /**
   * Runs `pump` once the current event-loop turn's events have all arrived,
   * and no sooner than {@link BATCH_FLUSH_INTERVAL_MS} after the previous
   * flush: one timer for every batching watcher, not one each. An event
   * after a quiet spell goes out at the end of its turn; a steady stream is
   * sent at most every interval, in fuller messages.
   */
  private flushAtEndOfTurn(pump: () => void): void {
    this.flushes.add(pump);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const flush = () => {
      this.flushScheduled = false;
      this.lastFlushMono = this.clock.monotonic();
      const pumps = [...this.flushes];
      this.flushes.clear();
      for (const each of pumps) each();
    };
    const wait = this.lastFlushMono + BATCH_FLUSH_INTERVAL_MS - this.clock.monotonic();
    if (wait > 0) setTimeout(flush, wait);
    else setImmediate(flush);
  }

  /** Ends every watch with UNAVAILABLE; watchers resume from their last revision elsewhere or later. */
  closeAll(): void {
    for (const end of [...this.open.values()]) end();
  }
}
