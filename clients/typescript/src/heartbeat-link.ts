import * as grpc from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { fullJitterDelayMs } from "./backoff.js";
import type { HeartbeatStreamResponse } from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { HeartbeatSession } from "./heartbeat-session.js";
import { RegistryClientError } from "./registry-client-error.js";
import type { RemovalReason } from "./worker-event.js";
import { durationMsOf, healthName, optionalDateOf, type WorkerHealth, type WorkerInfo } from "./worker-info.js";
import type { CompiledWorkerNodeOptions, WorkerNodeEvents } from "./worker-node-options.js";
import { registryCalls, type WorkerRegistryClient } from "./worker-registry-client.js";

const DEFAULT_HEARTBEAT_INTERVAL_MS = 5 * 60 * 1000;

/** What a {@link HeartbeatLink} needs to know of its WorkerNode, and tells it. */
export interface HeartbeatLinkHost {
  /** The worker id the heartbeats carry; null before registration. */
  workerId(): string | null;
  /** Whether the stream is to be kept (running or draining). */
  live(): boolean;
  /** Whether a lost record may be registered again (running, not draining). */
  mayRegister(): boolean;
  /** A re-registration gave the worker a new record. */
  adopt(worker: WorkerInfo): void;
  /** A reply asked the worker to drain. */
  drainRequested(deadline: Date | undefined): void;
  /**
   * The stream ended because the record is gone, for `reason` when the
   * registry said why: true if the node takes that as the end of a drain,
   * false to register again.
   */
  recordLost(reason: RemovalReason | undefined): boolean;
}

/**
 * The heartbeat half of a WorkerNode: one `HeartbeatStream` at a time, each
 * heartbeat sent when the server says to, a stream that breaks or falls
 * silent reopened after full-jitter backoff (on another replica when the
 * client has several), and a lost record registered again when the host
 * allows it. Emits the node's `connected`, `heartbeat`, `health`,
 * `healthy` and `reconnecting` events.
 */
export class HeartbeatLink {
  private session: HeartbeatSession | null = null;
  private sequence = 0;
  private failures = 0;
  private streamsConfirmed = 0;
  private needsRegistration = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** A recovery (re-registration, stream opening) under way, for the node's release to wait for. */
  private inflight: Promise<void> | null = null;

  constructor(
    private readonly client: WorkerRegistryClient,
    private readonly options: CompiledWorkerNodeOptions,
    private readonly events: EventEmitter<WorkerNodeEvents>,
    private readonly host: HeartbeatLinkHost,
  ) {}

  /** The address of the confirmed stream; undefined while none is. */
  get address(): string | undefined {
    return this.session?.confirmed === true ? this.session.address : undefined;
  }

  /** Health in the last reply on the open stream; undefined while no stream is confirmed. */
  get health(): WorkerHealth | undefined {
    return this.session?.health;
  }

  /** Opens the first stream, in the background. */
  open(): void {
    this.track(this.openStream());
  }

  /** Resolves when no recovery is under way. */
  async settled(): Promise<void> {
    while (this.inflight !== null) await this.inflight;
  }

  /**
   * Stops every timer and hands the open stream over, to be closed by the
   * caller: no heartbeat or reconnect is scheduled afterwards, as long as
   * the host is no longer live.
   */
  detach(): HeartbeatSession | null {
    const session = this.session;
    this.session = null;
    session?.clearTimers();
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    return session;
  }

  /** Keeps a background step visible to settled(); steps never reject. */
  private track(step: Promise<void>): void {
    const tracked = step.finally(() => {
      if (this.inflight === tracked) {
        this.inflight = null;
      }
    });
    this.inflight = tracked;
  }

  /** Registers again if the record was lost (when the host allows), then opens a stream. Failures schedule the next attempt. */
  private async recover(): Promise<void> {
    if (this.needsRegistration && this.host.mayRegister()) {
      let worker: WorkerInfo;
      try {
        worker = await this.client.registerWorker(this.options.registration);
      } catch (error) {
        this.scheduleReconnect(RegistryClientError.from("registerWorker", error));
        return;
      }
      this.needsRegistration = false;
      // Adopted even when stopping, so that the node's release unregisters the new record.
      this.host.adopt(worker);
      if (!this.host.live()) {
        return;
      }
    }
    await this.openStream();
  }

  private async openStream(): Promise<void> {
    let session: HeartbeatSession;
    try {
      const { stream, address } = await this.client[registryCalls].openHeartbeatStream(this.host.workerId() ?? undefined);
      session = new HeartbeatSession(stream, address);
    } catch (error) {
      this.scheduleReconnect(RegistryClientError.from("heartbeatStream", error));
      return;
    }
    const { stream } = session;
    // The outcome is read from 'status', which grpc-js emits once for every
    // ending; this listener only keeps an error status from being thrown.
    stream.on("error", () => undefined);
    stream.on("status", (finalStatus: grpc.StatusObject) => this.onStreamEnded(session, finalStatus));
    stream.on("data", (reply: HeartbeatStreamResponse) => this.onReply(session, reply));
    if (!this.host.live()) {
      session.cancel();
      return;
    }
    this.session = session;
    this.sendHeartbeat(session);
  }

