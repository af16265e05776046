import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import { fullJitterDelayMs, type BackoffPolicy, type RandomSource } from "./backoff.js";
import {
  HeartbeatStreamRequestSchema,
  type HeartbeatStreamResponse,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import { RegistryClientError } from "./registry-client-error.js";
import { durationMsOf, healthName, type WorkerHealth, type WorkerInfo, type WorkerRegistration } from "./worker-info.js";
import type { WorkerRegistryClientOptions } from "./client-options.js";
import type { HeartbeatStream } from "./registry-calls.js";
import { registryCalls, WorkerRegistryClient } from "./worker-registry-client.js";

/** Where a WorkerNode is in its life. It runs once: a stopped node cannot start again. */
export type WorkerNodeState = "idle" | "starting" | "running" | "stopping" | "stopped";

/** Options of a {@link WorkerNode}; everything but `registration` is optional. */
export interface WorkerNodeOptions {
  /** What to register, on start and again whenever the registry has lost the record. */
  registration: WorkerRegistration;
  /**
   * A client to use. The node then does not own it: `stop()` leaves it open.
   * Default: a client the node creates from `clientOptions` and closes on `stop()`.
   */
  client?: WorkerRegistryClient;
  /**
   * Options of the node's own client (ignored when `client` is given). Unless
   * set here, the channel's own reconnect backoff follows `reconnectBaseMs`
   * and `reconnectMaxMs`, so grpc-js does not hold a reconnect back longer
   * than the node intends. Default `{}`.
   */
  clientOptions?: WorkerRegistryClientOptions;
  /**
   * Upper bound of the wait between heartbeats, in milliseconds; the server's
   * `next_heartbeat_interval` is used when it is shorter, and this alone when
   * the server suggests none. Default: the server's interval, or 5 minutes
   * (the guide's advice) if it suggests none.
   */
  heartbeatIntervalMs?: number;
  /** How long to wait for the reply to a heartbeat before the stream counts as dead and is reopened, in milliseconds. Default 10000. */
  replyTimeoutMs?: number;
  /** Ceiling of the first reconnect delay, in milliseconds. Default 500. */
  reconnectBaseMs?: number;
  /** Largest reconnect delay ceiling, in milliseconds. Default 30000. */
  reconnectMaxMs?: number;
  /** How long `stop()` waits for the server to close the half-closed stream before cancelling it, in milliseconds. Default 1000. */
  closeTimeoutMs?: number;
  /** Uniform source in [0, 1) for reconnect jitter. Default `Math.random`. */
  random?: RandomSource;
  /** Monotonic milliseconds, used to measure task durations. Default `performance.now`. */
  clock?: () => number;
}

/** A heartbeat reply, as reported by the `'heartbeat'` event. */
export interface HeartbeatEvent {
  workerId: string;
  /** The sequence number of the heartbeat this answers (increasing over the node's life). */
  sequence: number;
  healthStatus: WorkerHealth;
  /** When the next heartbeat will be sent, in milliseconds from now. */
  nextHeartbeatMs: number;
}

/**
 * Events of a {@link WorkerNode}. The node never emits `'error'`: background
 * failures are retried and reported through `'reconnecting'`, so a process
 * without listeners is never brought down by a registry restart.
 */
export interface WorkerNodeEvents {
  /** `start()` registered the worker. */
  registered: [worker: WorkerInfo];
  /**
   * The registry had lost the record (the stream ended with NOT_FOUND, or
   * UNAUTHENTICATED "not found" for the worker's own token, e.g.
   * after cleanup) and the node registered again with the same registration:
   * `workerId` is the new id.
   */
  reregistered: [event: { previousId: string; workerId: string; worker: WorkerInfo }];
  /**
   * The first reply arrived on a newly opened stream; `reconnects` is 0 for
   * the stream opened by `start()`, `address` the registry address (replica)
   * the stream runs on.
   */
  connected: [event: { workerId: string; reconnects: number; address: string }];
  /** A heartbeat was answered. */
  heartbeat: [event: HeartbeatEvent];
  /**
   * A reply reported a different health than the previous reply on the same
   * stream; `from` is undefined for the first reply of a stream.
   */
  health: [event: { workerId: string; from: WorkerHealth | undefined; to: WorkerHealth }];
  /** A reply reported healthy and the previous reply on the same stream did not (or there was none). */
  healthy: [event: { workerId: string }];
  /**
   * The stream or a re-registration failed; the next attempt starts after
   * `delayMs` (full jitter). `attempt` counts failures since the last reply.
   */
  reconnecting: [event: { workerId: string; attempt: number; delayMs: number; error: RegistryClientError }];
  /** `stop()` finished: the worker is unregistered (if it could be), the stream closed, timers cleared. */
  stopped: [event: { workerId: string | null }];
}

interface Session {
  readonly stream: HeartbeatStream;
  /** The registry address the stream was opened on. */
  readonly address: string;
  /** A reply has arrived on this stream. */
  confirmed: boolean;
  /** The final status has arrived. */
  ended: boolean;
  /** Sequence of the heartbeat waiting for its reply, or null between heartbeats. */
  awaiting: number | null;
  health: WorkerHealth | undefined;
}

const DEFAULT_HEARTBEAT_INTERVAL_MS = 5 * 60 * 1000;

/**
 * A worker process's link to the registry: what the usage guide's
 * `WorkerNode` does by hand, plus what it leaves out. `start()` registers and
 * keeps one `HeartbeatStream` open, sending the next heartbeat when the server
 * says to. When the stream breaks (server restart, network) it reopens it
 * after an exponential backoff with full jitter, so a fleet does not return in
 * one burst; with several registry addresses it reopens it on another replica,
 * with the same worker id and token (the replicas share one database). Only
 * when the registry has lost the record does it register again and report
 * the new id. `runTask()` keeps the task count and metrics right even
 * when the task throws. `stop()` unregisters and releases everything, so the
 * process can exit on its own.
 *
 * @example
 * const node = new WorkerNode({ registration: { nodeId: 'coder-1', capabilities: ['coder'], maxConcurrentTasks: 5 } });
 * node.on('reregistered', ({ previousId, workerId }) => console.log(`${previousId} is now ${workerId}`));
 * await node.start();
 * await node.runTask(() => doWork());
 * await node.stop();
 */
export class WorkerNode extends EventEmitter<WorkerNodeEvents> {
  private readonly client: WorkerRegistryClient;
  private readonly ownsClient: boolean;
  private readonly registration: WorkerRegistration;
  private readonly heartbeatIntervalMs: number | undefined;
  private readonly replyTimeoutMs: number;
  private readonly closeTimeoutMs: number;
  private readonly backoff: BackoffPolicy;
  private readonly random: RandomSource;
  private readonly clock: () => number;

  private currentState: WorkerNodeState = "idle";
  private id: string | null = null;
  private session: Session | null = null;
  private sequence = 0;
  private failures = 0;
  private streamsConfirmed = 0;
  private needsRegistration = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private replyTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Background work (start's registration, a recovery) that stop() must wait for. */
  private inflight: Promise<unknown> | null = null;
  private stopping: Promise<void> | null = null;

  /**
   * @throws RangeError if an interval or timeout is not positive, or
   *   reconnectMaxMs < reconnectBaseMs.
   */
  constructor(options: WorkerNodeOptions) {
    super();
    this.registration = {
      nodeId: options.registration.nodeId,
      capabilities: [...options.registration.capabilities],
      maxConcurrentTasks: options.registration.maxConcurrentTasks,
    };
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.replyTimeoutMs = options.replyTimeoutMs ?? 10_000;
    this.closeTimeoutMs = options.closeTimeoutMs ?? 1000;
    this.backoff = { baseMs: options.reconnectBaseMs ?? 500, maxMs: options.reconnectMaxMs ?? 30_000 };
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? (() => performance.now());
    const positive: [string, number | undefined][] = [
      ["heartbeatIntervalMs", this.heartbeatIntervalMs],
      ["replyTimeoutMs", this.replyTimeoutMs],
      ["closeTimeoutMs", this.closeTimeoutMs],
      ["reconnectBaseMs", this.backoff.baseMs],
    ];
    for (const [name, value] of positive) {
      if (value !== undefined && !(value > 0)) {
        throw new RangeError(`${name} must be > 0, got ${value}`);
      }
    }
    if (!(this.backoff.maxMs >= this.backoff.baseMs)) {
      throw new RangeError(`reconnectMaxMs must be >= reconnectBaseMs, got ${this.backoff.maxMs} < ${this.backoff.baseMs}`);
    }
    if (options.client !== undefined) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      const clientOptions = options.clientOptions ?? {};
      this.client = new WorkerRegistryClient({
        ...clientOptions,
        channelOptions: {
          "grpc.initial_reconnect_backoff_ms": this.backoff.baseMs,
          "grpc.max_reconnect_backoff_ms": this.backoff.maxMs,
          ...clientOptions.channelOptions,
        },
      });
      this.ownsClient = true;
    }
  }

  /** The current worker id: null before `start()` registers; changes on re-registration. */
  get workerId(): string | null {
    return this.id;
  }

  /** Where the node is in its life. */
  get state(): WorkerNodeState {
    return this.currentState;
  }

  /**
   * The registry address (replica) whose stream carries the heartbeats;
   * undefined while no stream is confirmed.
   */
  get address(): string | undefined {
    return this.session?.confirmed === true ? this.session.address : undefined;
  }

  /** Health in the last heartbeat reply on the open stream; undefined while no stream is confirmed. */
  get healthStatus(): WorkerHealth | undefined {
    return this.session?.health;
  }

  /**
   * Registers the worker and opens the heartbeat stream in the background.
   * Resolves with the registered worker; stream trouble after that is
   * retried, never thrown. If `stop()` is called while registering, resolves
   * with the worker that `stop()` then unregisters.
   *
   * @throws Error if the node is not idle (start runs once).
   * @throws RegistryClientError if the registration fails; the node is idle
   *   again and `start()` may be retried.
   */
  async start(): Promise<WorkerInfo> {
    if (this.currentState !== "idle") {
      throw new Error(`WorkerNode.start() needs an idle node, but it is ${this.currentState}`);
    }
    this.currentState = "starting";
    // The id is set inside the chain stop() waits for, so that a stop() during
    // registration always sees the record it has to remove.
    const registering = this.client.registerWorker(this.registration).then((registered) => {
      this.id = registered.id;
      return registered;
    });
    this.inflight = registering.catch(() => undefined);
    let worker: WorkerInfo;
    try {
      worker = await registering;
    } catch (error) {
      if (this.currentState === "starting") {
        this.currentState = "idle";
      }
      throw error;
    } finally {
      this.inflight = null;
    }
    if (this.currentState !== "starting") {
      return worker;
    }
    this.currentState = "running";
    this.emit("registered", worker);
    this.track(this.openStream());
    return worker;
  }

  /**
   * Runs one task with the registry's bookkeeping around it: the task count
   * goes up by one before `task` runs, the completion is recorded with its
   * measured duration (success or failure), and the count goes down by one
   * whatever happened. Resolves with the task's result.
   *
   * @throws the task's own error, unchanged, if the task fails (even when the
   *   bookkeeping after it fails too).
   * @throws RegistryClientError if the count cannot be raised (FAILED_PRECONDITION
   *   at capacity: the task is not run), or if the task succeeded but recording
   *   it or lowering the count failed. If the node re-registered or was
   *   stopped while the task ran, the bookkeeping after it is skipped (and its
   *   failures ignored): the record it would correct no longer exists.
   *   `stop()` does not wait for running tasks.
   * @throws Error if the node has no worker id (not started, or stopped).
   */
  async runTask<T>(task: () => T | Promise<T>): Promise<T> {
    const workerId = this.id;
    if (workerId === null || this.currentState !== "running") {
      throw new Error(`WorkerNode.runTask() needs a running node, but it is ${this.currentState}`);
    }
    await this.client.updateTaskCount(workerId, 1);
    const startedAt = this.clock();
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await task() };
    } catch (error) {
      outcome = { ok: false, error };
    }
    const durationMs = Math.max(0, this.clock() - startedAt);
    const bookkeepingErrors: unknown[] = [];
    // After a re-registration or stop() the record this task was counted in is
    // gone (or about to be): there is nothing left to correct, and a failure
    // to correct it is no failure of the task.
    const recordStillOurs = (): boolean => this.id === workerId && this.currentState === "running";
    const keepBooks = async (step: () => Promise<unknown>): Promise<void> => {
      if (!recordStillOurs()) {
        return;
      }
      try {
        await step();
      } catch (error) {
        if (recordStillOurs()) {
          bookkeepingErrors.push(error);
        }
      }
    };
    await keepBooks(() => this.client.recordTaskCompletion(workerId, outcome.ok, durationMs));
    await keepBooks(() => this.client.updateTaskCount(workerId, -1));
    if (!outcome.ok) {
      throw outcome.error;
    }
    if (bookkeepingErrors.length > 0) {
      throw bookkeepingErrors[0];
    }
    return outcome.value;
  }

  /**
   * Unregisters the worker, half-closes the stream (cancelling it if the
   * server has not closed it within `closeTimeoutMs`), clears every timer and
   * closes the node's own client. Nothing the node started keeps the event
   * loop alive afterwards. Idempotent: later calls return the same promise.
   *
   * @throws RegistryClientError if unregistering failed for a reason other
   *   than NOT_FOUND; everything else has been released all the same.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.currentState = "stopping";
    // Detached first, so that a reply arriving while we wait below cannot
    // schedule another heartbeat.
    const session = this.session;
    this.session = null;
    this.clearTimers();
    await this.inflight;
    let failure: unknown;
    if (this.id !== null) {
      try {
        await this.client.unregisterWorker(this.id);
      } catch (error) {
        if (!(error instanceof RegistryClientError && recordLost(error.code, error.details))) {
          failure = error;
        }
      }
    }
    if (session !== null) {
      await this.finishStream(session);
    }
    if (this.ownsClient) {
      this.client.close();
    }
    this.currentState = "stopped";
    this.emit("stopped", { workerId: this.id });
    if (failure !== undefined) {
      throw failure;
    }
  }

  /** Keeps a background step visible to stop(); steps never reject. */
  private track(step: Promise<void>): void {
    const tracked = step.finally(() => {
      if (this.inflight === tracked) {
        this.inflight = null;
      }
    });
    this.inflight = tracked;
  }

  /** Registers again if the record was lost, then opens a stream. Failures schedule the next attempt. */
  private async recover(): Promise<void> {
    if (this.needsRegistration) {
      let worker: WorkerInfo;
      try {
        worker = await this.client.registerWorker(this.registration);
      } catch (error) {
        this.scheduleReconnect(RegistryClientError.from("registerWorker", error));
        return;
      }
      const previousId = this.id ?? "";
      // Set even when stopping, so that stop() unregisters the new record.
      this.id = worker.id;
      this.needsRegistration = false;
      if (this.currentState !== "running") {
        return;
      }
      this.emit("reregistered", { previousId, workerId: worker.id, worker });
    }
    await this.openStream();
  }

  private async openStream(): Promise<void> {
    let stream: HeartbeatStream;
    let address: string;
    try {
      ({ stream, address } = await this.client[registryCalls].openHeartbeatStream(this.id ?? undefined));
    } catch (error) {
      this.scheduleReconnect(RegistryClientError.from("heartbeatStream", error));
      return;
    }
    const session: Session = { stream, address, confirmed: false, ended: false, awaiting: null, health: undefined };
    // The outcome is read from 'status', which grpc-js emits once for every
    // ending; this listener only keeps an error status from being thrown.
    stream.on("error", () => undefined);
    stream.on("status", (finalStatus: grpc.StatusObject) => this.onStreamEnded(session, finalStatus));
    stream.on("data", (reply: HeartbeatStreamResponse) => this.onReply(session, reply));
    if (this.currentState !== "running") {
      session.ended = true;
      stream.cancel();
      return;
    }
    this.session = session;
    this.sendHeartbeat(session);
  }

  private sendHeartbeat(session: Session): void {
    this.heartbeatTimer = null;
    if (this.session !== session || this.id === null) {
      return;
    }
    // sequence is a uint32 on the wire; wrapping after 2^32 heartbeats keeps it valid.
    this.sequence = (this.sequence + 1) % 2 ** 32;
    session.awaiting = this.sequence;
    session.stream.write(create(HeartbeatStreamRequestSchema, { workerId: this.id, sequence: this.sequence }));
    this.replyTimer = setTimeout(() => {
      this.replyTimer = null;
      this.abandon(
        session,
        new RegistryClientError(
          "heartbeatStream",
          grpc.status.DEADLINE_EXCEEDED,
          `no heartbeat reply within ${this.replyTimeoutMs}ms`,
        ),
      );
    }, this.replyTimeoutMs);
  }

  private onReply(session: Session, reply: HeartbeatStreamResponse): void {
    // A reply to an earlier heartbeat (or from a stream already given up) must
    // not start a second heartbeat chain.
    if (this.session !== session || session.awaiting === null || Number(reply.sequence) !== session.awaiting) {
      return;
    }
    session.awaiting = null;
    this.clearTimer("replyTimer");
    const workerId = this.id ?? reply.workerId;
    if (!session.confirmed) {
      session.confirmed = true;
      this.failures = 0;
      this.emit("connected", { workerId, reconnects: this.streamsConfirmed, address: session.address });
      this.streamsConfirmed += 1;
    }
    const health = healthName(reply.healthStatus);
    const previous = session.health;
    session.health = health;
    if (previous !== health) {
      this.emit("health", { workerId, from: previous, to: health });
      if (health === "healthy") {
        this.emit("healthy", { workerId });
      }
    }
    const nextHeartbeatMs = this.nextHeartbeatMs(durationMsOf(reply.nextHeartbeatInterval));
    this.emit("heartbeat", { workerId, sequence: Number(reply.sequence), healthStatus: health, nextHeartbeatMs });
    if (this.session === session) {
      this.heartbeatTimer = setTimeout(() => this.sendHeartbeat(session), nextHeartbeatMs);
    }
  }

  private onStreamEnded(session: Session, finalStatus: grpc.StatusObject): void {
    if (session.ended) {
      return;
    }
    session.ended = true;
    if (this.session !== session) {
      return;
    }
    this.session = null;
    this.clearTimer("heartbeatTimer");
    this.clearTimer("replyTimer");
    if (this.currentState !== "running") {
      return;
    }
    if (recordLost(finalStatus.code, finalStatus.details)) {
      this.needsRegistration = true;
    }
    this.scheduleReconnect(RegistryClientError.fromStatus("heartbeatStream", finalStatus));
  }

  /**
   * Gives up on a stream that stopped answering and reconnects, on another
   * address if the client has several: a replica that takes a heartbeat and
   * never answers (hung, or cut off behind a half-open connection) would
   * otherwise get every new stream too.
   */
  private abandon(session: Session, error: RegistryClientError): void {
    if (this.session !== session) {
      return;
    }
    this.session = null;
    session.ended = true;
    this.clearTimer("heartbeatTimer");
    session.stream.cancel();
    this.client[registryCalls].reportFailure(session.address, error.code);
    this.scheduleReconnect(error);
  }

  private scheduleReconnect(error: RegistryClientError): void {
    if (this.currentState !== "running") {
      return;
    }
    const attempt = this.failures;
    this.failures += 1;
    const delayMs = fullJitterDelayMs(attempt, this.backoff, this.random);
    this.emit("reconnecting", { workerId: this.id ?? "", attempt: attempt + 1, delayMs, error });
    this.clearTimer("reconnectTimer");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.track(this.recover());
    }, delayMs);
  }

  private nextHeartbeatMs(serverIntervalMs: number | undefined): number {
    if (serverIntervalMs === undefined || !(serverIntervalMs > 0)) {
      return this.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    }
    return this.heartbeatIntervalMs === undefined ? serverIntervalMs : Math.min(serverIntervalMs, this.heartbeatIntervalMs);
  }

  /** Half-closes the stream and waits for the server's status, cancelling after closeTimeoutMs. */
  private finishStream(session: Session): Promise<void> {
    if (session.ended) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        session.stream.cancel();
        done();
      }, this.closeTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        session.ended = true;
        resolve();
      };
      session.stream.once("status", done);
      try {
        session.stream.end();
      } catch {
        session.stream.cancel();
      }
    });
  }

  private clearTimers(): void {
    this.clearTimer("heartbeatTimer");
    this.clearTimer("replyTimer");
    this.clearTimer("reconnectTimer");
  }

  private clearTimer(name: "heartbeatTimer" | "replyTimer" | "reconnectTimer"): void {
    const timer = this[name];
    if (timer !== null) {
      clearTimeout(timer);
      this[name] = null;
    }
  }
}

/**
 * Whether a status says the registry no longer has the worker's record:
 * NOT_FOUND, or, with authentication on, UNAUTHENTICATED for the worker's
 * own token, which dies with its record ("worker … not found: its token is no
 * longer valid").
 */
function recordLost(code: grpc.status, details: string): boolean {
  return code === grpc.status.NOT_FOUND || (code === grpc.status.UNAUTHENTICATED && details.includes("not found"));
}
