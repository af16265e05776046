import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { fullJitterDelayMs, type RandomSource } from "./backoff.js";
import {
  WorkerRegistryService,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import type { Worker, WorkerFilterSchema } from "./gen/sentinel/registry/v1/worker_pb.js";
import { grpcServiceDefinition } from "./grpc-definition.js";
import { RegistryClientError } from "./registry-client-error.js";
import {
  healthValue,
  toEvictionInfo,
  toRankedWorkerInfo,
  toRegistryStats,
  toWorkerInfo,
  type EvictionInfo,
  type RankedWorkerInfo,
  type RegistryStats,
  type WorkerInfo,
  type WorkerQuery,
  type WorkerRegistration,
} from "./worker-info.js";

/** Which call `callMetadata` is asked to decorate. */
export interface CallContext {
  /** The RPC's local name, e.g. `registerWorker` or `heartbeatStream`. */
  method: string;
  /** The full gRPC path, e.g. `/sentinel.registry.v1.WorkerRegistryService/RegisterWorker`. */
  path: string;
}

/**
 * Retries of idempotent reads (getWorker, discoverWorkers,
 * getWorkersForLoadBalancing, getRegistryStats) that fail with UNAVAILABLE.
 * Writes are never retried: a registration whose reply was lost may have
 * happened, and repeating it would create a second worker.
 */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. 1 disables retries. */
  maxAttempts?: number;
  /** Ceiling of the first backoff, in milliseconds. Default 100. */
  baseMs?: number;
  /** Largest backoff ceiling, in milliseconds. Default 2000. */
  maxMs?: number;
  /** Uniform source in [0, 1) for the jitter. Default `Math.random`. */
  random?: RandomSource;
  /** Waits between attempts. Default a `setTimeout` promise. */
  sleep?: (ms: number) => Promise<void>;
}

/** How to reach the registry. Every field is optional. */
export interface WorkerRegistryClientOptions {
  /** `host:port` of the registry. Default `'localhost:50051'`. */
  address?: string;
  /**
   * Channel credentials. Default `grpc.credentials.createInsecure()`. For TLS:
   * `grpc.credentials.createSsl(caPem)`, and for mutual TLS
   * `grpc.credentials.createSsl(caPem, keyPem, certPem)`.
   */
  credentials?: grpc.ChannelCredentials;
  /**
   * A role token from the registry's tokens file, sent as
   * `authorization: Bearer <token>` on every call. Calls that name a worker
   * this client registered send that worker's own token instead (see
   * {@link WorkerRegistryClient.workerToken}). Default: none.
   */
  token?: string;
  /**
   * Called before every call and every attempt of a retried call, so that
   * short-lived tokens can be attached fresh. Default: no metadata. A rejection
   * fails the call with that error wrapped in a RegistryClientError.
   */
  callMetadata?: (context: CallContext) => grpc.Metadata | undefined | Promise<grpc.Metadata | undefined>;
  /** Deadline of each unary attempt, in milliseconds. Default 5000. Heartbeat streams have none. */
  deadlineMs?: number;
  /** Retry policy for idempotent reads, or `false` for none. Default `{}` (the documented defaults). */
  retry?: RetryOptions | false;
  /** grpc-js channel options, e.g. keepalive settings or `grpc.channel_id`. Default `{}`. */
  channelOptions?: grpc.ChannelOptions;
  /** Page size `discoverWorkers` asks for while it follows page tokens. Default 1000, at most 10000. */
  discoverPageSize?: number;
}

/** Options of `getWorkersForLoadBalancing`. */
export interface LoadBalancingOptions {
  /** At most this many workers, best first. Default: the server's (100); at most 10000. */
  limit?: number;
}

/** The heartbeat stream as grpc-js hands it out: write requests, read replies. */
export type HeartbeatStream = grpc.ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>;

interface CompiledRetryOptions {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  random: RandomSource;
  sleep: (ms: number) => Promise<void>;
}

type Methods = typeof WorkerRegistryService.method;
type MethodName = keyof Methods;
type InputOf<K extends MethodName> = Methods[K]["input"];
type OutputOf<K extends MethodName> = MessageShape<Methods[K]["output"]>;

const IDEMPOTENT_READS: ReadonlySet<MethodName> = new Set([
  "getWorker",
  "discoverWorkers",
  "getWorkersForLoadBalancing",
  "getRegistryStats",
]);

const definition = grpcServiceDefinition(WorkerRegistryService);

const ServiceClient = grpc.makeGenericClientConstructor(definition, "WorkerRegistryService");

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
 * One instance is one channel (one HTTP/2 connection); share it. Call
 * `close()` when done so the process can exit.
 */
export class WorkerRegistryClient {
  /** The `host:port` this client talks to. */
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly deadlineMs: number;
  private readonly retry: CompiledRetryOptions;
  private readonly callMetadata: WorkerRegistryClientOptions["callMetadata"];
  private readonly token: string | undefined;
  /** The tokens of the workers this client registered, by worker id. */
  private readonly workerTokens = new Map<string, string>();
  private readonly discoverPageSize: number;
  private closed = false;

