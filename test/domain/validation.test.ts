import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/domain/errors.js";
import { DEFAULT_LIMITS } from "../../src/domain/registry-options.js";
import { validateDuration, validateFilter, validateRegistration, validateWorkerId } from "../../src/domain/validation.js";

const good = { nodeId: "node-1", capabilities: ["coder", "gpu:a100"], maxConcurrentTasks: 5 };

function fieldOf(action: () => void): string {
  try {
    action();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return `${error.field}: ${error.message}`;
    throw error;
  }
  throw new Error("expected an InvalidArgumentError");
}

describe("validateRegistration", () => {
  it("accepts a good registration", () => {
    expect(() => validateRegistration(good, DEFAULT_LIMITS)).not.toThrow();
  });

  it.each([
    ["empty node_id", { nodeId: "" }, /^node_id: node_id must not be empty/],
    ["oversized node_id", { nodeId: "n".repeat(254) }, /^node_id: .*at most 253 characters, got 254/],
    ["control character in node_id", { nodeId: "node\u0000one" }, /^node_id: node_id must not contain control, format or line-separator characters, got U\+0000 in "node\\u0000one"$/],
    ["no capabilities", { capabilities: [] }, /^capabilities: .*at least one/],
    ["too many capabilities", { capabilities: Array.from({ length: 65 }, (_, i) => `c${i}`) }, /^capabilities: .*at most 64 entries, got 65/],
    ["empty capability", { capabilities: ["coder", ""] }, /^capabilities\[1\]: .*must not be empty/],
    ["oversized capability", { capabilities: ["c".repeat(65)] }, /^capabilities\[0\]: .*at most 64 characters/],
    ["duplicate capability", { capabilities: ["coder", "tester", "coder"] }, /^capabilities\[2\]: .*repeats "coder"/],
    ["capability with a space", { capabilities: ["code review"] }, /^capabilities\[0\]: .*white space/],
    ["capability with a newline", { capabilities: ["coder\n"] }, /^capabilities\[0\]: .*white space, control, format or line-separator characters, got U\+000A in "coder\\n"$/],
    ["zero max_concurrent_tasks", { maxConcurrentTasks: 0 }, /^max_concurrent_tasks: max_concurrent_tasks must be between 1 and 10000, got 0$/],
    ["negative max_concurrent_tasks", { maxConcurrentTasks: -3 }, /^max_concurrent_tasks: .*got -3$/],
    ["absurd max_concurrent_tasks", { maxConcurrentTasks: 10_001 }, /^max_concurrent_tasks: .*got 10001$/],
  ])("refuses %s", (_name, change, expected) => {
    expect(fieldOf(() => validateRegistration({ ...good, ...change }, DEFAULT_LIMITS))).toMatch(expected);
  });
});

