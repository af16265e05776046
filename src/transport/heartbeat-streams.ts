import { status, type Metadata, type ServerDuplexStream } from "@grpc/grpc-js";
import { FirstHeartbeatTimeoutError, InvalidArgumentError, WorkerNotFoundError } from "../domain/errors.js";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import { quote, validateWorkerId } from "../domain/validation.js";
import { StreamHeartbeat, type WorkerRegistry } from "../domain/worker-registry.js";
import type { Principal } from "../security/roles.js";
import type { HeartbeatStreamResponse } from "@sentinel/worker-registry-client/contract";
import type { CallGuard } from "./call-guard.js";
import { HeartbeatAckEncoder, type AckPrefix, type HeartbeatBeat } from "./heartbeat-codec.js";
import { healthToProto } from "./proto-mapping.js";
import { statusForError } from "./status.js";
import type { TransportObserver } from "./transport-observer.js";

/** Requests decoded, and acks encoded, by heartbeat-codec.ts (the service definition's HeartbeatStream (de)serializers). */
type HeartbeatCall = ServerDuplexStream<HeartbeatBeat, Buffer | HeartbeatStreamResponse>;

/** How long after `end` a `cancelled` still counts: measured at under a millisecond on loopback; this leaves room for load. */
export const CANCEL_GRACE_MS = 50;

/**
 * One heartbeat in this many is timed for the observer (the first, the 17th, ...). Timing every one cost about 2% of
 * the server's CPU at 1,000 streams in a closed loop (two clock reads and a histogram observation on a path of
 * ~13 µs); one in 16 keeps thousands of samples a second under load for a sixteenth of that.
 */
export const HEARTBEAT_TIMING_SAMPLE = 16;

/**
 * Serves HeartbeatStream calls and keeps the set of open ones, so that a
 * shutdown can end each with UNAVAILABLE ("reconnect") rather than leave it
 * hanging. A stream is bound to the worker named in its first message.
 *
 * A stream ends in one of these ways, and each releases the call:
 * - the client half-closes: the server ends the call with OK;
 * - no first heartbeat arrives within `firstHeartbeatTimeoutMs` of opening:
 *   DEADLINE_EXCEEDED, so an idle stream cannot hold a slot;
 * - the role token it was opened with is removed by a reload of the tokens
 *   file: UNAUTHENTICATED;
 * - the call is cancelled or fails (connection lost, process killed): the
 *   worker is degraded at once if this was its last stream;
 * - the server shuts down: {@link closeAll}, which is not a failure of any
 *   worker: it changes no health and writes no event.
 *
 * The observer hears how long heartbeats take to handle (from arrival to the
 * reply being written; one in {@link HEARTBEAT_TIMING_SAMPLE}, over all
 * streams) and of each stream ended or refused with an error, except at a
 * shutdown.
 *
 * grpc-js emits `end` before `cancelled` when the client cancels or dies, so
 * an `end` is taken as a clean goodbye only if the call is still not
 * cancelled {@link CANCEL_GRACE_MS} later.
 */