  /**
   * Creates the channel; it connects lazily, on the first call.
   *
   * @throws RangeError if `deadlineMs`, `discoverPageSize` or a retry field is out of range.
   */
  constructor(options: WorkerRegistryClientOptions = {}) {
    this.address = options.address ?? "localhost:50051";
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.discoverPageSize = options.discoverPageSize ?? 1000;
    this.callMetadata = options.callMetadata;
    this.token = options.token;
    this.retry = compileRetry(options.retry);
    if (!(this.deadlineMs > 0)) {
      throw new RangeError(`deadlineMs must be > 0, got ${this.deadlineMs}`);
    }
    if (!Number.isInteger(this.discoverPageSize) || this.discoverPageSize < 1 || this.discoverPageSize > 10_000) {
      throw new RangeError(`discoverPageSize must be an integer from 1 to 10000, got ${this.discoverPageSize}`);
    }
    this.client = new ServiceClient(
      this.address,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
  }

  /**
   * Registers a worker and returns it with its new id. Not retried.
   *
   * @throws RegistryClientError INVALID_ARGUMENT naming the field that breaks its rule.
   */
  async registerWorker(registration: WorkerRegistration): Promise<WorkerInfo> {
    const response = await this.unary("registerWorker", {
      nodeId: registration.nodeId,
      capabilities: [...registration.capabilities],
      maxConcurrentTasks: registration.maxConcurrentTasks,
    });
    const worker = workerOf("registerWorker", response.worker);
    if (response.workerToken !== "") this.workerTokens.set(worker.id, response.workerToken);
    return worker;
  }

  /**
   * The token the registry issued to a worker this client registered, or
   * undefined. It proves to the registry that a call comes from that worker
   * and acts on no other; the registry itself keeps only its hash.
   */
  workerToken(workerId: string): string | undefined {
    return this.workerTokens.get(workerId);
  }

  /**
   * Removes a worker at once. Not retried.
   *
   * @throws RegistryClientError NOT_FOUND if no such worker is registered.
   */
  async unregisterWorker(workerId: string): Promise<void> {
    await this.unary("unregisterWorker", { workerId });
    this.workerTokens.delete(workerId);
  }

  /**
   * Marks a worker alive now (one unary call; `WorkerNode` uses the stream
   * instead). Not retried.
   *
   * @throws RegistryClientError NOT_FOUND if the worker was unregistered or cleaned up: re-register.
   */
  async heartbeat(workerId: string): Promise<WorkerInfo> {
    const response = await this.unary("heartbeat", { workerId });
    return workerOf("heartbeat", response.worker);
  }

  /**
   * Adds `delta` to the worker's current task count (+1 when a task is
   * assigned, -1 when it ends). Not retried: a repeat would count twice.
   *
   * @throws RegistryClientError FAILED_PRECONDITION if the count would leave 0..maxConcurrentTasks
   *   (nothing changes); NOT_FOUND for an unknown worker.
   */
  async updateTaskCount(workerId: string, delta: number): Promise<WorkerInfo> {
    const response = await this.unary("updateTaskCount", { workerId, delta });
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
    const response = await this.unary("recordTaskCompletion", { workerId, success, durationMs });
    return workerOf("recordTaskCompletion", response.worker);
  }

  /**
   * Returns one worker. Retried on UNAVAILABLE.
   *
   * @throws RegistryClientError NOT_FOUND for an unknown worker.
   */
  async getWorker(workerId: string): Promise<WorkerInfo> {
    const response = await this.unary("getWorker", { workerId });
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
    const filter = filterOf(query);
    const workers: WorkerInfo[] = [];
    let pageToken = "";
    do {
      const page = await this.unary("discoverWorkers", { filter, pageSize: this.discoverPageSize, pageToken });
      for (const worker of page.workers) {
        workers.push(toWorkerInfo(worker));
      }
      // A server that hands back the token it was given would loop us forever.
      if (page.nextPageToken !== "" && page.nextPageToken === pageToken) {
        throw new RegistryClientError("discoverWorkers", grpc.status.INTERNAL, `the registry repeated page token ${JSON.stringify(pageToken)}`);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return workers;
  }

  /**
   * The matching workers ranked for load balancing: healthy before degraded,
   * then highest `priority` first. Without a health filter the server
   * considers healthy and degraded workers. Retried on UNAVAILABLE.
   *
   * @throws RangeError for an unknown health name.
   */
  async getWorkersForLoadBalancing(query: WorkerQuery = {}, options: LoadBalancingOptions = {}): Promise<RankedWorkerInfo[]> {
    const response = await this.unary("getWorkersForLoadBalancing", {
      filter: filterOf(query),
      limit: options.limit ?? 0,
    });
    return response.workers.map(toRankedWorkerInfo);
  }

  /** Counts by health, capacity and completion totals of the whole fleet. Retried on UNAVAILABLE. */
  async getRegistryStats(): Promise<RegistryStats> {
    return toRegistryStats(await this.unary("getRegistryStats", {}));
  }

  /**
   * Ends a pause of eviction now (needs an admin token): cleanup removes
   * expired workers again at its per-pass limit. Resolves to whether eviction
   * was paused, and the status after the call.
   */
  async resumeEviction(): Promise<{ wasPaused: boolean; eviction: EvictionInfo }> {
    const response = await this.unary("resumeEviction", {});
    return { wasPaused: response.wasPaused, eviction: toEvictionInfo(response.eviction) };
  }

  /**
   * Opens a `HeartbeatStream` with this client's metadata and no deadline.
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
    const method = definition.heartbeatStream;
    if (method === undefined) {
      throw new RegistryClientError("heartbeatStream", grpc.status.UNIMPLEMENTED, "heartbeatStream is not in the contract");
    }
    const metadata = await this.metadataFor("heartbeatStream", method.path, workerId);
    this.assertOpen("heartbeatStream");
    try {
      return this.client.makeBidiStreamRequest<HeartbeatStreamRequest, HeartbeatStreamResponse>(
        method.path,
        method.requestSerialize as (value: HeartbeatStreamRequest) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => HeartbeatStreamResponse,
        metadata,
        {},
      );
    } catch (error) {
      throw RegistryClientError.from("heartbeatStream", error);
    }
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
   * Closes the channel. Calls already running finish; later calls reject with
   * CANCELLED. Idempotent.
   */
  close(): void {
    if (!this.closed) {
      this.closed = true;
      this.client.close();
    }
  }

  private async unary<K extends MethodName>(name: K, init: MessageInitShape<InputOf<K>>): Promise<OutputOf<K>> {
    const method = definition[name];
    if (method === undefined) {
      throw new RegistryClientError(name, grpc.status.UNIMPLEMENTED, `${name} is not in the contract`);
    }
    const schema: DescMessage = WorkerRegistryService.method[name].input;
    const request = create(schema, init as MessageInitShape<DescMessage>);
    const maxAttempts = IDEMPOTENT_READS.has(name) ? this.retry.maxAttempts : 1;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return (await this.attempt(name, method, request, (init as { workerId?: string }).workerId)) as OutputOf<K>;
      } catch (error) {
        const failure = RegistryClientError.from(name, error);
        if (failure.code !== grpc.status.UNAVAILABLE || attempt + 1 >= maxAttempts || this.closed) {
          throw failure;
        }
        await this.retry.sleep(
          fullJitterDelayMs(attempt, { baseMs: this.retry.baseMs, maxMs: this.retry.maxMs }, this.retry.random),
        );
      }
    }
  }

  private async attempt(
    name: string,
    method: grpc.MethodDefinition<unknown, unknown>,
    request: unknown,
    workerId: string | undefined,
  ): Promise<unknown> {
    const metadata = await this.metadataFor(name, method.path, workerId);
    this.assertOpen(name);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + this.deadlineMs },
        (error, response) => (error ? reject(error) : resolve(response)),
      );
    });
  }

  private async metadataFor(method: string, path: string, workerId?: string): Promise<grpc.Metadata> {
    let metadata: grpc.Metadata;
    try {
      // Cloned because grpc-js may add headers to the object it is given.
      metadata = (await this.callMetadata?.({ method, path }))?.clone() ?? new grpc.Metadata();
    } catch (error) {
      throw RegistryClientError.from(method, error);
    }
    const token = (workerId === undefined ? undefined : this.workerTokens.get(workerId)) ?? this.token;
    if (token !== undefined && metadata.get("authorization").length === 0) metadata.set("authorization", `Bearer ${token}`);
    return metadata;
  }

  private assertOpen(method: string): void {
    if (this.closed) {
      throw new RegistryClientError(method, grpc.status.CANCELLED, "WorkerRegistryClient is closed");
    }
  }
}

