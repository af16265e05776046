/**
 * A worker's health, derived from the age of its last heartbeat:
 * - `healthy`: younger than the healthy threshold (default 10 min);
 * - `degraded`: from the healthy threshold up to the degraded threshold
 *   inclusive (default 10 to 15 min); it still takes work, ranked below every
 *   healthy worker;
 * - `unhealthy`: older than the degraded threshold; cleanup removes it once
 *   its record TTL has passed.
 */
export type HealthStatus = "healthy" | "degraded" | "unhealthy";

export const HEALTH_STATUSES: readonly HealthStatus[] = ["healthy", "degraded", "unhealthy"];

/** The two thresholds that define health, in ms of heartbeat age. */
export interface HealthThresholds {
  readonly healthyThresholdMs: number;
  readonly degradedThresholdMs: number;
}

/** Health for a heartbeat of the given age. The thresholds live here and nowhere else. */
export function healthForAge(ageMs: number, thresholds: HealthThresholds): HealthStatus {
  if (ageMs < thresholds.healthyThresholdMs) return "healthy";
  if (ageMs <= thresholds.degradedThresholdMs) return "degraded";
  return "unhealthy";
}

/**
 * The next age at which the health of a worker, or its expiry, changes:
 * the first of the healthy threshold, the first age past the degraded
 * threshold, and the record TTL that is still ahead of `ageMs`.
 * Undefined once the worker is past all three.
 */
export function nextTransitionAge(ageMs: number, thresholds: HealthThresholds, workerTtlMs: number): number | undefined {
  // healthForAge is inclusive at the degraded threshold, so unhealthy begins one millisecond later.
  for (const age of [thresholds.healthyThresholdMs, thresholds.degradedThresholdMs + 1, workerTtlMs + 1]) {
    if (age > ageMs) return age;
  }
  return undefined;
}

/** Ranking tier: healthy workers before degraded ones. */
export function healthTier(status: HealthStatus): number {
  return status === "healthy" ? 0 : status === "degraded" ? 1 : 2;
}
