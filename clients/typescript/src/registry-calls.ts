import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AddressPool, compileAddresses } from "./address-pool.js";
import { fullJitterDelayMs } from "./backoff.js";
import { compileRetry, type CompiledRetryOptions, type WorkerRegistryClientOptions } from "./client-options.js";
import {
  WatchWorkersRequestSchema,
  WorkerRegistryService,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
  type WatchWorkersRequest,
  type WatchWorkersResponse,
  type WorkerEvent,
} from "./gen/sentinel/registry/v1/registry_service_pb.js";
import type { WorkerFilterSchema } from "./gen/sentinel/registry/v1/worker_pb.js";
import { grpcServiceDefinition } from "./grpc-definition.js";
import { RegistryClientError } from "./registry-client-error.js";
import { eventsOfResponse, type WatchCall } from "./worker-watch.js";

/** The heartbeat stream as grpc-js hands it out: write requests, read replies. */
export type HeartbeatStream = grpc.ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>;

type Methods = typeof WorkerRegistryService.method;
/** The local name of an RPC of the contract, e.g. `registerWorker`. */
export type MethodName = keyof Methods;
type InputOf<K extends MethodName> = Methods[K]["input"];
/** The response message of an RPC. */
export type OutputOf<K extends MethodName> = MessageShape<Methods[K]["output"]>;
/** A WorkerFilter in its init shape. */
export type FilterInit = MessageInitShape<typeof WorkerFilterSchema>;

/** Calls that may be repeated without changing the outcome: retried on UNAVAILABLE. */
const RETRIED: ReadonlySet<MethodName> = new Set([
  "getWorker",
  "discoverWorkers",
  "getWorkersForLoadBalancing",
  "getRegistryStats",
  "releaseWorker",
  "resumeEviction",
  "cordonWorker",
  "uncordonWorker",
  "drainWorker",
]);

/**
 * Codes that speak of the replica or the way to it rather than of the
 * request: the connection failed or was lost, the replica is shutting down or
 * cannot write (UNAVAILABLE), or it did not answer in time
 * (DEADLINE_EXCEEDED: a hung process, a half-open connection). After one of
 * them, calls move to another address. Streams never carry a deadline, so
 * for them only UNAVAILABLE counts; WorkerNode reports its own reply timeout.
 */
const REPLICA_FAILURES: ReadonlySet<grpc.status> = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);

const definition = grpcServiceDefinition(WorkerRegistryService);

const ServiceClient = grpc.makeGenericClientConstructor(definition, "WorkerRegistryService");

/** A stream, and the address it was opened on. */
export interface OpenedStream<T> {
  readonly stream: T;
  readonly address: string;
}

/**
 * The wire under `WorkerRegistryClient`: a grpc-js channel per address, made
 * on first use, and every call made on the current one (see
 * {@link AddressPool}) with the caller's metadata and the right token. Unary
 * calls get a deadline per attempt, and the idempotent ones are retried on
 * UNAVAILABLE with full-jitter backoff; a failure of the replica moves later
 * calls, retries and streams to another address. The two streams get no
 * deadline. Knows nothing of result shapes: it speaks protobuf messages.
 */
export class RegistryCalls {
  private readonly pool: AddressPool;
  private readonly channels = new Map<string, grpc.Client>();
  private readonly credentials: grpc.ChannelCredentials;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly deadlineMs: number;
  private readonly retry: CompiledRetryOptions;
  private readonly callMetadata: WorkerRegistryClientOptions["callMetadata"];
  private readonly token: string | undefined;
  /** The tokens of the workers registered through this client, by worker id: every replica accepts them. */
  private readonly workerTokens = new Map<string, string>();
  private isClosed = false;

  /**
   * Checks the options; channels connect lazily, on their first call.
   *
   * @throws RangeError if `deadlineMs`, a retry field or the addresses break their rules.
   */
  constructor(options: WorkerRegistryClientOptions) {
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.callMetadata = options.callMetadata;
    this.token = options.token;
    if (!(this.deadlineMs > 0)) {
      throw new RangeError(`deadlineMs must be > 0, got ${this.deadlineMs}`);
    }
    const order = options.addressOrder ?? "shuffled";
    if (order !== "shuffled" && order !== "as-given") {
      throw new RangeError(`addressOrder must be 'shuffled' or 'as-given', got ${JSON.stringify(order)}`);
    }
    this.pool = new AddressPool(compileAddresses(options), order, options.random ?? Math.random);
    this.retry = compileRetry(options.retry, this.pool.addresses.length);
    this.credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.channelOptions = options.channelOptions ?? {};
  }

