import { ConfigError } from "./errors.js";
import type { ScoringOptions } from "./scoring.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** Limits on what a caller may send. Every request beyond them gets INVALID_ARGUMENT. */
export interface RegistryLimits {
  /** Longest node_id, in characters. Default 253 (a DNS name). */
  readonly maxNodeIdLength: number;
  /** Most capabilities per worker. Default 64. */
  readonly maxCapabilities: number;
  /** Longest capability, in characters. Default 64. */
  readonly maxCapabilityLength: number;
  /** Largest max_concurrent_tasks. Default 10000. */
  readonly maxConcurrentTasksLimit: number;
  /** Longest task duration accepted by RecordTaskCompletion. Default 30 days. */
  readonly maxTaskDurationMs: number;
  /** Largest page of DiscoverWorkers and limit of GetWorkersForLoadBalancing. Default 10000. */
  readonly maxPageSize: number;
  /** Most workers registered at once; RegisterWorker beyond it gets RESOURCE_EXHAUSTED. Default 100000. */
  readonly maxWorkers: number;
}

/**
 * Options of the registry. Every field is optional; the defaults are the usage
 * guide's. {@link compileRegistryOptions} validates and fills them in once.
 */
export interface RegistryOptions {
  /** Heartbeat age below which a worker is healthy. Default 10 min. */
  healthyThresholdMs?: number;
  /** Heartbeat age up to which a worker is degraded; past it, unhealthy. Default 15 min. */
  degradedThresholdMs?: number;
  /**
   * Heartbeat age after which the worker's record expires and cleanup removes
   * it. At least the degraded threshold, so only unhealthy workers are removed.
   * Default 15 min.
   */
  workerTtlMs?: number;
  /** How often cleanup removes expired workers. Default 5 min. */
  cleanupIntervalMs?: number;
  /** Most workers one cleanup transaction removes; a pass runs as many as needed. Default 1000. */
  cleanupBatchSize?: number;
  /** Interval suggested to heartbeat streams. Default half the healthy threshold (5 min). */
  heartbeatIntervalMs?: number;
  /** Heartbeat timestamps are soft state, written behind this often (SQLite: 100 per transaction; PostgreSQL: one statement). Default 1 s. */
  heartbeatFlushIntervalMs?: number;
  /** Load-balancing weights and priors. Defaults: 0.5 / 0.3 / 0.2, 1 s reference, priors 0.5. */
  scoring?: Partial<ScoringOptions>;
  /**
   * AcquireWorker picks at random among the candidates whose priority is
   * within this of the best one (same health tier), so near-equal workers
   * share the load. Default 0.02.
   */
  acquireTieTolerance?: number;
  /** A reservation not released within this long is expired and its slot freed. Default 10 min. */
  reservationTtlMs?: number;
  /** How long the event log keeps events for watchers to resume from. Default 1 min (the guide's event TTL). */
  eventTtlMs?: number;
  /** Events buffered for a watcher that is not reading before it is dropped. Default 10000. */
  watchBufferEvents?: number;
  /** Most of the fleet one cleanup pass may remove, as a share in (0, 1]. Default 0.1. */
  maxEvictionShare?: number;
  /** Heartbeat intake below this share of its recent level pauses eviction. Default 0.5. */
  evictionCollapseRatio?: number;
  /**
   * Intake collapse is judged only when the recent level is at least this many
   * workers: one or two silent workers are more likely dead than the registry
   * cut off, and should be removed as the guide says. Default 3.
   */
  collapseMinWorkers?: number;
  /** A gap this long between the registry's one-second ticks means it was paused; eviction holds. Default 3 s. */
  stallThresholdMs?: number;
  /**
   * The longest an intake-collapse pause of eviction lasts: silence that
   * outlasts it is believed and eviction resumes at its per-pass limit.
   * Default three worker TTLs (45 min).
   */
  evictionMaxPauseMs?: number;
  /** Input limits. */
  limits?: Partial<RegistryLimits>;
}

/** {@link RegistryOptions} with every default applied and every rule checked. */
export interface CompiledRegistryOptions {
  readonly healthyThresholdMs: number;
  readonly degradedThresholdMs: number;
  readonly workerTtlMs: number;
  readonly cleanupIntervalMs: number;
  readonly cleanupBatchSize: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatFlushIntervalMs: number;
  readonly scoring: ScoringOptions;
  readonly acquireTieTolerance: number;
  readonly reservationTtlMs: number;
  readonly eventTtlMs: number;
  readonly watchBufferEvents: number;
  readonly maxEvictionShare: number;
  readonly evictionCollapseRatio: number;
  readonly collapseMinWorkers: number;
  readonly stallThresholdMs: number;
  readonly evictionMaxPauseMs: number;
  readonly limits: RegistryLimits;
}

