import { EventEmitter } from "node:events";
import { HeartbeatLink, recordLost, removedByDrain } from "./heartbeat-link.js";
import { RegistryClientError } from "./registry-client-error.js";
import { TaskLedger } from "./task-ledger.js";
import { WorkerDrainingError } from "./worker-draining-error.js";
import type { RemovalReason } from "./worker-event.js";
import type { WorkerHealth, WorkerInfo } from "./worker-info.js";
import {
  checkDrainTimeout,
  compileWorkerNodeOptions,
  type CompiledWorkerNodeOptions,
  type DrainEndReason,
  type StopOptions,
  type WorkerNodeEvents,
  type WorkerNodeOptions,
  type WorkerNodeState,
} from "./worker-node-options.js";
import { WorkerRegistryClient } from "./worker-registry-client.js";

/** The registry's bounds on a drain's grace. */
const MIN_GRACE_MS = 1000;
const MAX_GRACE_MS = 7 * 24 * 60 * 60 * 1000;

/** A drain under way: how it ends is settled once, by whichever comes first. */
interface Drain {
  deadline: Date | undefined;
  announced: boolean;
  readonly ended: Promise<DrainEndReason>;
  readonly end: (reason: DrainEndReason) => void;
  deadlineTimer: NodeJS.Timeout | null;
}

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
 * when the task throws.
 *
 * When the registry drains the worker (a heartbeat reply or a task's
 * bookkeeping answer says so, or a NOT_FOUND says it was removed because it
 * drained), the node takes no new task
 * (`runTask` rejects with {@link WorkerDrainingError}), lets the running ones
 * finish with their bookkeeping, then unregisters, closes and emits
 * `'drained'` and `'stopped'`: the process can exit by itself. It never
 * registers again after a drain. `stop()` drains the same way first, with a
 * timeout, so a SIGTERM handler that calls it gives the work back cleanly.
 *
 * @example
 * const node = new WorkerNode({ registration: { nodeId: 'coder-1', capabilities: ['coder'], maxConcurrentTasks: 5 } });
 * node.on('reregistered', ({ previousId, workerId }) => console.log(`${previousId} is now ${workerId}`));
 * await node.start();
 * process.once('SIGTERM', () => void node.stop());
 * await node.runTask(() => doWork());
 */
export class WorkerNode extends EventEmitter<WorkerNodeEvents> {
  private readonly client: WorkerRegistryClient;
  private readonly ownsClient: boolean;
  private readonly options: CompiledWorkerNodeOptions;

  private currentState: WorkerNodeState = "idle";
  private id: string | null = null;
  /** An id whose record the registry no longer holds, or which the node is giving up: task bookkeeping on it is moot. */
  private releasedId: string | null = null;
  private readonly link: HeartbeatLink;
  private readonly tasks = new TaskLedger();
  private drain: Drain | null = null;
  /** start()'s registration, which the release must wait for. */
  private registering: Promise<unknown> | null = null;
  private stopping: Promise<void> | null = null;
  private releasing: Promise<void> | null = null;

