import { timingSafeEqual } from "node:crypto";
import { RemovedWorkerTokenError, UnauthenticatedError } from "../domain/errors.js";
import { sha256Hex, WORKER_TOKEN } from "../domain/worker-token.js";
import type { Principal } from "./roles.js";
import type { RoleToken } from "./token-file.js";

// The scheme is case-insensitive (RFC 6750 and RFC 9110); the token is printable ASCII.
const BEARER = /^bearer ([\x21-\x7e]+)$/i;

/** Looks up the hash of a worker's token, or undefined if the worker is unknown. */
export type WorkerTokenLookup = (workerId: string) => string | undefined;

/**
 * Turns the `authorization` metadata of a call into a {@link Principal}.
 * Role tokens come from the tokens file (replaceable at run time, for SIGHUP);
 * worker tokens (`<worker id>.<secret>`, issued by RegisterWorker) are checked
 * against the hash stored with their worker, and are invalid once the worker
 * is gone. Every comparison is of SHA-256
 * digests in constant time, and every role token is compared, so timing
 * tells nothing about which one nearly matched.
 *
 * Without a tokens file authentication is off: every call is `open`.
 */
export class Authenticator {
  private roleTokens: readonly { readonly role: RoleToken["role"]; readonly digest: Buffer; readonly sha256: string }[] = [];

  constructor(
    roleTokens: readonly RoleToken[] | undefined,
    private readonly workerTokenHash: WorkerTokenLookup,
    /** Why a removed worker left, if this process remembers (see Fleet.notFound). */
    private readonly removalReasonOf: (workerId: string) => string | undefined = () => undefined,
  ) {
    this.enabled = roleTokens !== undefined;
    if (roleTokens) this.replaceRoleTokens(roleTokens);
  }

  /** Whether calls must carry a token. */
  readonly enabled: boolean;

  /**
   * Swaps the role tokens (on SIGHUP). Calls in flight keep the principal
   * they had; streams opened with a token that is no longer {@link isCurrent}
   * are for the transport to end.
   */
  replaceRoleTokens(tokens: readonly RoleToken[]): void {
    this.roleTokens = tokens.map((t) => ({ role: t.role, sha256: t.sha256, digest: Buffer.from(t.sha256, "hex") }));
  }

  /**
   * Whether a principal authenticated earlier would still be, with the role
   * tokens loaded now: false for a role token that a reload removed or moved
   * to another role. Worker tokens live and die with their worker, not with
   * the file, so they stay current here.
   */
  isCurrent(principal: Principal): boolean {
    if (principal.kind !== "role") return true;
    return this.roleTokens.some((token) => token.sha256 === principal.tokenHash && token.role === principal.role);
  }

  /** How many role tokens are loaded. */
  get roleTokenCount(): number {
    return this.roleTokens.length;
  }

  /**
   * The principal for a call's `authorization` values.
   * @throws UnauthenticatedError if authentication is on and the token is missing, malformed or unknown.
   */
  authenticate(authorization: readonly unknown[]): Principal {
    if (!this.enabled) return { kind: "open" };
    if (authorization.length === 0) throw new UnauthenticatedError("missing authorization metadata: send \"authorization: Bearer <token>\"");
    if (authorization.length > 1) throw new UnauthenticatedError("more than one authorization value");
    const bearer = typeof authorization[0] === "string" ? BEARER.exec(authorization[0]) : null;
    if (!bearer) throw new UnauthenticatedError("authorization must be \"Bearer <token>\"");
    const token = bearer[1]!;
    const worker = WORKER_TOKEN.exec(token);
    if (worker) {
      const [, workerId, secret] = worker as unknown as [string, string, string];
      const stored = this.workerTokenHash(workerId);
      // A worker's token lives and dies with its record. "not found" in the message lets a worker that was
      // cleaned up recognise the case and register again, as the usage guide's error handling does.
      if (stored === undefined) throw new RemovedWorkerTokenError(workerId, this.removalReasonOf(workerId));
      if (stored !== "" && digestsEqual(Buffer.from(stored, "hex"), sha256Digest(secret))) return { kind: "worker", workerId };
      throw new UnauthenticatedError("invalid worker token");
    }
    const digest = sha256Digest(token);
    let match: (typeof this.roleTokens)[number] | undefined;
    for (const candidate of this.roleTokens) if (digestsEqual(candidate.digest, digest) && match === undefined) match = candidate;
    if (match === undefined) throw new UnauthenticatedError("invalid token");
    return { kind: "role", role: match.role, tokenHash: match.sha256 };
  }
}

function sha256Digest(secret: string): Buffer {
  return Buffer.from(sha256Hex(secret), "hex");
}

function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

