import { create } from "@bufbuild/protobuf";
import { HeartbeatStreamRequestSchema, type HeartbeatStreamResponse } from "./gen/sentinel/registry/v1/registry_service_pb.js";
import type { HeartbeatStream } from "./registry-calls.js";
import type { WorkerHealth } from "./worker-info.js";

/**
 * One HeartbeatStream of a WorkerNode and its two timers: the next
 * heartbeat, and the reply the current one waits for. One heartbeat is in
 * flight at a time. The session only keeps the stream's state; the node
 * decides what a reply, a silence or an end means.
 */
export class HeartbeatSession {
  /** A reply has arrived on this stream. */
  confirmed = false;
  /** The final status has arrived, or the stream was given up. */
  ended = false;
  /** Health in the last reply. */
  health: WorkerHealth | undefined;
  /** Sequence of the heartbeat waiting for its reply, or null between heartbeats. */
  private awaiting: number | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private replyTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly stream: HeartbeatStream,
    /** The registry address the stream was opened on. */
    readonly address: string,
  ) {}

  /** Sends heartbeat `sequence`; `onSilence` runs if its reply has not come within `replyTimeoutMs`. */
  send(workerId: string, sequence: number, replyTimeoutMs: number, onSilence: () => void): void {
    this.heartbeatTimer = null;
    this.awaiting = sequence;
    this.stream.write(create(HeartbeatStreamRequestSchema, { workerId, sequence }));
    this.replyTimer = setTimeout(() => {
      this.replyTimer = null;
      onSilence();
    }, replyTimeoutMs);
  }

  /**
   * Whether `reply` answers the heartbeat in flight; if so its reply timer
   * stops. A reply to an earlier heartbeat must not start a second chain.
   */
  accept(reply: HeartbeatStreamResponse): boolean {
    if (this.awaiting === null || Number(reply.sequence) !== this.awaiting) {
      return false;
    }
    this.awaiting = null;
    this.clear("replyTimer");
    return true;
  }

  /** Runs `beat` in `delayMs`. */
  scheduleNext(delayMs: number, beat: () => void): void {
    this.clear("heartbeatTimer");
    this.heartbeatTimer = setTimeout(beat, delayMs);
  }

  /** Stops both timers: the session is being given up or closed. */
  clearTimers(): void {
    this.clear("heartbeatTimer");
    this.clear("replyTimer");
  }

  /** Gives the stream up at once. */
  cancel(): void {
    this.ended = true;
    this.clearTimers();
    this.stream.cancel();
  }

  /** Half-closes the stream and waits for the server's status, cancelling it after `closeTimeoutMs`. */
  finish(closeTimeoutMs: number): Promise<void> {
    this.clearTimers();
    if (this.ended) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.stream.cancel();
        done();
      }, closeTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.ended = true;
        resolve();
      };
      this.stream.once("status", done);
      try {
        this.stream.end();
      } catch {
        this.stream.cancel();
      }
    });
  }

  private clear(name: "heartbeatTimer" | "replyTimer"): void {
    const timer = this[name];
    if (timer !== null) {
      clearTimeout(timer);
      this[name] = null;
    }
  }
}
