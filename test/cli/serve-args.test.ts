import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/cli/duration.js";
import { defaultText, envName, parseServeArgs, SERVE_SETTINGS, serveUsage } from "../../src/cli/serve-command.js";
import { formatDuration } from "../../src/cli/duration.js";
import { compileServeOptions, SERVE_DEFAULTS } from "../../src/serve-options.js";

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

// The help text is derived from the compiled defaults, never written twice: giving each setting its documented
// default explicitly must compile to exactly the options that giving nothing does.
describe("the documented defaults", () => {
  const documented = SERVE_SETTINGS.filter((setting) => setting.default !== undefined);

  it.each(documented.map((setting) => [setting.flag, setting] as const))("--%s at its documented default changes nothing", (_flag, setting) => {
    const value = setting.default!(SERVE_DEFAULTS);
    const options = setting.switch ? parseServeArgs([], { [envName(setting.flag)]: value }) : parseServeArgs([`--${setting.flag}`, value], {});
    expect(compileServeOptions(options)).toEqual(SERVE_DEFAULTS);
  });

  it("covers every setting that has a default, and says what no value means for the others", () => {
    expect(documented.length).toBeGreaterThan(30);
    for (const setting of SERVE_SETTINGS.filter((s) => s.default === undefined)) expect(setting.note, setting.flag).toMatch(/^none|hostname/);
  });

  it("shows each default in serve --help", () => {
    const usage = serveUsage();
    for (const setting of SERVE_SETTINGS) expect(usage).toContain(`(default ${defaultText(setting)})`);
    expect(usage).toContain("--heartbeat-interval");
    expect(defaultText(SERVE_SETTINGS.find((s) => s.flag === "heartbeat-interval")!)).toBe("5m (half the healthy threshold)");
  });

  it("formats durations as they are parsed", () => {
    for (const ms of [500, 1000, 90_000, 600_000, 2_700_000, 7_200_000, 1500]) expect(parseDuration(formatDuration(ms))).toBe(ms);
    expect(formatDuration(2_700_000)).toBe("45m");
  });
});
