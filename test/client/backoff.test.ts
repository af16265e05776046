import { describe, expect, it } from "vitest";
import { backoffCeilingMs, fullJitterDelayMs } from "../../clients/typescript/src/backoff.js";

const policy = { baseMs: 100, maxMs: 1000 };

describe("backoffCeilingMs", () => {
  it("doubles from the base and stops at the maximum", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffCeilingMs(attempt, policy))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
  });

  it("follows a custom multiplier", () => {
    expect([0, 1, 2].map((attempt) => backoffCeilingMs(attempt, { baseMs: 100, maxMs: 10_000, multiplier: 3 }))).toEqual([
      100, 300, 900,
    ]);
  });

  it("stays at the maximum when the power overflows", () => {
    expect(backoffCeilingMs(5000, policy)).toBe(1000);
  });

  it("refuses a negative or fractional attempt and a policy outside its bounds", () => {
    expect(() => backoffCeilingMs(-1, policy)).toThrow(RangeError);
    expect(() => backoffCeilingMs(1.5, policy)).toThrow(RangeError);
    expect(() => backoffCeilingMs(0, { baseMs: 200, maxMs: 100 })).toThrow(/baseMs <= maxMs/);
    expect(() => backoffCeilingMs(0, { baseMs: -1, maxMs: 100 })).toThrow(RangeError);
    expect(() => backoffCeilingMs(0, { baseMs: 1, maxMs: 100, multiplier: 0.5 })).toThrow(/multiplier/);
  });
});

describe("fullJitterDelayMs", () => {
  it("draws the whole range from zero up to the ceiling", () => {
    expect(fullJitterDelayMs(3, policy, () => 0)).toBe(0);
    expect(fullJitterDelayMs(3, policy, () => 0.5)).toBe(400);
    expect(fullJitterDelayMs(3, policy, () => 0.999_999)).toBe(799);
  });

  it("spreads workers that fail at the same moment across the window", () => {
    // Thirty workers see the same restart; each has its own random draw.
    const draws = Array.from({ length: 30 }, (_, i) => (i + 0.5) / 30);
    const delays = draws.map((draw) => fullJitterDelayMs(0, policy, () => draw));
    expect(new Set(delays).size).toBe(30);
    expect(Math.min(...delays)).toBeLessThan(10);
    expect(Math.max(...delays)).toBeGreaterThan(90);
  });

  it("never exceeds the capped ceiling however many attempts failed", () => {
    expect(fullJitterDelayMs(40, policy, () => 0.999_999)).toBeLessThan(1000);
  });

  it("refuses a random source that leaves [0, 1)", () => {
    expect(() => fullJitterDelayMs(0, policy, () => 1)).toThrow(/\[0, 1\)/);
    expect(() => fullJitterDelayMs(0, policy, () => -0.1)).toThrow(RangeError);
    expect(() => fullJitterDelayMs(0, policy, () => Number.NaN)).toThrow(RangeError);
  });
});
