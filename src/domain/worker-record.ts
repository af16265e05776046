/**
 * A worker as the store keeps it: everything durable about one registration.
 * Health is not here: it is a function of heartbeat age, computed when asked.
 */
export interface WorkerRecord {
  readonly id: string;
  readonly nodeId: string;
  /** In the order given at registration; distinct. */
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  /** Always within 0..maxConcurrentTasks. */
  currentTasks: number;
  /** Successful completions. */
  tasksCompleted: number;
  /** Failed completions. */
  tasksFailed: number;
  /** Sum of the durations of every recorded completion, successful or not. */
  totalTaskDurationMs: number;
  /** Wall-clock ms. */
  readonly registeredAtMs: number;
  /** Wall-clock ms of the last heartbeat received (registration counts as one). */
  lastHeartbeatAtMs: number;
  /** Lowercase hex SHA-256 of the worker's token secret; "" for workers registered before tokens existed. */
  readonly tokenHash: string;
  /** SHA-256 of the role token that registered the worker; null when authentication was off. */
  readonly registeredBy: string | null;
}

/** The completion counters of a worker, as a store returns them after an update. */
export interface CompletionCounters {
  tasksCompleted: number;
  tasksFailed: number;
  totalTaskDurationMs: number;
}
