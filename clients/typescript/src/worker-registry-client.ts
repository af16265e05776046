import { durationFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import type { DrainOptions, LoadBalancingOptions, WithWorkerOptions, WorkerRegistryClientOptions } from "./client-options.js";
import type { Worker } from "./gen/sentinel/registry/v1/worker_pb.js";
import { RegistryCalls, type HeartbeatStream, type OutputOf } from "./registry-calls.js";
import { NoWorkerAvailableError, RegistryClientError } from "./registry-client-error.js";
import type { WorkerWatchEvent } from "./worker-event.js";
import { filterOf, watchFilterOf } from "./worker-filter.js";
import { listWorkers } from "./worker-listing.js";
import { runWithWorker } from "./with-worker.js";
import {
  releaseOutcomeName,
  toEvictionInfo,
  toRankedWorkerInfo,
  toRegistryStats,
  toWorkerAcquisition,
  toWorkerHeartbeat,
  toWorkerInfo,
  type EvictionInfo,
  type RankedWorkerInfo,
  type RegistryStats,
  type ReleaseOutcome,
  type TaskCompletion,
  type WorkerAcquisition,
  type WorkerHeartbeat,
  type WorkerInfo,
  type WorkerQuery,
  type WorkerRegistration,
} from "./worker-info.js";
import { compileWatchOptions, watchWorkerEvents, type WatchWorkersOptions, type WorkerWatchQuery } from "./worker-watch.js";

/**
 * The key of a client's wire. `WorkerNode` needs it to learn on which
 * address its stream runs and to report a replica that stopped answering;
 * `index.ts` does not export it, so it stays inside the package.
 */
export const registryCalls: unique symbol = Symbol("registryCalls");

/**
 * A client of `sentinel.registry.v1.WorkerRegistryService` with the method
 * names and result shapes of the usage guide's `WorkerRegistry`, so code
 * written against the guide runs against a remote registry by changing its
 * construction line.
 *
 * Every method rejects with a {@link RegistryClientError}: `code` is the gRPC
 * status, `message` the server's details (`worker ... not found` for an
 * unknown id, the field and rule for INVALID_ARGUMENT, the range for a task
 * count that would leave 0..maxConcurrentTasks as FAILED_PRECONDITION).
 *
 * Given several `addresses` (replicas of one registry), it sends every call
 * to one of them while it works, and moves on to another when a call fails
 * with UNAVAILABLE or DEADLINE_EXCEEDED: idempotent calls are retried there,
 * other writes fail as they would with one address, and the next call goes
 * to the replica moved to.
 *
 * One instance is one channel per address (one HTTP/2 connection each, made
 * on first use); share it. Call `close()` when done so the process can exit.
 */
export class WorkerRegistryClient {
  private readonly calls: RegistryCalls;
  private readonly discoverPageSize: number;
  private readonly clock: () => number;
  /** Ends the open watches when the client closes. */
  private readonly watches = new Set<AbortController>();

  /**
   * Checks the options; channels connect lazily, on their first call.
   *
   * @throws RangeError if `deadlineMs`, `discoverPageSize`, a retry field or
   *   the addresses break their rules (see `addresses`).
   */
  constructor(options: WorkerRegistryClientOptions = {}) {
    this.discoverPageSize = options.discoverPageSize ?? 1000;
    this.clock = options.clock ?? (() => performance.now());
    if (!Number.isInteger(this.discoverPageSize) || this.discoverPageSize < 1 || this.discoverPageSize > 10_000) {
      throw new RangeError(`discoverPageSize must be an integer from 1 to 10000, got ${this.discoverPageSize}`);
    }
    this.calls = new RegistryCalls(options);
  }

  /** The wire under this client, for `WorkerNode` in this package (see {@link registryCalls}). */
  get [registryCalls](): RegistryCalls {
    return this.calls;
  }

  /**
   * The address calls go to now: `address` as given, or, with `addresses`,
   * the replica in use (it changes when that one fails).
   */
  get address(): string {
    return this.calls.address;
  }

  /** Every address, in the order this client fails over between them (`addresses` shuffled, unless `addressOrder` is `'as-given'`). */
  get addresses(): readonly string[] {
    return this.calls.addresses;
  }

  /**
   * Registers a worker and returns it with its new id. Not retried.
   *
   * @throws RegistryClientError INVALID_ARGUMENT naming the field that breaks its rule.
   */
  async registerWorker(registration: WorkerRegistration): Promise<WorkerInfo> {
    const response = await this.calls.unary("registerWorker", {
      nodeId: registration.nodeId,
      capabilities: [...registration.capabilities],
      maxConcurrentTasks: registration.maxConcurrentTasks,
      labels: { ...registration.labels },
      version: registration.version ?? "",
    });
    const worker = workerOf("registerWorker", response.worker);
    this.calls.rememberWorkerToken(worker.id, response.workerToken);
    return worker;
  }

  /**
   * The token the registry issued to a worker this client registered, or
   * undefined. It proves to the registry that a call comes from that worker
   * and acts on no other; the registry itself keeps only its hash.
   */
  workerToken(workerId: string): string | undefined {
    return this.calls.workerToken(workerId);
  }

  /**
   * Removes a worker at once. Not retried.
   *
   * @throws RegistryClientError NOT_FOUND if no such worker is registered.
   */
  async unregisterWorker(workerId: string): Promise<void> {
    await this.calls.unary("unregisterWorker", { workerId });
    this.calls.forgetWorkerToken(workerId);
  }

  /**
   * Marks a worker alive now (one unary call; `WorkerNode` uses the stream
   * instead). Resolves with the worker and `drainRequested`: when true, the
   * worker should take no new task, finish what it runs, and expect to be
   * removed at the latest at `drainDeadline`. Not retried.
   *
   * @throws RegistryClientError NOT_FOUND if the worker was unregistered or
   *   cleaned up (re-register), or removed after a drain (do not).
   */
  async heartbeat(workerId: string): Promise<WorkerHeartbeat> {
    const response = await this.calls.unary("heartbeat", { workerId });
    if (response.worker === undefined) {
      throw new RegistryClientError("heartbeat", grpc.status.INTERNAL, "heartbeat response carried no worker");
    }
    return toWorkerHeartbeat(response);
  }

  /**
   * Adds `delta` to the worker's current task count (+1 when a task is
   * assigned, -1 when it ends). Not retried: a repeat would count twice.
   *
   * @throws RegistryClientError FAILED_PRECONDITION if the count would leave 0..maxConcurrentTasks
   *   (nothing changes); NOT_FOUND for an unknown worker.
   */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerInfo> {
    const response = await this.calls.unary("updateTaskCount", { workerId, delta });
    return workerOf("updateTaskCount", response.worker);
  }

  /**
   * Records one completion, successful or failed, with its duration. Does not
   * change the current task count. Not retried.
   *
   * @throws RegistryClientError INVALID_ARGUMENT if durationMs is not finite or outside 0..30 days;
   *   NOT_FOUND for an unknown worker.
   */
  async recordTaskCompletion(workerId: string, success: boolean, durationMs: number): Promise<WorkerInfo> {
    const response = await this.calls.unary("recordTaskCompletion", { workerId, success, durationMs });
    return workerOf("recordTaskCompletion", response.worker);
  }

  /**
   * Returns one worker. Retried on UNAVAILABLE.
   *
   * @throws RegistryClientError NOT_FOUND for an unknown worker.
   */
  async getWorker(workerId: string): Promise<WorkerInfo> {
    const response = await this.calls.unary("getWorker", { workerId });
    return workerOf("getWorker", response.worker);
  }

  /**
   * Every worker that matches `query` (all workers without one), ordered by
   * id. Follows page tokens until the last page, so the result is complete
   * however large the fleet; each page is retried on UNAVAILABLE.
   *
   * @throws RangeError for an unknown health name.
   * @throws RegistryClientError INTERNAL if the server repeats a page token.
   */
  async discoverWorkers(query: WorkerQuery = {}): Promise<WorkerInfo[]> {
    return (await listWorkers(this.calls, filterOf(query), this.discoverPageSize)).workers;
  }

  /**
   * The matching workers ranked for load balancing: healthy before degraded,
   * then highest `priority` first. Without a health filter the server
   * considers healthy and degraded workers. Retried on UNAVAILABLE.
   *
   * @throws RangeError for an unknown health name.
   */
  async getWorkersForLoadBalancing(query: WorkerQuery = {}, options: LoadBalancingOptions = {}): Promise<RankedWorkerInfo[]> {
    const response = await this.calls.unary("getWorkersForLoadBalancing", {
      filter: filterOf(query),
      limit: options.limit ?? 0,
    });
    return response.workers.map(toRankedWorkerInfo);
  }

  /**
   * Counts by health, capacity and completion totals of the whole fleet, with
   * the registry's revision, the active reservations and the eviction status.
   * Retried on UNAVAILABLE.
   */
  async getRegistryStats(): Promise<RegistryStats> {
    return toRegistryStats(await this.calls.unary("getRegistryStats", {}));
  }

  /**
   * Takes a slot on the best-ranked matching worker with a free slot, in one
   * step on the registry: two callers can never overbook a worker. Among
   * near-equal workers the registry picks at random. Without a health filter
   * healthy and degraded workers are considered, healthy first. Release the
   * slot with {@link WorkerRegistryClient.releaseWorker} when the task ends,
   * or use {@link WorkerRegistryClient.withWorker}, which always does; a slot
   * never released is freed by the registry at `expiresAt`. Not retried: a
   * repeat could take a second slot.
   *
   * @throws NoWorkerAvailableError (a RegistryClientError, RESOURCE_EXHAUSTED)
   *   when no worker matches or none that matches has a free slot.
   * @throws RangeError for an unknown health name.
   */
  async acquireWorker(query: WorkerQuery = {}): Promise<WorkerAcquisition> {
    let response: OutputOf<"acquireWorker">;
    try {
      response = await this.calls.unary("acquireWorker", { filter: filterOf(query) });
    } catch (error) {
      if (error instanceof RegistryClientError && error.code === grpc.status.RESOURCE_EXHAUSTED) {
        throw new NoWorkerAvailableError("acquireWorker", error.details, error.metadata, { cause: error });
      }
      throw error;
    }
    if (response.worker === undefined) {
      throw new RegistryClientError("acquireWorker", grpc.status.INTERNAL, "acquireWorker response carried no worker");
    }
    return toWorkerAcquisition(response);
  }

  /**
   * Ends a reservation from {@link WorkerRegistryClient.acquireWorker}: frees
   * its slot and records the task's outcome and duration on the worker, in
   * one step on the registry. Idempotent, and so retried on UNAVAILABLE: a
   * repeat changes nothing and resolves to `'already-released'` (which is
   * also what a retry answers when the reply to an earlier attempt was lost).
   * `'expired'` means the registry had already freed the slot at `expiresAt`;
   * the outcome is recorded all the same.
   *
   * @throws RegistryClientError NOT_FOUND for a reservation the registry does
   *   not know (never granted, ended long ago, or its worker was removed);
   *   INVALID_ARGUMENT for a durationMs that is not finite or outside 0..30 days.
   */
  async releaseWorker(reservationId: string, completion: TaskCompletion): Promise<ReleaseOutcome> {
    const response = await this.calls.unary("releaseWorker", {
      reservationId,
      success: completion.success,
      durationMs: completion.durationMs,
    });
    const outcome = releaseOutcomeName(response.outcome);
    if (outcome === undefined) {
      throw new RegistryClientError("releaseWorker", grpc.status.INTERNAL, `the registry answered an unknown release outcome ${response.outcome}`);
    }
    return outcome;
  }

  /**
   * Acquires a slot on the best matching worker, runs `task` with it, and
   * always releases the slot, recording the task's duration (measured with
   * the `clock` option) and `success` = the task did not throw. This is the
   * call most orchestrators should use.
   *
   * Resolves to the task's result; rejects with the task's own error (the
   * same object) if it threw. A failing release changes neither: it is
   * handed to `options.onReleaseError` (default: a process warning), and the
   * registry frees the slot at `expiresAt`.
   *
   * @param task - Gets the worker, ranked as `getWorkersForLoadBalancing`
   *   returns it, and the whole acquisition (reservation id, expiry).
   * @throws NoWorkerAvailableError when no worker can take the task (the task does not run).
   * @throws RegistryClientError if the acquisition fails otherwise (the task does not run).
   */
  async withWorker<T>(
    query: WorkerQuery,
    task: (worker: RankedWorkerInfo, acquisition: WorkerAcquisition) => T | Promise<T>,
    options: WithWorkerOptions = {},
  ): Promise<T> {
    return runWithWorker(this, this.clock, query, task, options);
  }

  /**
   * Watches worker events: an async iterable that reports each change to a
   * matching worker once, in revision order, from `options.startRevision`
   * (default: from now).
   *
   * It resumes by itself after a disconnect (registry restart, connection
   * lost, a watcher dropped for falling behind), from the last revision it
   * reported + 1, with jittered exponential backoff (`reconnectBaseMs` 500,
   * `reconnectMaxMs` 30000); `onReconnecting` reports each attempt. When the
   * registry no longer keeps that revision (its event log keeps about a
   * minute), it yields one `{ type: 'resync', revision, workers }` with the
   * matching workers listed again, and continues from `revision + 1`. The
   * listing is read a page at a time; a page may already show changes that
   * events after it report again, and applying each event's `worker` in order
   * converges on the registry's state.
   *
   * `options.signal` ends the iteration cleanly (no error), as does `close()`;
   * leaving a `for await` loop cancels the call. The registry packs up to
   * `eventsPerMessage` events (default 256; 1 for one per message) into a
   * message, and they are reported one at a time. Messages are read from the
   * network only as fast as their events are consumed: nothing piles up in
   * the client beyond the message being reported.
   * Events of a type this client does not know are skipped.
   *
   * Each call is one watch, to iterate once. For a connection that dies
   * without a word (no FIN, no RST), set client keepalive in `channelOptions`
   * (e.g. `'grpc.keepalive_time_ms': 30000`) so that the break is noticed.
   * After a long outage the channel's own reconnect backoff (grpc-js: up to
   * 120 s) can hold a resume back; `'grpc.max_reconnect_backoff_ms'` bounds it.
   *
   * @throws RangeError at once for an unknown health name, a
   *   `minAvailableCapacity` (not supported by watches), or options out of range.
   * @throws RegistryClientError from the iteration for what retrying would not
   *   cure: UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, INTERNAL, ...
   */
  watchWorkers(query: WorkerWatchQuery = {}, options: WatchWorkersOptions = {}): AsyncIterable<WorkerWatchEvent> {
    const filter = watchFilterOf(query);
    const stop = new AbortController();
    const compiled = compileWatchOptions(options, stop.signal);
    const transport = {
      currentRevision: async () => Number((await this.calls.unary("discoverWorkers", { filter, pageSize: 1, pageToken: "" })).revision),
      open: (startRevision: number, eventsPerMessage: number) => this.calls.openWatch(filter, startRevision, eventsPerMessage),
      list: () => listWorkers(this.calls, filter, this.discoverPageSize),
    };
    const watches = this.watches;
    const calls = this.calls;
    return (async function* () {
      const abort = () => stop.abort(options.signal?.reason);
      if (options.signal?.aborted || calls.closed) return;
      options.signal?.addEventListener("abort", abort, { once: true });
      watches.add(stop);
      try {
        yield* watchWorkerEvents(transport, compiled);
      } finally {
        watches.delete(stop);
        options.signal?.removeEventListener("abort", abort);
      }
    })();
  }

  /**
   * Takes a worker out of rotation: `getWorkersForLoadBalancing` and
   * `acquireWorker` skip it, while it keeps heartbeating, keeps its health,
   * and its running tasks and reservations finish normally. Resolves with the
   * worker after the call (`state: 'cordoned'`). Needs an orchestrator or
   * admin token. Cordoning a cordoned worker changes nothing, so the call is
   * retried on UNAVAILABLE.
   *
   * @throws RegistryClientError NOT_FOUND for an unknown worker;
   *   FAILED_PRECONDITION for a draining one (it stays draining);
   *   PERMISSION_DENIED for a token without the role.
   */
  async cordonWorker(workerId: string): Promise<WorkerInfo> {
    const response = await this.calls.unary("cordonWorker", { workerId });
    return workerOf("cordonWorker", response.worker);
  }

  /**
   * Puts a cordoned worker back in rotation (an active one stays active).
   * Resolves with the worker after the call (`state: 'active'`). Needs an
   * orchestrator or admin token. Retried on UNAVAILABLE, as a repeat changes
   * nothing.
   *
   * @throws RegistryClientError NOT_FOUND for an unknown worker;
   *   FAILED_PRECONDITION for a draining one (only its re-registration
   *   undoes a drain); PERMISSION_DENIED for a token without the role.
   */
  async uncordonWorker(workerId: string): Promise<WorkerInfo> {
    const response = await this.calls.unary("uncordonWorker", { workerId });
    return workerOf("uncordonWorker", response.worker);
  }

  /**
   * Takes a worker out of rotation for good: its heartbeat replies carry
   * `drainRequested` and the deadline (a `WorkerNode` then finishes its
   * running tasks and leaves), and the registry removes it once its tasks
   * and reservations reach zero (event `'unregistered'`, reason
   * `'drained'`), or at the deadline whatever it still runs (reason
   * `'drain-deadline'`). Resolves with the worker after the call (`state:
   * 'draining'`, `drainDeadline` set). Needs an orchestrator or admin token,
   * or the worker's own token for itself. Draining again keeps the earlier
   * deadline if it is sooner, so the call is retried on UNAVAILABLE (a retry
   * may then answer NOT_FOUND: the first attempt drained an idle worker,
   * which the registry removed at once).
   *
   * @throws RangeError for a `graceMs` that is not a finite number.
   * @throws RegistryClientError NOT_FOUND for an unknown worker;
   *   INVALID_ARGUMENT for a grace outside 1 s to 7 days; PERMISSION_DENIED
   *   for a token without the role, or another worker's token.
   */
  async drainWorker(workerId: string, options: DrainOptions = {}): Promise<WorkerInfo> {
    const { graceMs } = options;
    if (graceMs !== undefined && !Number.isFinite(graceMs)) {
      throw new RangeError(`graceMs must be a finite number of milliseconds, got ${graceMs}`);
    }
    const response = await this.calls.unary("drainWorker", {
      workerId,
      grace: graceMs === undefined ? undefined : durationFromMs(graceMs),
    });
    return workerOf("drainWorker", response.worker);
  }

  /**
   * Ends a pause of eviction now (needs an admin token): cleanup removes
   * expired workers again at its per-pass limit. Resolves to whether eviction
   * was paused, and the status after the call. Idempotent, and so retried on
   * UNAVAILABLE: a repeat changes nothing (a retry after a lost reply
   * answers `wasPaused: false`).
   */
  async resumeEviction(): Promise<{ wasPaused: boolean; eviction: EvictionInfo }> {
    const response = await this.calls.unary("resumeEviction", {});
    return { wasPaused: response.wasPaused, eviction: toEvictionInfo(response.eviction) };
  }

  /**
   * Opens a `HeartbeatStream` on the current address with this client's
   * metadata and no deadline; if it ends with UNAVAILABLE, later calls move
   * to another address.
   * Low level: `WorkerNode` drives it (one reply per heartbeat, reconnects,
   * re-registration). The caller must attach an `'error'` listener, as for
   * any grpc-js stream, and end or cancel the stream.
   *
   * `workerId` names the worker whose heartbeats the stream will carry, so
   * that its token is sent with the stream.
   *
   * @throws RegistryClientError CANCELLED if the client is closed, or the
   *   `callMetadata` hook's failure.
   */
  async openHeartbeatStream(workerId?: string): Promise<HeartbeatStream> {
    return (await this.calls.openHeartbeatStream(workerId)).stream;
  }

  /**
   * Does nothing. In the usage guide the registry runs in-process and cleans
   * up expired workers itself; here cleanup runs on the server. Kept so code
   * written against the guide runs unchanged.
   */
  startCleanup(): void {}

  /** Does nothing; see {@link WorkerRegistryClient.startCleanup}. */
  stopCleanup(): void {}

  /**
   * Closes the channel. Open watches end (their iteration finishes without an
   * error); other calls already running finish; later calls reject with
   * CANCELLED. Idempotent.
   */
  close(): void {
    for (const watch of this.watches) watch.abort();
    this.calls.close();
  }
}

function workerOf(method: string, worker: Worker | undefined): WorkerInfo {
  if (worker === undefined) {
    throw new RegistryClientError(method, grpc.status.INTERNAL, `${method} response carried no worker`);
  }
  return toWorkerInfo(worker);
}
