import type { EvictionStatus } from "./eviction-guard.js";
import type { FleetTotals } from "./fleet.js";
import type { LeadershipStatus } from "./leadership.js";

/** The fleet at a glance, as one process's read model has it when asked. */
export interface RegistryStats {
  readonly totalWorkers: number;
  readonly healthyWorkers: number;
  readonly degradedWorkers: number;
  readonly unhealthyWorkers: number;
  /** Out of rotation until uncordoned. */
  readonly cordonedWorkers: number;
  /** Out of rotation until removed. */
  readonly drainingWorkers: number;
  readonly totalCapacity: number;
  readonly usedCapacity: number;
  readonly availableCapacity: number;
  readonly tasksCompleted: number;
  readonly tasksFailed: number;
  /** Completed / (completed + failed) over the fleet; 0 before any completion. */
  readonly successRate: number;
  /** The revision of the last change applied here. */
  readonly revision: number;
  readonly activeReservations: number;
  readonly eviction: EvictionStatus;
  readonly leadership: LeadershipStatus;
  readonly replication: ReplicationStatus;
}

/** This process among the replicas of its store. */
export interface ReplicationStatus {
  /** The store's kind: "sqlite" or "postgres". */
  readonly store: string;
  /** How long after its commit the last event written by another process was applied here; 0 until one was. */
  readonly lagMs: number;
  /** Whether the store accepted this process's last write. */
  readonly storeWritable: boolean;
}

/** The stats of the fleet's totals and the registry's state beside them. */
export function registryStats(
  totals: FleetTotals,
  state: Pick<RegistryStats, "revision" | "activeReservations" | "eviction" | "leadership" | "replication">,
): RegistryStats {
  const { capacity, used, completed, failed } = totals;
  return {
    totalWorkers: totals.workers,
    healthyWorkers: totals.byHealth.healthy,
    degradedWorkers: totals.byHealth.degraded,
    unhealthyWorkers: totals.byHealth.unhealthy,
    cordonedWorkers: totals.byState.cordoned,
    drainingWorkers: totals.byState.draining,
    totalCapacity: capacity,
    usedCapacity: used,
    availableCapacity: capacity - used,
    tasksCompleted: completed,
    tasksFailed: failed,
    successRate: completed + failed === 0 ? 0 : completed / (completed + failed),
    ...state,
  };
}