  private sendHeartbeat(session: HeartbeatSession): void {
    const workerId = this.host.workerId();
    if (this.session !== session || workerId === null) {
      return;
    }
    // sequence is a uint32 on the wire; wrapping after 2^32 heartbeats keeps it valid.
    this.sequence = (this.sequence + 1) % 2 ** 32;
    const { replyTimeoutMs } = this.options;
    session.send(workerId, this.sequence, replyTimeoutMs, () =>
      this.abandon(session, new RegistryClientError("heartbeatStream", grpc.status.DEADLINE_EXCEEDED, `no heartbeat reply within ${replyTimeoutMs}ms`)),
    );
  }

  private onReply(session: HeartbeatSession, reply: HeartbeatStreamResponse): void {
    if (this.session !== session || !session.accept(reply)) {
      return;
    }
    const workerId = this.host.workerId() ?? reply.workerId;
    if (!session.confirmed) {
      session.confirmed = true;
      this.failures = 0;
      this.events.emit("connected", { workerId, reconnects: this.streamsConfirmed, address: session.address });
      this.streamsConfirmed += 1;
    }
    const health = healthName(reply.healthStatus);
    const previous = session.health;
    session.health = health;
    if (previous !== health) {
      this.events.emit("health", { workerId, from: previous, to: health });
      if (health === "healthy") {
        this.events.emit("healthy", { workerId });
      }
    }
    const nextHeartbeatMs = this.nextHeartbeatMs(durationMsOf(reply.nextHeartbeatInterval));
    const drainDeadline = optionalDateOf(reply.drainDeadline);
    const { drainRequested } = reply;
    this.events.emit("heartbeat", { workerId, sequence: Number(reply.sequence), healthStatus: health, nextHeartbeatMs, drainRequested, drainDeadline });
    // Listeners may have stopped the node: the session is then detached.
    if (this.session !== session) {
      return;
    }
    if (drainRequested) {
      this.host.drainRequested(drainDeadline);
    }
    session.scheduleNext(nextHeartbeatMs, () => this.sendHeartbeat(session));
  }

  private onStreamEnded(session: HeartbeatSession, finalStatus: grpc.StatusObject): void {
    if (session.ended) {
      return;
    }
    session.ended = true;
    if (this.session !== session) {
      return;
    }
    this.session = null;
    session.clearTimers();
    if (!this.host.live()) {
      return;
    }
    const error = RegistryClientError.fromStatus("heartbeatStream", finalStatus);
    if (recordLost(error.code, error.details)) {
      if (this.host.recordLost(error.removalReason)) {
        return;
      }
      this.needsRegistration = true;
    }
    this.scheduleReconnect(error);
  }

  /**
   * Gives up on a stream that stopped answering and reconnects, on another
   * address if the client has several: a replica that takes a heartbeat and
   * never answers (hung, or cut off behind a half-open connection) would
   * otherwise get every new stream too.
   */
  private abandon(session: HeartbeatSession, error: RegistryClientError): void {
    if (this.session !== session) {
      return;
    }
    this.session = null;
    session.cancel();
    this.client[registryCalls].reportFailure(session.address, error.code);
    this.scheduleReconnect(error);
  }

  private scheduleReconnect(error: RegistryClientError): void {
    if (!this.host.live()) {
      return;
    }
    const attempt = this.failures;
    this.failures += 1;
    const delayMs = fullJitterDelayMs(attempt, this.options.backoff, this.options.random);
    this.events.emit("reconnecting", { workerId: this.host.workerId() ?? "", attempt: attempt + 1, delayMs, error });
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.track(this.recover());
    }, delayMs);
  }

  private nextHeartbeatMs(serverIntervalMs: number | undefined): number {
    const { heartbeatIntervalMs } = this.options;
    if (serverIntervalMs === undefined || !(serverIntervalMs > 0)) {
      return heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    }
    return heartbeatIntervalMs === undefined ? serverIntervalMs : Math.min(serverIntervalMs, heartbeatIntervalMs);
  }
}

/**
 * Whether a status says the registry no longer has the worker's record:
 * NOT_FOUND, or, with authentication on, UNAUTHENTICATED for the worker's
 * own token, which dies with its record ("worker … not found: its token is no
 * longer valid").
 */
export function recordLost(code: grpc.status, details: string): boolean {
  return code === grpc.status.NOT_FOUND || (code === grpc.status.UNAUTHENTICATED && details.includes("not found"));
}

/** Whether the registry removed the worker because it was drained: it must not register again. */
export function removedByDrain(reason: RemovalReason | undefined): boolean {
  return reason === "drained" || reason === "drain-deadline";
}
