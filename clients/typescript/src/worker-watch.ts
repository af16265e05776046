import { status } from "@grpc/grpc-js";
import { setTimeout as delay } from "node:timers/promises";
import { backoffCeilingMs, fullJitterDelayMs, type BackoffPolicy, type RandomSource } from "./backoff.js";
import type { WatchWorkersResponse, WorkerEvent } from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { RegistryClientError } from "./registry-client-error.js";
import { toWorkerChangeEvent, type WorkerWatchEvent } from "./worker-event.js";
import type { WorkerHealth, WorkerInfo } from "./worker-info.js";

/**
 * Which workers a watch reports. An event is reported when the worker has
 * every capability, its health before or after the event is one of
 * `healthStatus` (absent or empty: any), its labels match `labelSelector`
 * and its version is one of `versions`. There is no capacity condition:
 * capacity changes with nearly every event.
 */
export interface WorkerWatchQuery {
  /** The worker must have all of these capabilities. Default: any. */
  capabilities?: string[];
  /** The worker's health before or after the event must be one of these. Default: any. */
  healthStatus?: WorkerHealth[];
  /** Kubernetes' set-based label selector, as for `discoverWorkers` (`zone=eu-1,gpu in (a100,h100)`). Default: any labels. */
  labelSelector?: string;
  /** The worker's version must be one of these. Default: any. */
  versions?: string[];
}

/**
 * How many events the client asks the registry to pack into one message by
 * default: fewer, larger writes cost the registry far less CPU per event
 * (a busy fleet's events go out together), and the client still reports
 * them one at a time.
 */
export const DEFAULT_WATCH_EVENTS_PER_MESSAGE = 256;

/** The most events per message the registry accepts (its `max_events_per_message` limit). */
export const MAX_WATCH_EVENTS_PER_MESSAGE = 1000;

/** Options of `watchWorkers`. Every field is optional. */
export interface WatchWorkersOptions {
  /**
   * The first revision to report (e.g. `stats.revision + 1`, or the revision
   * of a listing + 1). Default: only what happens after the call (the client
   * reads the registry's current revision first, so that a resume after a
   * disconnect is exact from the start). 0 means the same as absent.
   */
  startRevision?: number;
  /** Ends the watch: the iteration finishes without an error and the call is cancelled. Default: none. */
  signal?: AbortSignal;
  /**
   * The most events the registry may send in one message, from 1 (one
   * event per message, as registries before batching send) to 1000. Events
   * are reported one at a time either way; at most one message's worth is
   * held in the client. Default {@link DEFAULT_WATCH_EVENTS_PER_MESSAGE} (256).
   */
  eventsPerMessage?: number;
  /** Ceiling of the first wait before a resume, in milliseconds. Default 500. */
  reconnectBaseMs?: number;
  /** Largest wait ceiling before a resume, in milliseconds. Default 30000. */
  reconnectMaxMs?: number;
  /** Uniform source in [0, 1) for the jitter of the waits. Default `Math.random`. */
  random?: RandomSource;
  /** Waits before a resume; should settle early when `signal` aborts. Default: a timer that the signal clears. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Called before each wait, after the watch broke off. Default: nothing. */
  onReconnecting?: (event: WatchReconnectingEvent) => void;
}

/** Reported to `onReconnecting` each time a watch broke off and is about to resume. */
export interface WatchReconnectingEvent {
  /** Failures in a row, 1 for the first; back to 0 once an event arrives. */
  attempt: number;
  /** The wait before the next attempt, in milliseconds (full jitter). */
  delayMs: number;
  /** Why the watch broke off: UNAVAILABLE (restart, connection lost), RESOURCE_EXHAUSTED (too slow, or a stream limit), ... */
  error: RegistryClientError;
  /** The revision the next attempt asks for: the last one reported + 1, or undefined if the start revision is not known yet. */
  resumeFrom: number | undefined;
}

/** The events a WatchWorkers response carries, in order: its one `event`, or its `events` when the watch asked for several per message. */
export function eventsOfResponse(response: WatchWorkersResponse): readonly WorkerEvent[] {
  return response.event === undefined ? response.events : [response.event, ...response.events];
}

/** One open WatchWorkers call. */
export interface WatchCall {
  /** The events as they arrive; ends when the call ends, throws a RegistryClientError if it failed. */
  readonly events: AsyncIterable<WorkerEvent>;
  /** Ends the call; idempotent. */
  cancel(): void;
}

/** What a watch needs from the registry. The client provides it over gRPC; tests can fake it. */
export interface WatchTransport {
  /** The registry's revision now. */
  currentRevision(): Promise<number>;
  /** Opens WatchWorkers from `startRevision` (at least 1), asking for up to `eventsPerMessage` events per message. */
  open(startRevision: number, eventsPerMessage: number): Promise<WatchCall>;
  /** Lists the watched workers, with the revision the listing reflects. */
  list(): Promise<{ revision: number; workers: WorkerInfo[] }>;
}

/** {@link WatchWorkersOptions} with every default applied. */
export interface CompiledWatchOptions {
  startRevision: number | undefined;
  signal: AbortSignal;
  eventsPerMessage: number;
  backoff: BackoffPolicy;
  random: RandomSource;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  onReconnecting: ((event: WatchReconnectingEvent) => void) | undefined;
}