  /**
   * @throws RangeError if an interval or timeout is not positive,
   *   drainTimeoutMs is negative, or reconnectMaxMs < reconnectBaseMs.
   */
  constructor(options: WorkerNodeOptions) {
    super();
    this.options = compileWorkerNodeOptions(options);
    if (options.client !== undefined) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      const clientOptions = options.clientOptions ?? {};
      this.client = new WorkerRegistryClient({
        ...clientOptions,
        channelOptions: {
          "grpc.initial_reconnect_backoff_ms": this.options.backoff.baseMs,
          "grpc.max_reconnect_backoff_ms": this.options.backoff.maxMs,
          ...clientOptions.channelOptions,
        },
      });
      this.ownsClient = true;
    }
    this.link = new HeartbeatLink(this.client, this.options, this, {
      workerId: () => this.id,
      live: () => this.live,
      mayRegister: () => this.currentState === "running",
      adopt: (worker) => {
        const previousId = this.id ?? "";
        this.id = worker.id;
        if (this.currentState === "running") this.emit("reregistered", { previousId, workerId: worker.id, worker });
      },
      drainRequested: (deadline) => this.drainRequested(deadline),
      recordLost: (reason) => {
        // A worker removed because it drained is done, not lost: registering again would undo the drain.
        if (this.drain === null && !removedByDrain(reason)) return false;
        this.recordGone(reason);
        return true;
      },
    });
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
    return this.link.address;
  }

  /** Health in the last heartbeat reply on the open stream; undefined while no stream is confirmed. */
  get healthStatus(): WorkerHealth | undefined {
    return this.link.health;
  }

  /** While draining: when the registry removes the worker whatever it still runs, if the node knows it. */
  get drainDeadline(): Date | undefined {
    return this.drain?.deadline;
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
    // The id is set inside the chain the release waits for, so that a stop()
    // during registration always sees the record it has to remove.
    const registering = this.client.registerWorker(this.options.registration).then((registered) => {
      this.id = registered.id;
      return registered;
    });
    this.registering = registering.catch(() => undefined);
    let worker: WorkerInfo;
    try {
      worker = await registering;
    } catch (error) {
      if (this.currentState === "starting") {
        this.currentState = "idle";
      }
      throw error;
    } finally {
      this.registering = null;
    }
    if (this.currentState !== "starting") {
      return worker;
    }
    this.currentState = "running";
    this.emit("registered", worker);
    this.link.open();
    return worker;
  }

  /**
   * Runs one task with the registry's bookkeeping around it: the task count
   * goes up by one before `task` runs, the completion is recorded with its
   * measured duration (success or failure), and the count goes down by one
   * whatever happened. Resolves with the task's result. A drain waits for
   * the task, bookkeeping included.
   *
   * @throws WorkerDrainingError (a RegistryClientError, FAILED_PRECONDITION)
   *   if the worker is draining (the task does not run, nothing is counted),
   *   also when the drain began while the count was being raised.
   * @throws the task's own error, unchanged, if the task fails (even when the
   *   bookkeeping after it fails too).
   * @throws RegistryClientError if the count cannot be raised (FAILED_PRECONDITION
   *   at capacity: the task is not run), or if the task succeeded but recording
   *   it or lowering the count failed. If the node re-registered, or gave its
   *   record up (a drain that ended before the task, a `stop()` past its
   *   `drainTimeoutMs`), the bookkeeping after it is skipped and its failures
   *   ignored: the record it would correct no longer exists.
   * @throws Error if the node has no worker id (not started, or stopped).
   */
  async runTask<T>(task: () => T | Promise<T>): Promise<T> {
    const workerId = this.id;
    if (workerId !== null && this.currentState === "draining") {
      throw new WorkerDrainingError(workerId, this.drain?.deadline);
    }
    if (workerId === null || this.currentState !== "running") {
      throw new Error(`WorkerNode.runTask() needs a running node, but it is ${this.currentState}`);
    }
    // Counted before the count is raised, so that a drain beginning meanwhile waits for this call.
    const ticket = this.tasks.begin();
    try {
      return await this.runCounted(workerId, task, ticket.started, ticket.worked);
    } finally {
      ticket.end();
    }
  }

  /**
   * Drains, then unregisters the worker, half-closes the stream (cancelling
   * it if the server has not closed it within `closeTimeoutMs`), clears
   * every timer and closes the node's own client. Nothing the node started
   * keeps the event loop alive afterwards.
   *
   * The drain: `runTask` refuses new tasks at once, the registry is told
   * (DrainWorker, with the worker's own token; its grace is `drainTimeoutMs`,
   * at least 1 s), so orchestrators stop choosing the worker, and the
   * running tasks finish with their bookkeeping, for at most
   * `drainTimeoutMs` (default: the node's, 30000). Then `'drained'` and
   * `'stopped'` are emitted. If the registry cannot be reached, the node
   * drains all the same and the time stop() takes stays bounded (each call
   * has its deadline). Idempotent: later calls return the same promise; one
   * during a drain the registry asked for bounds that drain's wait.
   *
   * @throws RangeError for a drainTimeoutMs that is negative or not finite
   *   (the node is left as it was).
   * @throws RegistryClientError if unregistering failed for a reason other
   *   than NOT_FOUND; everything else has been released all the same.
   */
  stop(options: StopOptions = {}): Promise<void> {
    const drainTimeoutMs = options.drainTimeoutMs ?? this.options.drainTimeoutMs;
    try {
      checkDrainTimeout(drainTimeoutMs);
    } catch (error) {
      return Promise.reject(error);
    }
    this.stopping ??= this.shutdown(drainTimeoutMs);
    return this.stopping;
  }

  private async shutdown(drainTimeoutMs: number): Promise<void> {
    if (this.currentState !== "running" && this.currentState !== "draining") {
      // Idle or still registering (no task can have run), or already released after a drain.
      return this.releaseOnce(undefined);
    }
    const drain = this.beginDrain();
    const timeout = setTimeout(() => drain.end("timeout"), drainTimeoutMs);
    try {
      if (!drain.announced) {
        await this.requestDrain(drain, drainTimeoutMs);
        this.announceDrain(drain, "stop");
      }
      const reason = await drain.ended;
      await this.releaseOnce(reason);
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Tells the registry the worker drains, and takes note of the deadline it sets. Failures leave a local drain. */
  private async requestDrain(drain: Drain, drainTimeoutMs: number): Promise<void> {
    const workerId = this.id;
    if (workerId === null || this.releasedId === workerId) return;
    // A recovery may be registering again: drain the record it leaves.
    await this.link.settled();
    try {
      const graceMs = Math.min(MAX_GRACE_MS, Math.max(MIN_GRACE_MS, drainTimeoutMs));
      const worker = await this.client.drainWorker(this.id ?? workerId, { graceMs });
      this.setDeadline(drain, worker.drainDeadline);
    } catch (error) {
      // Unreachable, or a registry from before draining: the node still drains by itself.
      if (error instanceof RegistryClientError && recordLost(error.code, error.details)) {
        this.recordGone(error.removalReason);
      }
    }
  }

  /** The node's own part of a drain: refuse new tasks from now on, and end the drain when the running ones are done. */
  private beginDrain(): Drain {
    if (this.drain !== null) return this.drain;
    let end!: (reason: DrainEndReason) => void;
    const ended = new Promise<DrainEndReason>((resolve) => (end = resolve));
    const drain: Drain = { deadline: undefined, announced: false, ended, end, deadlineTimer: null };
    void ended.then(() => this.clearDeadlineTimer(drain));
    this.drain = drain;
    this.currentState = "draining";
    void this.tasks.whenIdle().then(() => drain.end("drained"));
    return drain;
  }

  private announceDrain(drain: Drain, requestedBy: "registry" | "stop"): void {
    if (drain.announced) return;
    drain.announced = true;
    this.emit("draining", { workerId: this.id ?? "", deadline: drain.deadline, runningTasks: this.tasks.running, requestedBy });
  }

  /** Takes the registry's deadline (only ever an earlier one) and ends the drain when it passes. */
  private setDeadline(drain: Drain, deadline: Date | undefined): void {
    if (deadline === undefined || (drain.deadline !== undefined && drain.deadline <= deadline)) return;
    drain.deadline = deadline;
    this.clearDeadlineTimer(drain);
    const delayMs = Math.max(0, deadline.getTime() - this.options.wallClock());
    drain.deadlineTimer = setTimeout(() => {
      drain.deadlineTimer = null;
      drain.end(this.tasks.running === 0 ? "drained" : "deadline");
    }, delayMs);
  }

  private clearDeadlineTimer(drain: Drain): void {
    if (drain.deadlineTimer !== null) {
      clearTimeout(drain.deadlineTimer);
      drain.deadlineTimer = null;
    }
  }

  /**
   * The registry drains the worker (a reply said so, or a bookkeeping answer
   * showed it draining): the node drains, and leaves when it is done.
   */
  private drainRequested(deadline: Date | undefined): void {
    if (!this.live) return;
    const drain = this.beginDrain();
    this.setDeadline(drain, deadline);
    if (drain.announced || this.stopping !== null) {
      // Announced already, or stop() is draining and announces and finishes the drain itself.
      return;
    }
    this.announceDrain(drain, "registry");
    // The registry asked for this drain and removes the worker at its deadline
    // whatever happens, so a failed unregister here is no one's to handle.
    void drain.ended.then((reason) => this.releaseOnce(reason)).catch(() => undefined);
  }

  /**
   * The registry no longer holds the record, removed for `reason` if it
   * said: during a drain, or when it was removed because it drained, that
   * ends the drain. With no task running the end waits for the bookkeeping
   * in flight, so that 'drained' comes after every task is settled.
   */
  private recordGone(reason?: RemovalReason): void {
    if (this.id !== null) this.releasedId = this.id;
    if (removedByDrain(reason)) this.drainRequested(undefined);
    if (this.tasks.running > 0) this.drain?.end(reason === "drain-deadline" ? "deadline" : "removed");
  }

  /** A bookkeeping answer shows the worker: one that drains is drained. */
  private noteState(worker: WorkerInfo): void {
    if (worker.state === "draining") this.drainRequested(worker.drainDeadline);
  }

  /** Whether `error` says the record is gone in a way that ends the node: while draining, or because it drained. */
  private endsTheNode(error: unknown): error is RegistryClientError {
    return error instanceof RegistryClientError && recordLost(error.code, error.details) && (this.drain !== null || removedByDrain(error.removalReason));
  }

  private releaseOnce(drainReason: DrainEndReason | undefined): Promise<void> {
    this.releasing ??= this.release(drainReason);
    return this.releasing;
  }

  /** Unregisters, closes the stream and the own client, and reports the end. Runs once. */
  private async release(drainReason: DrainEndReason | undefined): Promise<void> {
    this.currentState = "stopping";
    // Detached first, so that a reply arriving while we wait below cannot
    // schedule another heartbeat.
    const session = this.link.detach();
    if (this.drain !== null) this.clearDeadlineTimer(this.drain);
    await this.registering;
    // A recovery under way finds the node no longer live, and cancels any stream it opened.
    await this.link.settled();
    let failure: unknown;
    const workerId = this.id;
    if (workerId !== null && this.releasedId !== workerId) {
      // Given up before the call, so that tasks still running skip their bookkeeping.
      this.releasedId = workerId;
      try {
        await this.client.unregisterWorker(workerId);
      } catch (error) {
        if (!(error instanceof RegistryClientError && recordLost(error.code, error.details))) {
          failure = error;
        }
      }
    }
    if (session !== null) {
      await session.finish(this.options.closeTimeoutMs);
    }
    if (this.ownsClient) {
      this.client.close();
    }
    this.currentState = "stopped";
    if (drainReason !== undefined) {
      this.emit("drained", { workerId: workerId ?? "", reason: drainReason, runningTasks: this.tasks.running });
    }
    this.emit("stopped", { workerId });
    if (failure !== undefined) {
      throw failure;
    }
  }

  private async runCounted<T>(workerId: string, task: () => T | Promise<T>, started: () => void, worked: () => void): Promise<T> {
    try {
      this.noteState(await this.client.updateTaskCount(workerId, 1));
    } catch (error) {
      if (this.endsTheNode(error)) this.recordGone(error.removalReason);
      if (this.drain !== null) throw new WorkerDrainingError(workerId, this.drain.deadline, { cause: error });
      throw error;
    }
    if (this.currentState !== "running") {
      // The drain began while the count went up: the task has not started, so it is refused like any later one.
      await this.client.updateTaskCount(workerId, -1).catch(() => undefined);
      throw new WorkerDrainingError(workerId, this.drain?.deadline);
    }
    started();
    const startedAt = this.options.clock();
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await task() };
    } catch (error) {
      outcome = { ok: false, error };
    }
    worked();
    const durationMs = Math.max(0, this.options.clock() - startedAt);
    const bookkeepingErrors: unknown[] = [];
    // After a re-registration, or once the record is given up, there is
    // nothing left to correct, and a failure to correct it is no failure of the task.
    const recordStillOurs = (): boolean => this.id === workerId && this.releasedId !== workerId;
    const keepBooks = async (step: () => Promise<WorkerInfo>): Promise<void> => {
      if (!recordStillOurs()) {
        return;
      }
      try {
        this.noteState(await step());
      } catch (error) {
        if (this.endsTheNode(error)) {
          // Removed while draining (its deadline, or an operator), or because it drained.
          this.recordGone(error.removalReason);
        } else if (recordStillOurs()) {
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

  /** Whether the node keeps its stream: running, or draining. */
  private get live(): boolean {
    return this.currentState === "running" || this.currentState === "draining";
  }
}
