import type * as grpc from "@grpc/grpc-js";
import type { AddressOrder } from "./address-pool.js";
import type { RandomSource } from "./backoff.js";
import type { RegistryClientError } from "./registry-client-error.js";
import type { WorkerAcquisition } from "./worker-info.js";

/** Which call `callMetadata` is asked to decorate. */
export interface CallContext {
  /** The RPC's local name, e.g. `registerWorker` or `heartbeatStream`. */
  method: string;
  /** The full gRPC path, e.g. `/sentinel.registry.v1.WorkerRegistryService/RegisterWorker`. */
  path: string;
  /** The address (one of the client's `addresses`, or its `address`) this call or attempt goes to. */
  address: string;
}

/**
 * Retries of idempotent calls (the reads getWorker, discoverWorkers,
 * getWorkersForLoadBalancing and getRegistryStats, and releaseWorker,
 * resumeEviction, cordonWorker, uncordonWorker and drainWorker, which the
 * registry makes idempotent) that fail with
 * UNAVAILABLE; with several addresses, each retry goes to the address the
 * client has moved on to. Other writes are never retried: a registration or
 * an acquisition whose reply was lost may have happened, and repeating it
 * would create a second worker or take a second slot.
 */
export interface RetryOptions {
  /**
   * Attempts in all, the first included. Default 4, or the number of
   * `addresses` when there are more, so that a retried call tries every
   * replica. 1 disables retries.
   */
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
  /**
   * The registry: `host:port`, or any gRPC target, passed to grpc-js as it is.
   * A target that names several replicas (`dns:///registry.internal:50051`,
   * `ipv4:10.0.0.1:50051,10.0.0.2:50051`) is one channel on which grpc-js's
   * `pick_first` fails over among the resolved addresses. Default
   * `'localhost:50051'`. Not together with `addresses`.
   */
  address?: string;
  /**
   * Several replicas of one registry, each a `host:port` or gRPC target: one
   * channel each, and calls stick to one of them while it works. A call that
   * fails with UNAVAILABLE or DEADLINE_EXCEEDED moves later calls to another
   * address; idempotent calls are retried there (see `retry`), other writes
   * fail as they would with one address. Streams reopen on the address the
   * client has moved to. Default: `[address]`. Not together with `address`.
   *
   * @throws RangeError (from the constructor) for an empty list, an empty or
   *   repeated entry, or an entry that is itself a comma-separated list (see
   *   `parseAddressList` for text such as `REGISTRY_ADDRESS`).
   */
  addresses?: string[];
  /** Which of `addresses` to use first, and in what order to fail over: see {@link AddressOrder}. Default `'shuffled'`. */
  addressOrder?: AddressOrder;
  /** Uniform source in [0, 1) for the `'shuffled'` address order. Default `Math.random`. */
  random?: RandomSource;
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
   * `WorkerRegistryClient.workerToken`). Default: none.
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
  /** Monotonic milliseconds, used to measure the tasks `withWorker` runs. Default `performance.now`. */
  clock?: () => number;
}

/** Options of `withWorker`. */
export interface WithWorkerOptions {
  /**
   * Called when the release that ends `withWorker` fails (after its retries),
   * with the release's error and the acquisition. The slot is then freed by
   * the registry at `acquisition.expiresAt`, and `withWorker` still returns
   * the task's result or rethrows the task's own error. Default: a process
   * warning (`process.emitWarning`) naming the reservation.
   */
  onReleaseError?: (error: RegistryClientError, acquisition: WorkerAcquisition) => void;
}

/** Options of `drainWorker`. */
export interface DrainOptions {
  /**
   * How long the worker has to finish its tasks before the registry removes
   * it anyway, in milliseconds: at least 1 s, at most 7 days. Default: the
   * registry's, 10 minutes.
   */
  graceMs?: number;
}

/** Options of `getWorkersForLoadBalancing`. */
export interface LoadBalancingOptions {
  /** At most this many workers, best first. Default: the server's (100); at most 10000. */
  limit?: number;
}

/** {@link RetryOptions} with every default applied. */
export interface CompiledRetryOptions {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  random: RandomSource;
  sleep: (ms: number) => Promise<void>;
}

/**
 * Fills in and checks the retry policy once, for a client of `addressCount` addresses.
 *
 * @throws RangeError for maxAttempts below 1 or baseMs/maxMs out of order.
 */
export function compileRetry(retry: RetryOptions | false | undefined, addressCount = 1): CompiledRetryOptions {
  const options = retry === false ? { maxAttempts: 1 } : (retry ?? {});
  const compiled: CompiledRetryOptions = {
    maxAttempts: options.maxAttempts ?? Math.max(4, addressCount),
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
