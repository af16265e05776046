import type * as grpc from "@grpc/grpc-js";
import type { RandomSource } from "./backoff.js";
import type { RegistryClientError } from "./registry-client-error.js";
import type { WorkerAcquisition } from "./worker-info.js";

/** Which call `callMetadata` is asked to decorate. */
export interface CallContext {
  /** The RPC's local name, e.g. `registerWorker` or `heartbeatStream`. */
  method: string;
  /** The full gRPC path, e.g. `/sentinel.registry.v1.WorkerRegistryService/RegisterWorker`. */
  path: string;
}

/**
 * Retries of idempotent calls (the reads getWorker, discoverWorkers,
 * getWorkersForLoadBalancing and getRegistryStats, and releaseWorker, which
 * the registry makes idempotent) that fail with UNAVAILABLE. Other writes are
 * never retried: a registration or an acquisition whose reply was lost may
 * have happened, and repeating it would create a second worker or take a
 * second slot.
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
 * Fills in and checks the retry policy once.
 *
 * @throws RangeError for maxAttempts below 1 or baseMs/maxMs out of order.
 */
export function compileRetry(retry: RetryOptions | false | undefined): CompiledRetryOptions {
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
