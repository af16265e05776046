import { status, type ServerWritableStream } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import { WatcherTooSlowError } from "../domain/errors.js";
import type { Logger } from "../domain/logger.js";
import type { EventWatch } from "../domain/watches.js";
import type { WorkerEvent } from "../domain/worker-events.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
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
 * The observer hears how long after it occurred each live event was written
 * (replayed events are old by design and not timed), of each watcher dropped
 * for falling behind, and of each watch ended or refused with an error,
 * except at a shutdown.
 */
export class WatchStreams {
  private readonly open = new Map<WatchCall, () => void>();
  private readonly encoder = new WatchEventEncoder();

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
    try {
      const principal = this.guard.principal(call.metadata);
      this.guard.authorize(principal, "read-fleet");
      releaseSlot = this.guard.openStream(call.getPeer(), principal, "watch", (details) => finish(status.UNAUTHENTICATED, details));
    } catch (error) {
      const refusal = statusForError(error, this.log, "WatchWorkers");
      this.observer.callRefused("WatchWorkers", status[refusal.code]);
      call.emit("error", refusal);
      return;
    }
    /** Events to write; a live one carries true, to be timed when written. */
    const queue: Array<{ readonly event: WorkerEvent; readonly live: boolean }> = [];
    let writable = true;
    let finished = false;
    let lastSent = 0;
    let watch: EventWatch | undefined;
    /** Resolves the replay's wait for the connection to take what was written. */
    let onRoom: (() => void) | undefined;
    const release = () => {
      finished = true;
      this.open.delete(call);
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
    const pump = () => {
      while (writable && queue.length > 0 && !finished) {
        const { event, live } = queue.shift()!;
        lastSent = event.revision;
        writable = call.write(this.encoder.bytes(event));
        // Clocks of two replicas may disagree by a little: a lag below zero is none.
        if (live) this.observer.watchEventDelivered(Math.max(0, this.clock.now() - event.occurredAtMs) / 1000);
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
      queue.push({ event, live: true });
      pump();
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
        for (const event of page) queue.push({ event, live: false });
        pump();
        await room();
      }
    })().catch(fail);
  };

  /** Ends every watch with UNAVAILABLE; watchers resume from their last revision elsewhere or later. */
  closeAll(): void {
    for (const end of [...this.open.values()]) end();
  }
}