describe("invisible and direction-changing characters", () => {
  // Regression: bidi controls, zero-width and format characters and line separators were accepted in node ids and
  // capabilities, where they can make a dashboard or a log show something other than what is stored.
  it.each([
    ["a right-to-left override (U+202E)", "\u202e", "U+202E"],
    ["a zero-width space (U+200B)", "\u200b", "U+200B"],
    ["a line separator (U+2028)", "\u2028", "U+2028"],
    ["a paragraph separator (U+2029)", "\u2029", "U+2029"],
    ["a byte-order mark (U+FEFF)", "\ufeff", "U+FEFF"],
    ["a left-to-right isolate (U+2066)", "\u2066", "U+2066"],
    ["a soft hyphen (U+00AD)", "\u00ad", "U+00AD"],
  ])("refuses %s in node_id and in a capability, naming the code point and escaping it in the message", (_name, character, codePoint) => {
    const nodeId = fieldOf(() => validateRegistration({ ...good, nodeId: `node${character}1` }, DEFAULT_LIMITS));
    const capability = fieldOf(() => validateRegistration({ ...good, capabilities: ["coder", `gpu${character}`] }, DEFAULT_LIMITS));
    const escaped = `\\u${codePoint.slice(2).toLowerCase()}`;
    expect(nodeId).toBe(`node_id: node_id must not contain control, format or line-separator characters, got ${codePoint} in "node${escaped}1"`);
    expect(capability).toBe(`capabilities[1]: capabilities[1] must not contain white space, control, format or line-separator characters, got ${codePoint} in "gpu${escaped}"`);
  });

  it("refuses a format character beyond U+FFFF (a language tag), escaping both of its UTF-16 units", () => {
    expect(fieldOf(() => validateRegistration({ ...good, nodeId: "node\u{E0001}" }, DEFAULT_LIMITS))).toBe(
      'node_id: node_id must not contain control, format or line-separator characters, got U+E0001 in "node\\udb40\\udc01"',
    );
  });

  it("refuses a node_id of white space alone", () => {
    for (const blank of [" ", "   ", "\u00a0", "\u3000\u2003"]) {
      expect(fieldOf(() => validateRegistration({ ...good, nodeId: blank }, DEFAULT_LIMITS)), JSON.stringify(blank)).toBe("node_id: node_id must not be blank");
    }
    expect(() => validateRegistration({ ...good, nodeId: "rack 4 node 1" }, DEFAULT_LIMITS)).not.toThrow();
  });

  it("counts lengths in characters (code points), not UTF-16 units, as the message says", () => {
    const astral = "💥"; // one character, two UTF-16 units
    expect(() => validateRegistration({ ...good, nodeId: astral.repeat(253) }, DEFAULT_LIMITS)).not.toThrow();
    expect(fieldOf(() => validateRegistration({ ...good, nodeId: astral.repeat(254) }, DEFAULT_LIMITS))).toBe("node_id: node_id must be at most 253 characters, got 254");
    expect(() => validateRegistration({ ...good, capabilities: ["名".repeat(64)] }, DEFAULT_LIMITS)).not.toThrow();
    expect(() => validateRegistration({ ...good, capabilities: [astral.repeat(64)] }, DEFAULT_LIMITS)).not.toThrow();
    expect(fieldOf(() => validateRegistration({ ...good, capabilities: [astral.repeat(65)] }, DEFAULT_LIMITS))).toBe(
      "capabilities[0]: capabilities[0] must be at most 64 characters, got 65",
    );
  });

  it("still accepts letters of any script, and emoji", () => {
    expect(() => validateRegistration({ ...good, nodeId: "узел-1 名前 💥", capabilities: ["gpu:a100", "語"] }, DEFAULT_LIMITS)).not.toThrow();
  });
});

describe("validateWorkerId", () => {
  it("accepts the guide's form and refuses anything else", () => {
    expect(() => validateWorkerId("worker-1730345678-abc123xyz")).not.toThrow();
    expect(fieldOf(() => validateWorkerId(""))).toBe("worker_id: worker_id is required");
    expect(fieldOf(() => validateWorkerId("worker-1730345678-ABC"))).toMatch(/^worker_id: .*worker-<timestamp>-<random>/);
    expect(fieldOf(() => validateWorkerId("'; DROP TABLE workers; --"))).toMatch(/^worker_id:/);
  });
});

describe("validateDuration", () => {
  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, DEFAULT_LIMITS.maxTaskDurationMs + 1])("refuses %d", (value) => {
    expect(fieldOf(() => validateDuration(value, DEFAULT_LIMITS))).toMatch(/^duration_ms: .*got/);
  });

  it("accepts zero and fractional milliseconds", () => {
    expect(() => validateDuration(0, DEFAULT_LIMITS)).not.toThrow();
    expect(() => validateDuration(12.5, DEFAULT_LIMITS)).not.toThrow();
  });
});

describe("validateFilter", () => {
  const none = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };

  // Regression: a filter of 250k health statuses on 40 watchers made every event cost milliseconds to match.
  it("refuses more than 3 health_statuses, or one listed twice, naming filter.health_statuses", () => {
    expect(() => validateFilter({ ...none, healthStatuses: ["healthy", "degraded", "unhealthy"] }, DEFAULT_LIMITS)).not.toThrow();
    const many = Array.from({ length: 250_000 }, () => "healthy" as const);
    expect(fieldOf(() => validateFilter({ ...none, healthStatuses: many }, DEFAULT_LIMITS))).toBe(
      "filter.health_statuses: filter.health_statuses must have at most 3 entries (one per health status), got 250000",
    );
    expect(fieldOf(() => validateFilter({ ...none, healthStatuses: ["degraded", "healthy", "degraded"] }, DEFAULT_LIMITS))).toBe(
      "filter.health_statuses[2]: filter.health_statuses[2] repeats degraded",
    );
  });

  it("names the bad filter field", () => {
    const filter = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };
    expect(fieldOf(() => validateFilter({ ...filter, minAvailableCapacity: -1 }, DEFAULT_LIMITS))).toMatch(/^filter\.min_available_capacity: /);
    expect(fieldOf(() => validateFilter({ ...filter, capabilities: ["ok", "not ok"] }, DEFAULT_LIMITS))).toMatch(/^filter\.capabilities\[1\]: /);
  });
});
