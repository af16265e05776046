import type { LoopTiming } from "./background-loop.js";
import type { Clock } from "./clock.js";
import type { HealthStatus } from "./health.js";
import type { Logger } from "./logger.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { RegistryStore } from "./registry-store.js";

/** What a heartbeat stream tells the worker after each heartbeat. */
export interface HeartbeatAck {
  readonly healthStatus: HealthStatus;
  readonly nextHeartbeatIntervalMs: number;
  /** The wall-clock time recorded for this heartbeat: what last_heartbeat_at will show. */
  readonly heartbeatAtMs: number;
  /** While the worker drains: when it is removed whatever it still runs (wall-clock ms); else null. */
  readonly drainDeadlineMs: number | null;
}

/**
 * Counters a metrics endpoint reads; they only go up. Each counts what this
 * process did itself (heartbeats it received, calls it answered, expiries it
 * ran as the leader), so summing them over replicas gives the fleet's.
 */
export interface RegistryCounters {
  readonly heartbeats: number;
  /** Slots AcquireWorker granted. */
  readonly acquisitions: number;
  /** AcquireWorker calls refused: no worker matched the filter. */
  readonly acquisitionsNoMatch: number;
  /** AcquireWorker calls refused: every matching worker was full. */
  readonly acquisitionsNoFreeSlot: number;
  /** AcquireWorker calls refused: other acquisitions took the chosen workers first, every attempt. */
  readonly acquisitionsContended: number;
  readonly releases: number;
  readonly reservationsExpired: number;
}

/** Everything the registry depends on, injected by the composition root. */
export interface WorkerRegistryDeps {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly newWorkerId: () => string;
  readonly newReservationId: () => string;
  /** 256 random bits, base64url: the secret of a worker token. */
  readonly newWorkerSecret: () => string;
  /** Uniform in [0, 1): AcquireWorker's choice among near-equal workers. */
  readonly random: () => number;
  readonly log: Logger;
  readonly options: CompiledRegistryOptions;
  /** This process's name among the processes that serve the store. */
  readonly replicaId: string;
  /** Lease and polling; defaults: a 5 s lease, a 1 s poll. */
  readonly timing?: Partial<LoopTiming>;
}