export class HeartbeatStreams {
  /** Each open call, with the function that ends it with a status; `refused` unless it is a shutdown. */
  private readonly open = new Map<HeartbeatCall, (code: status, details: string, refused?: boolean, metadata?: Metadata) => void>();
  /** The open calls bound to each worker (usually one). */
  private readonly byWorker = new Map<string, Set<HeartbeatCall>>();
  private readonly encoder = new HeartbeatAckEncoder();
  /** Heartbeats left before the next one is timed. */
  private untilTimed = 0;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly guard: CallGuard,
    private readonly log: Logger,
    /** How long a stream may stay open without its first heartbeat. */
    private readonly firstHeartbeatTimeoutMs: number,
    private readonly clock: Clock,
    private readonly observer: TransportObserver,
  ) {}

  /** The number of open heartbeat streams. */
  get size(): number {
    return this.open.size;
  }

  /** The grpc-js handler for HeartbeatStream. */
  readonly handle = (call: HeartbeatCall): void => {
    let principal: Principal;
    let releaseSlot: () => void;
    try {
      principal = this.guard.principal(call.metadata);
      // A caller that may heartbeat no worker at all must not hold a stream slot waiting for its first message.
      this.guard.authorizeAny(principal, "heartbeat");
      releaseSlot = this.guard.openStream(call.getPeer(), principal, "heartbeat", (details) => finish(status.UNAUTHENTICATED, details));
    } catch (error) {
      const refusal = statusForError(error, this.log, "HeartbeatStream");
      this.observer.callRefused("HeartbeatStream", status[refusal.code]);
      call.emit("error", refusal);
      return;
    }
    let workerId: string | undefined;
    // Once bound: the stream's ack, filled again by each heartbeat, and the constant part of its replies.
    let ack: StreamHeartbeat | undefined;
    let prefix: AckPrefix | undefined;
    let finished = false;
    let released = false;
    const firstHeartbeatDue = setTimeout(() => {
      if (workerId !== undefined) return;
      const { code, details } = statusForError(new FirstHeartbeatTimeoutError(this.firstHeartbeatTimeoutMs), this.log, "HeartbeatStream");
      finish(code, details);
    }, this.firstHeartbeatTimeoutMs);
    // The stream's own socket keeps the process alive while it matters; this timer must never delay an exit.
    firstHeartbeatDue.unref();
    const release = (failed: boolean) => {
      if (released) return;
      released = true;
      clearTimeout(firstHeartbeatDue);
      this.open.delete(call);
      if (workerId !== undefined) this.unbind(workerId, call);
      releaseSlot();
      if (workerId !== undefined) this.registry.streamEnded(workerId, failed);
    };
    const finish = (code: status, details: string, refused = true, metadata?: Metadata) => {
      if (finished) return;
      finished = true;
      release(false);
      if (code === status.OK) {
        call.end();
        return;
      }
      if (refused) this.observer.callRefused("HeartbeatStream", status[code]);
      call.emit("error", metadata === undefined ? { code, details } : { code, details, metadata });
    };
    this.open.set(call, finish);

    call.on("data", (request: HeartbeatBeat) => {
      if (finished) return;
      let arrivedMs = -1;
      if (this.untilTimed === 0) arrivedMs = this.clock.monotonic();
      else this.untilTimed--;
      try {
        if (workerId === undefined || ack === undefined || prefix === undefined) {
          validateWorkerId(request.workerId);
          this.guard.authorize(principal, "heartbeat", request.workerId);
          const first = new StreamHeartbeat(request.workerId);
          this.registry.streamHeartbeat(first);
          workerId = request.workerId;
          ack = first;
          prefix = this.encoder.prefix(workerId);
          this.bind(workerId, call);
          clearTimeout(firstHeartbeatDue);
          this.registry.streamBound(workerId);
          this.reply(call, prefix, request.sequence, ack);
          this.timed(arrivedMs);
          return;
        }
        if (request.workerId !== workerId) {
          throw new InvalidArgumentError("worker_id", `must stay ${workerId} for the whole stream, got ${quote(request.workerId)}`);
        }
        this.registry.streamHeartbeat(ack);
        this.reply(call, prefix, request.sequence, ack);
        this.timed(arrivedMs);
      } catch (error) {
        const { code, details, metadata } = statusForError(error, this.log, "HeartbeatStream");
        finish(code, details, true, metadata);
      }
    });
    call.on("end", () => {
      // A cancel arrives as 'end' followed, a fraction of a millisecond later, by 'cancelled'.
      setTimeout(() => {
        if (call.cancelled) release(true);
        else finish(status.OK, "OK");
      }, CANCEL_GRACE_MS);
    });
    call.on("cancelled", () => release(true));
    call.on("error", () => release(true));
  };

  /** Ends every open stream with UNAVAILABLE, telling workers to reconnect. Not a failure of any worker. */
  closeAll(): void {
    // finish() releases the stream as a clean end before the error status goes out, so the stream's own
    // error handler, which takes the failure path, finds it already released.
    for (const finish of [...this.open.values()]) finish(status.UNAVAILABLE, "registry is shutting down; reconnect", false);
  }

  /** Reports a timed heartbeat (`arrivedMs` >= 0) and schedules the next one to time. */
  private timed(arrivedMs: number): void {
    if (arrivedMs < 0) return;
    this.observer.heartbeatHandled((this.clock.monotonic() - arrivedMs) / 1000);
    this.untilTimed = HEARTBEAT_TIMING_SAMPLE - 1;
  }

  /**
   * The worker was removed (by any process): its streams here end at once
   * with NOT_FOUND and the reason, rather than at their next heartbeat, so a
   * drained worker stops now and a replaced or expired one registers again.
   */
  workerRemoved(workerId: string, reason: string): void {
    const calls = this.byWorker.get(workerId);
    if (calls === undefined) return;
    const { code, details, metadata } = statusForError(new WorkerNotFoundError(workerId, reason), this.log, "HeartbeatStream");
    for (const call of [...calls]) this.open.get(call)?.(code, details, false, metadata);
  }

  private bind(workerId: string, call: HeartbeatCall): void {
    let calls = this.byWorker.get(workerId);
    if (calls === undefined) this.byWorker.set(workerId, (calls = new Set()));
    calls.add(call);
  }

  private unbind(workerId: string, call: HeartbeatCall): void {
    const calls = this.byWorker.get(workerId);
    calls?.delete(call);
    if (calls?.size === 0) this.byWorker.delete(workerId);
  }

  private reply(call: HeartbeatCall, prefix: AckPrefix, sequence: number, ack: StreamHeartbeat): void {
    // server_time is the time recorded for the heartbeat, so the reply and last_heartbeat_at agree to the millisecond.
    const writable = call.write(this.encoder.encode(prefix, sequence, healthToProto(ack.healthStatus), ack.heartbeatAtMs, ack.nextHeartbeatIntervalMs, ack.drainDeadlineMs));
    // A client that sends heartbeats and does not read the replies: stop reading its heartbeats until the
    // replies drain, so HTTP/2 flow control pushes back on it instead of the server buffering without bound.
    if (!writable) {
      call.pause();
      call.once("drain", () => call.resume());
    }
  }
}
