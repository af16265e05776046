import type { HealthStatus } from "./health.js";
import type { Labels } from "./labels.js";

/** Whether a worker is in rotation: ranked and granted (active), or out of it until uncordoned, or for good. */
export type WorkerState = "active" | "cordoned" | "draining";

/**
 * A worker as the store keeps it and as every event carries it: everything
 * durable about one registration, as of one revision. Immutable: the read
 * model keeps its own live copy.
 */
export interface WorkerRecord {
  readonly id: string;
  readonly nodeId: string;
  /** In the order given at registration; distinct. */
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  /** Always within 0..maxConcurrentTasks. */
  readonly currentTasks: number;
  /** Successful completions. */
  readonly tasksCompleted: number;
  /** Failed completions. */
  readonly tasksFailed: number;
  /** Sum of the durations of every recorded completion, successful or not. */
  readonly totalTaskDurationMs: number;
  /** Wall-clock ms. */
  readonly registeredAtMs: number;
  /**
   * Wall-clock ms of the last heartbeat written to the store (registration
   * counts as one). Heartbeats are written behind, so a replica that holds
   * the worker's stream may know a later one.
   */
  readonly lastHeartbeatAtMs: number;
  /** The health last announced (by a health_changed event); reads may show a worse one from heartbeat age. */
  readonly health: HealthStatus;
  /** Lowercase hex SHA-256 of the worker's token secret; "" for workers registered before tokens existed. */
  readonly tokenHash: string;
  /** SHA-256 of the role token that registered the worker; null when authentication was off. */
  readonly registeredBy: string | null;
  /** As given at registration. */
  readonly labels: Labels;
  /** As given at registration; "" for none. */
  readonly version: string;
  readonly state: WorkerState;
  /** Wall-clock ms at which a draining worker is removed whatever it still runs; null unless draining. */
  readonly drainDeadlineMs: number | null;
}

/** A slot taken by AcquireWorker and not yet released or expired. */
export interface ReservationRecord {
  readonly id: string;
  readonly workerId: string;
  /** Wall-clock ms. */
  readonly createdAtMs: number;
  /** Wall-clock ms. */
  readonly expiresAtMs: number;
}
