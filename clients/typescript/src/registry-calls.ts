import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
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
import type { WatchCall } from "./worker-watch.js";

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
]);

const definition = grpcServiceDefinition(WorkerRegistryService);

const ServiceClient = grpc.makeGenericClientConstructor(definition, "WorkerRegistryService");

/**
 * The wire under `WorkerRegistryClient`: one grpc-js channel, and every call
 * made on it with the caller's metadata and the right token. Unary calls get
 * a deadline per attempt, and the idempotent ones are retried on UNAVAILABLE
 * with full-jitter backoff; the two streams get no deadline. Knows nothing of
 * result shapes: it speaks protobuf messages.
 */
export class RegistryCalls {
  /** The `host:port` of the registry. */
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly deadlineMs: number;
  private readonly retry: CompiledRetryOptions;
  private readonly callMetadata: WorkerRegistryClientOptions["callMetadata"];
  private readonly token: string | undefined;
  /** The tokens of the workers registered through this channel, by worker id. */
  private readonly workerTokens = new Map<string, string>();
  private isClosed = false;

  /**
   * Creates the channel; it connects lazily, on the first call.
   *
   * @throws RangeError if `deadlineMs` or a retry field is out of range.
   */
  constructor(options: WorkerRegistryClientOptions) {
    this.address = options.address ?? "localhost:50051";
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.callMetadata = options.callMetadata;
    this.token = options.token;
    this.retry = compileRetry(options.retry);
    if (!(this.deadlineMs > 0)) {
      throw new RangeError(`deadlineMs must be > 0, got ${this.deadlineMs}`);
    }
    this.client = new ServiceClient(
      this.address,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
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
   * One unary call; a request that names a `workerId` carries that worker's
   * token when it is known. Retried on UNAVAILABLE for the calls in
   * {@link RETRIED}, never after close().
   *
   * @throws RegistryClientError with the final status.
   */
  async unary<K extends MethodName>(name: K, init: MessageInitShape<InputOf<K>>): Promise<OutputOf<K>> {
    const method = this.method(name);
    const schema: DescMessage = WorkerRegistryService.method[name].input;
    const request = create(schema, init as MessageInitShape<DescMessage>);
    const maxAttempts = RETRIED.has(name) ? this.retry.maxAttempts : 1;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return (await this.attempt(name, method, request, (init as { workerId?: string }).workerId)) as OutputOf<K>;
      } catch (error) {
        const failure = RegistryClientError.from(name, error);
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
   * Opens a HeartbeatStream with no deadline, carrying `workerId`'s token
   * when it is known.
   *
   * @throws RegistryClientError CANCELLED after close(), or the `callMetadata` hook's failure.
   */
  async openHeartbeatStream(workerId?: string): Promise<HeartbeatStream> {
    const method = this.method("heartbeatStream");
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
   * Opens one WatchWorkers call from `startRevision`, with no deadline.
   *
   * @throws RegistryClientError CANCELLED after close(), or the `callMetadata` hook's failure.
   */
  async openWatch(filter: FilterInit, startRevision: number): Promise<WatchCall> {
    const method = this.method("watchWorkers");
    const metadata = await this.metadataFor("watchWorkers", method.path);
    this.assertOpen("watchWorkers");
    let call: grpc.ClientReadableStream<WatchWorkersResponse>;
    try {
      call = this.client.makeServerStreamRequest<WatchWorkersRequest, WatchWorkersResponse>(
        method.path,
        method.requestSerialize as (value: WatchWorkersRequest) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => WatchWorkersResponse,
        create(WatchWorkersRequestSchema, { filter, startRevision: BigInt(startRevision) }),
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
    return { events: watchEventsOf(call), cancel: () => call.cancel() };
  }

  /** Closes the channel. Calls already running finish; later calls reject with CANCELLED. Idempotent. */
  close(): void {
    if (!this.isClosed) {
      this.isClosed = true;
      this.client.close();
    }
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
    if (this.isClosed) {
      throw new RegistryClientError(method, grpc.status.CANCELLED, "WorkerRegistryClient is closed");
    }
  }
}

/** Reads a WatchWorkers stream one message at a time (the stream's own small buffer is all that is held). */
async function* watchEventsOf(call: grpc.ClientReadableStream<WatchWorkersResponse>): AsyncGenerator<WorkerEvent, void, undefined> {
  try {
    for await (const response of call as AsyncIterable<WatchWorkersResponse>) {
      if (response.event !== undefined) yield response.event;
    }
  } catch (error) {
    throw RegistryClientError.from("watchWorkers", error);
  }
}
