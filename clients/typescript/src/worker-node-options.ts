import type { BackoffPolicy, RandomSource } from "./backoff.js";
import type { WorkerRegistryClientOptions } from "./client-options.js";
import type { RegistryClientError } from "./registry-client-error.js";
import type { WorkerHealth, WorkerInfo, WorkerRegistration } from "./worker-info.js";
import type { WorkerRegistryClient } from "./worker-registry-client.js";

/**
 * Where a WorkerNode is in its life. It runs once: a stopped node cannot
 * start again. `'draining'`: the registry asked it to drain, or `stop()`
 * began; it takes no new task and waits for its running ones.
 */
export type WorkerNodeState = "idle" | "starting" | "running" | "draining" | "stopping" | "stopped";

/** Options of a {@link WorkerNode}; everything but `registration` is optional. */
export interface WorkerNodeOptions {
  /** What to register (labels and version included), on start and again whenever the registry has lost the record. */
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
   * the server suggests none. It also bounds how late the node learns of a
   * drain. Default: the server's interval, or 5 minutes (the guide's advice)
   * if it suggests none.
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
  /**
   * How long `stop()` waits for running tasks to finish before it
   * unregisters anyway, in milliseconds; `stop({ drainTimeoutMs })`
   * overrides it. 0 does not wait. Default 30000.
   */
  drainTimeoutMs?: number;
  /** Uniform source in [0, 1) for reconnect jitter. Default `Math.random`. */
  random?: RandomSource;
  /** Monotonic milliseconds, used to measure task durations. Default `performance.now`. */
  clock?: () => number;
  /** Wall-clock milliseconds since the epoch, to time the registry's drain deadline. Default `Date.now`. */
  wallClock?: () => number;
}

/** Options of `WorkerNode.stop()`. */
export interface StopOptions {
  /** How long to wait for running tasks before unregistering anyway, in milliseconds. Default: the node's `drainTimeoutMs` (30000). */
  drainTimeoutMs?: number;
}

/** {@link WorkerNodeOptions} with every default applied and every timing checked. */
export interface CompiledWorkerNodeOptions {
  registration: WorkerRegistration;
  heartbeatIntervalMs: number | undefined;
  replyTimeoutMs: number;
  closeTimeoutMs: number;
  drainTimeoutMs: number;
  backoff: BackoffPolicy;
  random: RandomSource;
  clock: () => number;
  wallClock: () => number;
}

/**
 * Fills in the defaults once, and copies the registration so that a caller
 * changing its object later cannot change what the node registers again.
 *
 * @throws RangeError if an interval or timeout is not positive, drainTimeoutMs
 *   is negative, or reconnectMaxMs < reconnectBaseMs.
 */
export function compileWorkerNodeOptions(options: WorkerNodeOptions): CompiledWorkerNodeOptions {
  const { registration } = options;
  const compiled: CompiledWorkerNodeOptions = {
    registration: {
      nodeId: registration.nodeId,
      capabilities: [...registration.capabilities],
      maxConcurrentTasks: registration.maxConcurrentTasks,
      labels: { ...registration.labels },
      version: registration.version ?? "",
    },
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    replyTimeoutMs: options.replyTimeoutMs ?? 10_000,
    closeTimeoutMs: options.closeTimeoutMs ?? 1000,
    drainTimeoutMs: options.drainTimeoutMs ?? 30_000,
    backoff: { baseMs: options.reconnectBaseMs ?? 500, maxMs: options.reconnectMaxMs ?? 30_000 },
    random: options.random ?? Math.random,
    clock: options.clock ?? (() => performance.now()),
    wallClock: options.wallClock ?? Date.now,
  };
  const positive: [string, number | undefined][] = [
    ["heartbeatIntervalMs", compiled.heartbeatIntervalMs],
    ["replyTimeoutMs", compiled.replyTimeoutMs],
    ["closeTimeoutMs", compiled.closeTimeoutMs],
    ["reconnectBaseMs", compiled.backoff.baseMs],
  ];
  for (const [name, value] of positive) {
    if (value !== undefined && !(value > 0)) {
      throw new RangeError(`${name} must be > 0, got ${value}`);
    }
  }
  checkDrainTimeout(compiled.drainTimeoutMs);
  if (!(compiled.backoff.maxMs >= compiled.backoff.baseMs)) {
    throw new RangeError(`reconnectMaxMs must be >= reconnectBaseMs, got ${compiled.backoff.maxMs} < ${compiled.backoff.baseMs}`);
  }
  return compiled;
}

/** @throws RangeError unless `drainTimeoutMs` is a finite number >= 0. */
export function checkDrainTimeout(drainTimeoutMs: number): void {
  if (!(Number.isFinite(drainTimeoutMs) && drainTimeoutMs >= 0)) {
    throw new RangeError(`drainTimeoutMs must be a finite number >= 0, got ${drainTimeoutMs}`);
  }
}

/** A heartbeat reply, as reported by the `'heartbeat'` event. */
export interface HeartbeatEvent {
  workerId: string;
  /** The sequence number of the heartbeat this answers (increasing over the node's life). */
  sequence: number;
  healthStatus: WorkerHealth;
  /** When the next heartbeat will be sent, in milliseconds from now. */
  nextHeartbeatMs: number;
  /** The registry asks the worker to drain: the node does (see the `'draining'` event). */
  drainRequested: boolean;
  /** While draining: when the registry removes the worker whatever it still runs. */
  drainDeadline: Date | undefined;
}

/**
 * Why a drain ended: `'drained'`, every task the node was running finished;
 * `'deadline'`, the registry's drain deadline passed first; `'removed'`, the
 * registry removed the worker while tasks still ran (its deadline by its own
 * clock, or an operator); `'timeout'`, `stop()`'s `drainTimeoutMs` passed
 * first. Tasks still running after any but `'drained'` run on, but their
 * bookkeeping is skipped: the record it would correct is gone.
 */
export type DrainEndReason = "drained" | "deadline" | "removed" | "timeout";

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
   * `workerId` is the new id. Never after a drain began.
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
  /**
   * A drain began: the registry asked for it (`requestedBy: 'registry'`: a
   * heartbeat reply or a task's bookkeeping answer showed the worker
   * draining, or the registry said it removed the worker because it
   * drained), or `stop()` drained the worker (`'stop'`). From now on `runTask` rejects with `WorkerDrainingError`;
   * the `runningTasks` finish. `deadline` is the registry's, undefined if it
   * could not be told.
   */
  draining: [event: { workerId: string; deadline: Date | undefined; runningTasks: number; requestedBy: "registry" | "stop" }];
  /**
   * A drain ended (see {@link DrainEndReason}): the worker is unregistered
   * (or already removed), the stream closed; `'stopped'` follows.
   * `runningTasks` are those still running, 0 after `'drained'`.
   */
  drained: [event: { workerId: string; reason: DrainEndReason; runningTasks: number }];
  /** The node finished: the worker is unregistered (if it could be), the stream closed, timers cleared. */
  stopped: [event: { workerId: string | null }];
}