export const DEFAULT_SCORING: ScoringOptions = {
  capacityWeight: 0.5,
  successWeight: 0.3,
  speedWeight: 0.2,
  speedReferenceMs: SECOND,
  priorSuccessRate: 0.5,
  priorSpeedScore: 0.5,
};

export const DEFAULT_LIMITS: RegistryLimits = {
  maxNodeIdLength: 253,
  maxCapabilities: 64,
  maxCapabilityLength: 64,
  maxConcurrentTasksLimit: 10_000,
  maxTaskDurationMs: 30 * 24 * 60 * MINUTE,
  maxPageSize: 10_000,
  maxWorkers: 100_000,
};

/**
 * Applies defaults and checks the rules between options.
 * @throws ConfigError naming the option that is wrong.
 */
export function compileRegistryOptions(options: RegistryOptions = {}): CompiledRegistryOptions {
  const healthyThresholdMs = options.healthyThresholdMs ?? 10 * MINUTE;
  const degradedThresholdMs = options.degradedThresholdMs ?? 15 * MINUTE;
  const workerTtlMs = options.workerTtlMs ?? Math.max(15 * MINUTE, degradedThresholdMs);
  const compiled: CompiledRegistryOptions = {
    healthyThresholdMs,
    degradedThresholdMs,
    workerTtlMs,
    cleanupIntervalMs: options.cleanupIntervalMs ?? 5 * MINUTE,
    cleanupBatchSize: options.cleanupBatchSize ?? 1000,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? Math.floor(healthyThresholdMs / 2),
    heartbeatFlushIntervalMs: options.heartbeatFlushIntervalMs ?? 1000,
    scoring: { ...DEFAULT_SCORING, ...options.scoring },
    acquireTieTolerance: options.acquireTieTolerance ?? 0.02,
    reservationTtlMs: options.reservationTtlMs ?? 10 * MINUTE,
    eventTtlMs: options.eventTtlMs ?? MINUTE,
    watchBufferEvents: options.watchBufferEvents ?? 10_000,
    maxEvictionShare: options.maxEvictionShare ?? 0.1,
    evictionCollapseRatio: options.evictionCollapseRatio ?? 0.5,
    collapseMinWorkers: options.collapseMinWorkers ?? 3,
    stallThresholdMs: options.stallThresholdMs ?? 3 * SECOND,
    evictionMaxPauseMs: options.evictionMaxPauseMs ?? 3 * workerTtlMs,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
  };
  for (const [name, value] of Object.entries(compiled)) {
    if (typeof value === "number" && name !== "acquireTieTolerance") requirePositive(name, value);
  }
  if (!(compiled.acquireTieTolerance >= 0)) throw new ConfigError(`acquireTieTolerance must be >= 0, got ${compiled.acquireTieTolerance}`);
  for (const [name, value] of Object.entries(compiled.limits)) requirePositive(`limits.${name}`, value);
  for (const [name, value] of Object.entries(compiled.scoring)) {
    if (!Number.isFinite(value) || value < 0) throw new ConfigError(`scoring.${name} must be a finite number >= 0, got ${value}`);
  }
  for (const name of ["maxEvictionShare", "evictionCollapseRatio"] as const) {
    if (compiled[name] > 1) throw new ConfigError(`${name} must be at most 1, got ${compiled[name]}`);
  }
  if (compiled.degradedThresholdMs <= compiled.healthyThresholdMs) {
    throw new ConfigError(
      `degraded threshold (${compiled.degradedThresholdMs} ms) must be greater than the healthy threshold (${compiled.healthyThresholdMs} ms)`,
    );
  }
  if (compiled.workerTtlMs < compiled.degradedThresholdMs) {
    throw new ConfigError(
      `worker TTL (${compiled.workerTtlMs} ms) must be at least the degraded threshold (${compiled.degradedThresholdMs} ms), so that only unhealthy workers are removed`,
    );
  }
  if (compiled.heartbeatIntervalMs >= compiled.healthyThresholdMs) {
    throw new ConfigError(
      `heartbeat interval (${compiled.heartbeatIntervalMs} ms) must be shorter than the healthy threshold (${compiled.healthyThresholdMs} ms)`,
    );
  }
  return compiled;
}

function requirePositive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a finite number > 0, got ${value}`);
}