function compileRetry(retry: RetryOptions | false | undefined): CompiledRetryOptions {
  const options = retry === false ? { maxAttempts: 1 } : (retry ?? {});
  const compiled: CompiledRetryOptions = {
    maxAttempts: options.maxAttempts ?? 4,
    baseMs: options.baseMs ?? 100,
    maxMs: options.maxMs ?? 2000,
    random: options.random ?? Math.random,
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
  };
  if (!Number.isInteger(compiled.maxAttempts) || compiled.maxAttempts < 1) {
    throw new RangeError(`retry.maxAttempts must be an integer >= 1, got ${compiled.maxAttempts}`);
  }
  if (!(compiled.baseMs >= 0) || !(compiled.maxMs >= compiled.baseMs)) {
    throw new RangeError(`retry must satisfy 0 <= baseMs <= maxMs, got baseMs=${compiled.baseMs} maxMs=${compiled.maxMs}`);
  }
  return compiled;
}

function filterOf(query: WorkerQuery): MessageInitShape<typeof WorkerFilterSchema> {
  return {
    capabilities: [...(query.capabilities ?? [])],
    healthStatuses: (query.healthStatus ?? []).map(healthValue),
    minAvailableCapacity: query.minAvailableCapacity ?? 0,
  };
}

function workerOf(method: string, worker: Worker | undefined): WorkerInfo {
  if (worker === undefined) {
    throw new RegistryClientError(method, grpc.status.INTERNAL, `${method} response carried no worker`);
  }
  return toWorkerInfo(worker);
}
