import type { Metadata } from "@grpc/grpc-js";
import type { Clock } from "../domain/clock.js";
import { LimitExceededError } from "../domain/errors.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import { authorize, mayEver, type Operation } from "../security/access-policy.js";
import type { Authenticator } from "../security/authenticator.js";
import type { Principal } from "../security/roles.js";

/** The per-call limits the guard enforces. */
export interface CallLimits {
  /** Open streams on one connection. */
  readonly maxStreamsPerConnection: number;
  /** Open streams on the whole server. */
  readonly maxStreams: number;
  /**
   * Largest share of `maxStreams` one principal may hold, in (0, 1]: a role
   * token, a worker's token, or the peer address of calls without a token
   * (every call, when authentication is off). At least one stream.
   */
  readonly maxStreamShare: number;
  /** Open WatchWorkers streams. */
  readonly maxWatchers: number;
  /** Sustained RegisterWorker calls per second from one peer address (a token bucket that holds one second's worth). */
  readonly registrationsPerSecondPerPeer: number;
}

/**
 * What a stream slot is for. Every long-lived call counts: the registry's
 * heartbeat and watch streams, and the streams of the libraries it hosts
 * (grpc.health.v1 Watch, server reflection), called introspection here.
 */
export type StreamKind = "heartbeat" | "watch" | "introspection";

/** The message a stream gets when the token it was opened with is revoked. */
export const REVOKED_TOKEN_DETAILS = "the token this stream was opened with was removed by a tokens reload; reconnect with a current token";

interface Bucket {
  tokens: number;
  refilledAtMs: number;
}

/** A stream opened with a role token, which a reload of the tokens file may revoke. */
interface RevocableStream {
  readonly principal: Principal;
  readonly revoke: (details: string) => void;
}

/**
 * What every call passes before it reaches the registry: who is calling
 * (authentication), whether they may (the access policy), and whether a
 * limit is reached. One place, so no handler can forget a check.
 */
export class CallGuard {
  private readonly streamsByConnection = new Map<string, number>();
  private readonly streamsByHolder = new Map<string, number>();
  private readonly revocable = new Set<RevocableStream>();
  private streams = 0;
  private watchers = 0;
  private readonly byKind: Record<StreamKind, number> = { heartbeat: 0, watch: 0, introspection: 0 };
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly authenticator: Authenticator,
    private readonly registry: WorkerRegistry,
    private readonly clock: Clock,
    private readonly limits: CallLimits,
  ) {}

  /** @throws UnauthenticatedError when authentication is on and the call has no valid token, or more than one. */
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

  /** The streams open now, by what they are for. */
  openStreams(): Readonly<Record<StreamKind, number>> {
    return { ...this.byKind };
  }

  /** The most streams one principal may hold. */
  get streamsPerPrincipal(): number {
    return Math.max(1, Math.floor(this.limits.maxStreams * this.limits.maxStreamShare));
  }

  /**
   * Counts a new stream on its connection (the grpc-js peer string), against
   * the server and against its holder: `principal`, or the peer's address
   * when the call carries no credential (undefined) or authentication is off.
   * A stream opened with a role token is ended with `revoke` if a reload of
   * the tokens file removes that token ({@link endRevokedStreams}).
   * @returns the function that releases it (idempotent).
   * @throws LimitExceededError naming the limit reached: the connection's, the
   *   server's, the holder's share, or (for a watch) the watchers'.
   */
  openStream(peer: string, principal: Principal | undefined, kind: StreamKind, revoke: (details: string) => void): () => void {
    const { maxStreamsPerConnection, maxStreams, maxStreamShare, maxWatchers } = this.limits;
    const onConnection = this.streamsByConnection.get(peer) ?? 0;
    if (onConnection >= maxStreamsPerConnection) {
      throw new LimitExceededError(
        `this connection already has ${onConnection} open streams, its limit (--max-streams-per-connection); open another connection`,
      );
    }
    if (this.streams >= maxStreams) throw new LimitExceededError(`the server has ${this.streams} open streams, its limit (--max-streams); retry later`);
    const holder = holderOf(principal, peer);
    const held = this.streamsByHolder.get(holder.key) ?? 0;
    if (held >= this.streamsPerPrincipal) {
      throw new LimitExceededError(
        `${holder.description} already holds ${held} open streams, its share of the server's limit ` +
          `(--max-stream-share ${maxStreamShare} of --max-streams ${maxStreams}); close some first`,
      );
    }
    if (kind === "watch" && this.watchers >= maxWatchers) {
      throw new LimitExceededError(`the server has ${this.watchers} watchers, its limit (--max-watchers); retry later`);
    }
    this.streamsByConnection.set(peer, onConnection + 1);
    this.streamsByHolder.set(holder.key, held + 1);
    this.streams++;
    this.byKind[kind]++;
    if (kind === "watch") this.watchers++;
    const revocable = principal?.kind === "role" ? { principal, revoke } : undefined;
    if (revocable) this.revocable.add(revocable);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      decrement(this.streamsByConnection, peer);
      decrement(this.streamsByHolder, holder.key);
      this.streams--;
      this.byKind[kind]--;
      if (kind === "watch") this.watchers--;
      if (revocable) this.revocable.delete(revocable);
    };
  }

  /**
   * Ends, with their `revoke` function, the open streams whose role token is
   * no longer current (after a reload of the tokens file).
   * @returns how many were ended.
   */
  endRevokedStreams(): number {
    let ended = 0;
    for (const stream of [...this.revocable]) {
      if (this.authenticator.isCurrent(stream.principal)) continue;
      this.revocable.delete(stream);
      stream.revoke(REVOKED_TOKEN_DETAILS);
      ended++;
    }
    return ended;
  }
}

/** Who holds a stream, for the per-principal share, and how to name them to the caller (never the token itself). */
function holderOf(principal: Principal | undefined, peer: string): { readonly key: string; readonly description: string } {
  switch (principal?.kind) {
    case "role":
      return { key: `role ${principal.tokenHash}`, description: `this ${principal.role} token` };
    case "worker":
      return { key: `worker ${principal.workerId}`, description: `worker ${principal.workerId}'s token` };
    default: {
      const address = peerAddress(peer);
      return { key: `address ${address}`, description: `the address ${address}` };
    }
  }
}

function decrement(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 1) - 1;
  if (left === 0) counts.delete(key);
  else counts.set(key, left);
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