  /** The address calls go to now. */
  get address(): string {
    return this.pool.current;
  }

  /** Every address, in the order the client fails over between them. */
  get addresses(): readonly string[] {
    return this.pool.addresses;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** The token a worker was issued at registration, if it registered through this channel. */
  workerToken(workerId: string): string | undefined {
    return this.workerTokens.get(workerId);
  }

  /** Remembers a worker's token: later calls that name the worker send it. */
  rememberWorkerToken(workerId: string, token: string): void {
    if (token !== "") this.workerTokens.set(workerId, token);
  }

  /** Forgets a worker's token (the worker is gone). */
  forgetWorkerToken(workerId: string): void {
    this.workerTokens.delete(workerId);
  }

  /**
   * One unary call to the current address; a request that names a `workerId`
   * carries that worker's token when it is known. A replica failure
   * (UNAVAILABLE, DEADLINE_EXCEEDED) moves later calls to another address.
   * Retried on UNAVAILABLE for the calls in {@link RETRIED}, each retry on the
   * address of the moment, never after close().
   *
   * @throws RegistryClientError with the final status.
   */
  async unary<K extends MethodName>(name: K, init: MessageInitShape<InputOf<K>>): Promise<OutputOf<K>> {
    const method = this.method(name);
    const schema: DescMessage = WorkerRegistryService.method[name].input;
    const request = create(schema, init as MessageInitShape<DescMessage>);
    const maxAttempts = RETRIED.has(name) ? this.retry.maxAttempts : 1;
    for (let attempt = 0; ; attempt += 1) {
      const address = this.pool.current;
      try {
        return (await this.attempt(name, method, request, address, (init as { workerId?: string }).workerId)) as OutputOf<K>;
      } catch (error) {
        const failure = RegistryClientError.from(name, error);
        this.reportFailure(address, failure.code);
        if (failure.code !== grpc.status.UNAVAILABLE || attempt + 1 >= maxAttempts || this.isClosed) {
          throw failure;
        }
        await this.retry.sleep(
          fullJitterDelayMs(attempt, { baseMs: this.retry.baseMs, maxMs: this.retry.maxMs }, this.retry.random),
        );
      }
    }
  }

  /**
   * Opens a HeartbeatStream on the current address, with no deadline,
   * carrying `workerId`'s token when it is known. If the stream ends with
   * UNAVAILABLE, later calls move to another address.
   *
   * @throws RegistryClientError CANCELLED after close(), or the `callMetadata` hook's failure.
   */
  async openHeartbeatStream(workerId?: string): Promise<OpenedStream<HeartbeatStream>> {
    const method = this.method("heartbeatStream");
    const address = this.pool.current;
    const metadata = await this.metadataFor("heartbeatStream", method.path, address, workerId);
    this.assertOpen("heartbeatStream");
    let stream: HeartbeatStream;
    try {
      stream = this.channel(address).makeBidiStreamRequest<HeartbeatStreamRequest, HeartbeatStreamResponse>(
        method.path,
        method.requestSerialize as (value: HeartbeatStreamRequest) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => HeartbeatStreamResponse,
        metadata,
        {},
      );
    } catch (error) {
      throw RegistryClientError.from("heartbeatStream", error);
    }
    stream.on("status", (finalStatus: grpc.StatusObject) => this.reportFailure(address, finalStatus.code));
    return { stream, address };
  }

  /**
   * Opens one WatchWorkers call from `startRevision` on the current address,
   * with no deadline, asking for up to `eventsPerMessage` events per message
   * (1: one per message); its events come out one at a time either way. If it ends with UNAVAILABLE, later calls move to
   * another address: every replica serves the same revisions, so the watch
   * resumes there.
   *
   * @throws RegistryClientError CANCELLED after close(), or the `callMetadata` hook's failure.
   */
  async openWatch(filter: FilterInit, startRevision: number, eventsPerMessage: number): Promise<WatchCall> {
    const method = this.method("watchWorkers");
    const address = this.pool.current;
    const metadata = await this.metadataFor("watchWorkers", method.path, address);
    this.assertOpen("watchWorkers");
    let call: grpc.ClientReadableStream<WatchWorkersResponse>;
    try {
      call = this.channel(address).makeServerStreamRequest<WatchWorkersRequest, WatchWorkersResponse>(
        method.path,
        method.requestSerialize as (value: WatchWorkersRequest) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => WatchWorkersResponse,
        create(WatchWorkersRequestSchema, { filter, startRevision: BigInt(startRevision), maxEventsPerMessage: eventsPerMessage }),
        metadata,
        {},
      );
    } catch (error) {
      throw RegistryClientError.from("watchWorkers", error);
    }
    // The reader below sees every failure through the stream; this listener
    // keeps a status that arrives after the reader stopped (the cancel of a
    // loop the consumer left) from becoming an unhandled 'error' event.
    call.on("error", () => {});
    call.on("status", (finalStatus: grpc.StatusObject) => this.reportFailure(address, finalStatus.code));
    return { events: watchEventsOf(call), cancel: () => call.cancel() };
  }

  /**
   * Takes note that a call to `address` ended with `code`. A replica failure
   * (UNAVAILABLE, DEADLINE_EXCEEDED) moves later calls to another address, if
   * `address` is still the current one; other codes change nothing. Used by
   * WorkerNode for the heartbeat replies it stopped waiting for.
   */
  reportFailure(address: string, code: grpc.status): void {
    if (this.isClosed || !REPLICA_FAILURES.has(code)) {
      return;
    }
    const next = this.pool.reportFailure(address);
    if (next !== undefined) {
      this.refreshIfFailing(next);
    }
  }

  /** Closes every channel. Calls already running finish; later calls reject with CANCELLED. Idempotent. */
  close(): void {
    if (!this.isClosed) {
      this.isClosed = true;
      for (const client of this.channels.values()) client.close();
    }
  }

  private channel(address: string): grpc.Client {
    let client = this.channels.get(address);
    if (client === undefined) {
      client = new ServiceClient(address, this.credentials, this.channelOptions);
      this.channels.set(address, client);
    }
    return client;
  }

  /**
   * A channel that failed before waits out grpc-js's reconnect backoff (up to
   * 120 s) and fails every call at once meanwhile, even when its replica is
   * back. The client turns to an address only once the one it used failed,
   * so that address gets a fresh channel (with its own subchannels: the
   * process-wide pool would hand back the one in backoff) and is tried now.
   * A channel in TRANSIENT_FAILURE carries no call, so nothing is cut off.
   */
  private refreshIfFailing(address: string): void {
    const client = this.channels.get(address);
    if (client === undefined || client.getChannel().getConnectivityState(false) !== grpc.connectivityState.TRANSIENT_FAILURE) {
      return;
    }
    client.close();
    this.channels.set(
      address,
      new ServiceClient(address, this.credentials, { ...this.channelOptions, "grpc.use_local_subchannel_pool": 1 }),
    );
  }

  private method(name: MethodName): grpc.MethodDefinition<unknown, unknown> {
    const method = definition[name];
    if (method === undefined) {
      throw new RegistryClientError(name, grpc.status.UNIMPLEMENTED, `${name} is not in the contract`);
    }
    return method;
  }

  private async attempt(
    name: string,
    method: grpc.MethodDefinition<unknown, unknown>,
    request: unknown,
    address: string,
    workerId: string | undefined,
  ): Promise<unknown> {
    const metadata = await this.metadataFor(name, method.path, address, workerId);
    this.assertOpen(name);
    return new Promise((resolve, reject) => {
      this.channel(address).makeUnaryRequest(
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

  private async metadataFor(method: string, path: string, address: string, workerId?: string): Promise<grpc.Metadata> {
    let metadata: grpc.Metadata;
    try {
      // Cloned because grpc-js may add headers to the object it is given.
      metadata = (await this.callMetadata?.({ method, path, address }))?.clone() ?? new grpc.Metadata();
    } catch (error) {
      throw RegistryClientError.from(method, error);
    }
    const token = (workerId === undefined ? undefined : this.workerTokens.get(workerId)) ?? this.token;
    if (token !== undefined && metadata.get("authorization").length === 0) metadata.set("authorization", `Bearer ${token}`);
    return metadata;
  }

  private assertOpen(method: string): void {
    if (this.isClosed) {
      throw new RegistryClientError(method, grpc.status.CANCELLED, "WorkerRegistryClient is closed");
    }
  }
}

/**
 * Reads a WatchWorkers stream one message at a time and hands out its events
 * one at a time (the stream's own small buffer and the message being handed
 * out are all that is held).
 */
async function* watchEventsOf(call: grpc.ClientReadableStream<WatchWorkersResponse>): AsyncGenerator<WorkerEvent, void, undefined> {
  try {
    for await (const response of call as AsyncIterable<WatchWorkersResponse>) yield* eventsOfResponse(response);
  } catch (error) {
    throw RegistryClientError.from("watchWorkers", error);
  }
}
