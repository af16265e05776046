import type { Fleet } from "./fleet.js";
import { healthForAge, healthTier, type HealthStatus } from "./health.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { HealthChange, Snapshot } from "./registry-store.js";
import type { ReservationBook } from "./reservation-book.js";

/** A registry whose store was written by no process for this long is starting cold: it was down. */
export const COLD_START_GAP_MS = 10_000;

/** What loading a snapshot found. */
export interface Recovery {
  /** A cold start: no registry process was running just before this one. */
  readonly cold: boolean;
  /** Workers that were not healthy when the registry last ran, now out of rotation until heard from. */
  readonly notHealthy: number;
  /** Downgrades the judgement found that no event announced yet (the registry stopped before writing them). */
  readonly changes: readonly HealthChange[];
}

/**
 * Fills an empty read model from a snapshot.
 *
 * On a cold start (a restart of the only process, or of every replica), each
 * worker keeps the health it had when the registry last ran: its heartbeat age
 * at the registry's last-alive time, not now, since the registry's downtime is
 * nobody's silence.
 * - A worker that was healthy then gets a full healthy window from now: a live
 *   worker has time to reconnect.
 * - One that was degraded or unhealthy keeps that health, stays out of ranking
 *   and acquisition until it is heard from, and for one heartbeat interval (the
 *   grace) is neither downgraded further nor removed; after that it is judged
 *   by its age, downtime excluded.
 * Reservations keep the time they had left when the registry stopped.
 *
 * Otherwise (a replica joining running ones, or one reloading after falling
 * behind), every worker is judged by its real heartbeat age.
 */
export function loadSnapshot(
  snapshot: Snapshot,
  into: { readonly fleet: Fleet; readonly book: ReservationBook },
  options: CompiledRegistryOptions,
  now: { readonly mono: number; readonly ms: number; readonly shared: boolean },
): Recovery {
  const { fleet, book } = into;
  const lastAliveAtMs = snapshot.lastAliveAtMs ?? Math.max(0, ...snapshot.workers.map((w) => w.lastHeartbeatAtMs));
  const cold = !now.shared || snapshot.lastAliveAtMs === null || now.ms - snapshot.lastAliveAtMs > COLD_START_GAP_MS;
  const changes: HealthChange[] = [];
  let notHealthy = 0;
  for (const record of snapshot.workers) {
    const worker = fleet.add(record, now.mono, now.ms);
    if (!cold) continue;
    const ageMs = Math.max(0, lastAliveAtMs - record.lastHeartbeatAtMs);
    const judged = worse(record.health, healthForAge(ageMs, options));
    if (judged === "healthy") {
      worker.lastSeenMono = now.mono;
      continue;
    }
    notHealthy++;
    worker.lastSeenMono = now.mono - ageMs;
    worker.holdUntilMono = now.mono + options.heartbeatIntervalMs;
    fleet.setUnconfirmed(worker, true);
    for (let from = record.health; from !== judged; ) {
      const to: HealthStatus = from === "healthy" ? "degraded" : "unhealthy";
      changes.push({ workerId: record.id, from, to, heardUntilMs: record.lastHeartbeatAtMs });
      from = to;
    }
  }
  for (const reservation of snapshot.reservations) {
    // With no record of when the registry last ran, the whole TTL is left.
    const left = cold ? reservation.expiresAtMs - (snapshot.lastAliveAtMs ?? reservation.createdAtMs) : reservation.expiresAtMs - now.ms;
    book.book(reservation, now.mono, Math.min(options.reservationTtlMs, left));
    const worker = fleet.get(reservation.workerId);
    if (worker !== undefined) worker.reservedTasks++;
  }
  return { cold, notHealthy, changes };
}

function worse(a: HealthStatus, b: HealthStatus): HealthStatus {
  return healthTier(b) > healthTier(a) ? b : a;
}
