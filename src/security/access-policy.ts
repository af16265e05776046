import { PermissionDeniedError } from "../domain/errors.js";
import { ROLES, type Principal, type Role } from "./roles.js";

/** What a call does, as far as permissions go. */
export type Operation =
  /** RegisterWorker. */
  | "register"
  /** Heartbeat, HeartbeatStream. */
  | "heartbeat"
  /** UnregisterWorker. */
  | "unregister"
  /** UpdateTaskCount, RecordTaskCompletion. */
  | "account"
  /** GetWorker. */
  | "read-worker"
  /** DiscoverWorkers, GetWorkersForLoadBalancing, GetRegistryStats, WatchWorkers. */
  | "read-fleet"
  /** AcquireWorker, ReleaseWorker. */
  | "reserve"
  /** ResumeEviction: overrides the registry's own safety brake. */
  | "administer"
  /** CordonWorker, UncordonWorker: in and out of rotation. */
  | "cordon"
  /** DrainWorker: out of rotation for good; a worker may ask it for itself. */
  | "drain";

/** The worker a call names, with who registered it. */
export interface TargetWorker {
  /** The id the call names. */
  readonly workerId: string;
  /**
   * SHA-256 of the role token that registered it; null if it was registered
   * without authentication; undefined if no such worker exists (the call
   * will then fail with NOT_FOUND, which protects nothing and hides nothing).
   */
  readonly registeredBy: string | null | undefined;
}

const BY_ROLE: Record<Role, ReadonlySet<Operation>> = {
  admin: new Set<Operation>(["register", "heartbeat", "unregister", "account", "read-worker", "read-fleet", "reserve", "administer", "cordon", "drain"]),
  orchestrator: new Set<Operation>(["account", "read-worker", "read-fleet", "reserve", "cordon", "drain"]),
  worker: new Set<Operation>(["register"]),
};

/**
 * The roles whose tokens may do `operation` to any worker, in the order of
 * {@link ROLES} (a worker-role token may also act on the workers it
 * registered, which this leaves out). For messages that tell a caller which
 * token to use.
 */
export function rolesAllowedTo(operation: Operation): Role[] {
  return ROLES.filter((role) => BY_ROLE[role].has(operation));
}

/** What a worker may do to itself: with its own worker token, or with the worker-role token that registered it. */
const ON_OWN_WORKER: ReadonlySet<Operation> = new Set<Operation>(["heartbeat", "unregister", "account", "read-worker", "drain"]);

/**
 * The permission rules, in one place. A worker token acts only on its own
 * worker, as Kubernetes' NodeRestriction limits a kubelet to its own node and
 * lease; a worker-role token acts on the workers it registered.
 * @throws PermissionDeniedError naming the operation and the reason.
 */
export function authorize(principal: Principal, operation: Operation, target?: TargetWorker): void {
  switch (principal.kind) {
    case "open":
      return;
    case "role": {
      if (BY_ROLE[principal.role].has(operation)) return;
      const own = ON_OWN_WORKER.has(operation) && target !== undefined;
      if (principal.role === "worker" && own && (target.registeredBy === undefined || target.registeredBy === principal.tokenHash)) return;
      throw new PermissionDeniedError(
        principal.role === "worker" && ON_OWN_WORKER.has(operation)
          ? `a worker-role token may ${operation} only the workers it registered`
          : `the ${principal.role} role may not ${operation}`,
      );
    }
    case "worker":
      if (ON_OWN_WORKER.has(operation) && target?.workerId === principal.workerId) return;
      throw new PermissionDeniedError(
        ON_OWN_WORKER.has(operation)
          ? `the token of worker ${principal.workerId} may act only on that worker`
          : `a worker token may not ${operation}; use a role token`,
      );
  }
}

/**
 * Whether the principal could do `operation` to some worker: the check made
 * when a call opens, before it names its worker (a heartbeat stream).
 * @throws PermissionDeniedError when it never could.
 */
export function mayEver(principal: Principal, operation: Operation): void {
  if (principal.kind === "open") return;
  if (principal.kind === "role" && (BY_ROLE[principal.role].has(operation) || (principal.role === "worker" && ON_OWN_WORKER.has(operation)))) return;
  if (principal.kind === "worker" && ON_OWN_WORKER.has(operation)) return;
  throw new PermissionDeniedError(principal.kind === "role" ? `the ${principal.role} role may not ${operation}` : `a worker token may not ${operation}`);
}
