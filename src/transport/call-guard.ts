import type { Metadata } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import { LimitExceededError } from "../domain/errors.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import { authorize, mayEver, type Operation } from "../security/access-policy.js";
import type { Authenticator } from "../security/authenticator.js";
import type { Principal } from "../security/roles.js";

/** The per-call limits the guard enforces. */
export interface CallLimits {
  /** Open heartbeat and watch streams on one connection. */
  readonly maxStreamsPerConnection: number;
  /** Open heartbeat and watch streams on the whole server. */
  readonly maxStreams: number;
  /** Open WatchWorkers streams. */
  readonly maxWatchers: number;
  /** Sustained RegisterWorker calls per second from one peer address (a token bucket that holds one second's worth). */
  readonly registrationsPerSecondPerPeer: number;
}

interface Bucket {
  tokens: number;
  refilledAtMs: number;
}

/**
 * What every call passes before it reaches the registry: who is calling
 * (authentication), whether they may (the access policy), and whether a
 * limit is reached. One place, so no handler can forget a check.
 */
export class CallGuard {
  private readonly streamsByConnection = new Map<string, number>();
  private streams = 0;
  private watchers = 0;
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly authenticator: Authenticator,
    private readonly registry: WorkerRegistry,
    private readonly clock: Clock,
    private readonly limits: CallLimits,
  ) {}

  /** @throws UnauthenticatedError when authentication is on and the call has no valid token. */
  principal(metadata: Metadata): Principal {
    return this.authenticator.authenticate(metadata.get("authorization"));
  }

  /** @throws PermissionDeniedError. `workerId` is the worker the call names, if any. */
  authorize(principal: Principal, operation: Operation, workerId?: string): void {
    authorize(principal, operation, workerId === undefined ? undefined : { workerId, registeredBy: this.registry.registrantOf(workerId) });
  }

  /** @throws PermissionDeniedError unless the principal may do `operation` to some worker. */
  authorizeAny(principal: Principal, operation: Operation): void {
    mayEver(principal, operation);
  }

  /** Takes one registration from the peer's token bucket. @throws LimitExceededError when it is empty. */
  admitRegistration(peer: string): void {
    const rate = this.limits.registrationsPerSecondPerPeer;
    const address = peerAddress(peer);
    const now = this.clock.monotonic();
    const bucket = this.buckets.get(address) ?? { tokens: rate, refilledAtMs: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.refilledAtMs) / 1000) * rate);
    bucket.refilledAtMs = now;
    if (bucket.tokens < 1) {
      throw new LimitExceededError(`too many registrations from ${address}: the limit is ${rate} per second; retry shortly`);
    }
    bucket.tokens -= 1;
    this.buckets.set(address, bucket);
    // A full bucket says nothing a new one would not: forget idle peers so the map cannot grow without bound.
    if (this.buckets.size > 10_000) for (const [key, b] of this.buckets) if (now - b.refilledAtMs > 1000) this.buckets.delete(key);
  }

  /**
   * Counts a new stream on its connection.
   * @returns the function that releases it (call it exactly once).
   * @throws LimitExceededError when the connection, the server or (for a watch) the watcher limit is reached.
   */
  openStream(connection: string, kind: "heartbeat" | "watch"): () => void {
    const onConnection = this.streamsByConnection.get(connection) ?? 0;
    const { maxStreamsPerConnection, maxStreams, maxWatchers } = this.limits;
    if (onConnection >= maxStreamsPerConnection) {
      throw new LimitExceededError(`this connection already has ${onConnection} open streams, the limit per connection; open another connection`);
    }
    if (this.streams >= maxStreams) throw new LimitExceededError(`the server has ${this.streams} open streams, its limit; retry later`);
    if (kind === "watch" && this.watchers >= maxWatchers) throw new LimitExceededError(`the server has ${this.watchers} watchers, its limit; retry later`);
    this.streamsByConnection.set(connection, onConnection + 1);
    this.streams++;
    if (kind === "watch") this.watchers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streamsByConnection.get(connection) ?? 1) - 1;
      if (left === 0) this.streamsByConnection.delete(connection);
      else this.streamsByConnection.set(connection, left);
      this.streams--;
      if (kind === "watch") this.watchers--;
    };
  }
}

/**
 * The address part of a grpc-js peer string. grpc-js always appends the port,
 * and writes IPv6 peers without brackets ("127.0.0.1:5000", "::1:5000"), so
 * the address is everything before the last colon.
 */
export function peerAddress(peer: string): string {
  const colon = peer.lastIndexOf(":");
  const address = colon > 0 ? peer.slice(0, colon) : peer;
  return address.replace(/^\[(.*)\]$/, "$1");
}
