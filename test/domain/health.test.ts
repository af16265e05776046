import { describe, expect, it } from "vitest";
import { healthForAge, nextTransitionAge } from "../../src/domain/health.js";

const MINUTE = 60_000;
const thresholds = { healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE };

describe("healthForAge", () => {
  it.each([
    [0, "healthy"],
    [10 * MINUTE - 1, "healthy"],
    [10 * MINUTE, "degraded"],
    [15 * MINUTE, "degraded"],
    [15 * MINUTE + 1, "unhealthy"],
    [24 * 60 * MINUTE, "unhealthy"],
  ] as const)("a heartbeat %i ms old is %s", (age, expected) => {
    expect(healthForAge(age, thresholds)).toBe(expected);
  });
});

describe("nextTransitionAge", () => {
  it("walks healthy -> degraded -> unhealthy -> expired, then stops", () => {
    const ttl = 20 * MINUTE;
    expect(nextTransitionAge(0, thresholds, ttl)).toBe(10 * MINUTE);
    expect(nextTransitionAge(10 * MINUTE, thresholds, ttl)).toBe(15 * MINUTE + 1);
    expect(nextTransitionAge(15 * MINUTE + 1, thresholds, ttl)).toBe(20 * MINUTE + 1);
    expect(nextTransitionAge(20 * MINUTE + 1, thresholds, ttl)).toBeUndefined();
  });
});