/**
 * Codes after which a watch resumes by itself: the registry restarted or the
 * connection broke (UNAVAILABLE; CANCELLED or ABORTED when the other side
 * reset the stream), a call timed out (DEADLINE_EXCEEDED, for the unary calls
 * around a resume), or the registry dropped a watcher that fell behind or
 * refused one over a stream limit (RESOURCE_EXHAUSTED, "retry later").
 * OUT_OF_RANGE leads to a resync instead; anything else (authentication,
 * permissions, a bad query, INTERNAL) ends the watch with that error.
 */
const RESUMABLE: ReadonlySet<status> = new Set([
  status.UNAVAILABLE,
  status.RESOURCE_EXHAUSTED,
  status.CANCELLED,
  status.ABORTED,
  status.DEADLINE_EXCEEDED,
]);

/**
 * Validates and fills in the options once.
 *
 * @throws RangeError for a negative or fractional startRevision, an
 *   eventsPerMessage outside 1 to 1000, or a backoff out of its bounds.
 */
export function compileWatchOptions(options: WatchWorkersOptions, signal: AbortSignal): CompiledWatchOptions {
  const { startRevision } = options;
  if (startRevision !== undefined && !(Number.isSafeInteger(startRevision) && startRevision >= 0)) {
    throw new RangeError(`startRevision must be a non-negative integer, got ${startRevision}`);
  }
  const eventsPerMessage = options.eventsPerMessage ?? DEFAULT_WATCH_EVENTS_PER_MESSAGE;
  if (!(Number.isInteger(eventsPerMessage) && eventsPerMessage >= 1 && eventsPerMessage <= MAX_WATCH_EVENTS_PER_MESSAGE)) {
    throw new RangeError(`eventsPerMessage must be an integer from 1 to ${MAX_WATCH_EVENTS_PER_MESSAGE}, got ${eventsPerMessage}`);
  }
  const backoff = { baseMs: options.reconnectBaseMs ?? 500, maxMs: options.reconnectMaxMs ?? 30_000 };
  backoffCeilingMs(0, backoff);
  return {
    startRevision: startRevision === 0 ? undefined : startRevision,
    signal,
    eventsPerMessage,
    backoff,
    random: options.random ?? Math.random,
    sleep: options.sleep ?? ((ms, abort) => delay(ms, undefined, { signal: abort })),
    onReconnecting: options.onReconnecting,
  };
}

/**
 * The watch loop behind `watchWorkers`: reports each event once, in revision
 * order, and resumes after a break from the last revision it reported + 1,
 * so that the caller sees no repeat and no gap. A start revision the registry
 * no longer keeps (OUT_OF_RANGE) is answered by one resync listing, and the
 * watch goes on from its revision + 1. Waits between attempts grow
 * exponentially with full jitter and start again from the base once events
 * flow.
 *
 * Nothing is buffered here: an event is read from the call only when the
 * consumer asks for the next one (and a message of several events is
 * reported one event at a time), so a slow consumer slows the stream (and
 * the registry drops it if it falls too far behind; the watch then resumes).
 * The resume point moves with each event reported, wherever it sat in its
 * message.
 *
 * Ends without an error when the signal aborts; the call is cancelled when
 * the consumer stops iterating.
 *
 * @throws RegistryClientError from the iteration, for a failure that a retry
 *   would not cure (see {@link RESUMABLE}).
 */
export async function* watchWorkerEvents(transport: WatchTransport, options: CompiledWatchOptions): AsyncGenerator<WorkerWatchEvent, void, undefined> {
  const { signal } = options;
  let next = options.startRevision;
  let resync = false;
  let failures = 0;
  while (!signal.aborted) {
    try {
      if (resync) {
        const listing = await untilAborted(transport.list(), signal);
        resync = false;
        failures = 0;
        next = listing.revision + 1;
        yield { type: "resync", revision: listing.revision, workers: listing.workers };
        continue;
      }
      next ??= (await untilAborted(transport.currentRevision(), signal)) + 1;
      const call = await transport.open(next, options.eventsPerMessage);
      const cancel = () => call.cancel();
      signal.addEventListener("abort", cancel, { once: true });
      try {
        if (signal.aborted) return;
        for await (const message of call.events) {
          failures = 0;
          const revision = Number(message.revision);
          // A replay must start at `next`; anything lower was reported already.
          if (revision < next) continue;
          next = revision + 1;
          const event = toWorkerChangeEvent(message);
          if (event !== undefined) yield event;
        }
      } finally {
        signal.removeEventListener("abort", cancel);
        call.cancel();
      }
      if (signal.aborted) return;
      throw new RegistryClientError("watchWorkers", status.UNAVAILABLE, "the registry ended the watch");
    } catch (error) {
      if (signal.aborted) return;
      const failure = RegistryClientError.from("watchWorkers", error);
      if (failure.code === status.OUT_OF_RANGE) {
        resync = true;
        continue;
      }
      if (!RESUMABLE.has(failure.code)) throw failure;
      const delayMs = fullJitterDelayMs(failures, options.backoff, options.random);
      failures += 1;
      options.onReconnecting?.({ attempt: failures, delayMs, error: failure, resumeFrom: next });
      try {
        await untilAborted(options.sleep(delayMs, signal), signal);
      } catch (sleepError) {
        if (signal.aborted) return;
        throw sleepError;
      }
    }
  }
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts (the promise's own outcome is then ignored). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
