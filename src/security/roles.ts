/**
 * What a token may do.
 * - `worker`: register workers, and act on the workers it registered.
 * - `orchestrator`: read, rank, acquire and release, update task counts and record completions.
 * - `admin`: everything, including unregistering any worker.
 */
export type Role = "worker" | "orchestrator" | "admin";

export const ROLES: readonly Role[] = ["worker", "orchestrator", "admin"];

/** Who is calling, once their token has been checked. */
export type Principal =
  /** Authentication is off: local development. Everything is allowed. */
  | { readonly kind: "open" }
  /** A role token from the tokens file, known by its hash. */
  | { readonly kind: "role"; readonly role: Role; readonly tokenHash: string }
  /** A per-worker token: it may act on that one worker only. */
  | { readonly kind: "worker"; readonly workerId: string };
