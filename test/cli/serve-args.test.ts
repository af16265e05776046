import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/cli/duration.js";
import { parseServeArgs } from "../../src/cli/serve-command.js";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["10s", 10_000],
    ["10m", 600_000],
    ["1.5m", 90_000],
    ["2h", 7_200_000],
  ])("%s is %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["10", "", "-5s", "0s", "10 minutes", "1e3ms"])("refuses %j with a hint", (text) => {
    expect(() => parseDuration(text)).toThrow(/like 500ms, 10s, 10m or 1h/);
  });
});

describe("parseServeArgs", () => {
  it("reads flags and environment variables, flags winning", () => {
    const options = parseServeArgs(["--port", "6000", "--healthy-threshold", "30s", "--db", "/tmp/x.db"], {
      REGISTRY_PORT: "7000",
      REGISTRY_DEGRADED_THRESHOLD: "1m",
      REGISTRY_LOG_LEVEL: "warn",
    });
    expect(options).toEqual({
      port: 6000,
      dbPath: "/tmp/x.db",
      logLevel: "warn",
      registry: { healthyThresholdMs: 30_000, degradedThresholdMs: 60_000 },
    });
  });

  it("reads the reservation, event-log and eviction settings", () => {
    const options = parseServeArgs(
      ["--reservation-ttl", "2m", "--event-ttl", "30s", "--max-eviction-share", "0.25", "--watch-buffer", "500"],
      { REGISTRY_EVICTION_COLLAPSE_RATIO: ".3" },
    );
    expect(options.registry).toEqual({
      reservationTtlMs: 120_000,
      eventTtlMs: 30_000,
      maxEvictionShare: 0.25,
      watchBufferEvents: 500,
      evictionCollapseRatio: 0.3,
    });
    expect(() => parseServeArgs(["--max-eviction-share", "1.5"], {})).toThrow(/^--max-eviction-share: .*must be a number in \(0, 1\]/);
    expect(() => parseServeArgs(["--max-eviction-share", "0"], {})).toThrow(/must be a number in \(0, 1\]/);
    expect(() => parseServeArgs(["--watch-buffer", "0"], {})).toThrow(/^--watch-buffer: .*whole number >= 1/);
  });

  it("names the flag or variable at fault", () => {
    expect(() => parseServeArgs(["--worker-ttl", "soon"], {})).toThrow(/^--worker-ttl: invalid duration "soon"/);
    expect(() => parseServeArgs([], { REGISTRY_PORT: "http" })).toThrow(/^REGISTRY_PORT: invalid port/);
    expect(() => parseServeArgs(["--sync", "sometimes"], {})).toThrow(/must be one of normal, full/);
    expect(() => parseServeArgs(["--nope", "1"], {})).toThrow(/nope/);
  });
});
