import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/domain/errors.js";
import { LabelSelector, validateLabels, validateVersion } from "../../src/domain/labels.js";

// Kubernetes' semantics (k8s.io/apimachinery/pkg/labels): every requirement must hold; `!=` and `notin` hold for
// an object without the label; `key` needs the label present, `!key` absent.
const EU_GPU = { zone: "eu-1", tier: "on-demand", gpu: "a100", ssd: "" };
const US_SPOT = { zone: "us-2", tier: "spot", gpu: "t4", preemptible: "true" };
const BARE = {};
const PREFIXED = { "example.com/team": "ml", zone: "eu-1" };

describe("label selector: matching, as Kubernetes defines it", () => {
  const cases: ReadonlyArray<readonly [selector: string, eu: boolean, us: boolean, bare: boolean, prefixed: boolean]> = [
    ["", true, true, true, true],
    ["   ", true, true, true, true],
    ["zone=eu-1", true, false, false, true],
    ["zone==eu-1", true, false, false, true],
    ["zone = eu-1", true, false, false, true],
    ["tier!=spot", true, false, true, true],
    ["gpu in (a100,h100)", true, false, false, false],
    ["gpu in (a100, h100)", true, false, false, false],
    ["gpu notin (t4)", true, false, true, true],
    ["ssd", true, false, false, false],
    ["!preemptible", true, false, true, true],
    ["zone=eu-1,tier!=spot", true, false, false, true],
    ["zone=eu-1,!ssd", false, false, false, true],
    ["zone in (eu-1,us-2),gpu", true, true, false, false],
    // A label with an empty value is present: `ssd` matches it, `ssd=` matches exactly it.
    ["ssd=", true, false, false, false],
    ["ssd!=", false, true, true, true],
    ["zone in (eu-1,)", true, false, false, true],
    ["example.com/team=ml", false, false, false, true],
    ["example.com/team", false, false, false, true],
    ["!example.com/team", true, true, true, false],
    ["zone notin (eu-1,us-2)", false, false, true, false],
    // Keys and values are case-sensitive.
    ["zone=EU-1", false, false, false, false],
    // "in" and "notin" are keys like any other where no values follow.
    ["in", false, false, false, false],
  ];

  it.each(cases)("%j matches eu=%s us=%s bare=%s prefixed=%s", (text, eu, us, bare, prefixed) => {
    const selector = LabelSelector.parse(text);
    expect([EU_GPU, US_SPOT, BARE, PREFIXED].map((labels) => selector.matches(labels))).toEqual([eu, us, bare, prefixed]);
  });

  it("does not match inherited object properties as labels", () => {
    expect(LabelSelector.parse("constructor").matches({})).toBe(false);
    expect(LabelSelector.parse("toString!=x").matches({})).toBe(true);
  });
});

describe("label selector: syntax errors name the position", () => {
  const errors: ReadonlyArray<readonly [selector: string, message: string]> = [
    ["zone=eu-1,", "position 11: expected a label key, found the end of the selector"],
    [",zone", 'position 1: expected a label key, found ","'],
    ["zone eu-1", 'position 6: expected an operator (=, ==, !=, in, notin) after the key "zone", found "eu-1"'],
    ["zone in eu-1", 'position 9: expected "(" to open the set of values, found "eu-1"'],
    ["zone in ()", 'position 10: expected at least one value in the set, found ")"'],
    ["zone in (a,b", "position 13: expected a comma or \")\" in the set of values, found the end of the selector"],
    ["zone in (a b)", 'position 12: expected a comma or ")" in the set of values, found "b"'],
    ["zone=a=b", 'position 7: expected a comma between requirements or the end of the selector, found "="'],
    ["zone=(a)", 'position 6: expected a label value, found "("'],
    ["!zone=a", 'position 6: expected a comma between requirements or the end of the selector, found "="'],
    ["!", "position 2: expected a label key, found the end of the selector"],
    ["-zone=a", 'position 1: expected a valid label key: "-zone" has name "-zone": a name must be 1 to 63 characters [a-z0-9A-Z-_.] that start and end alphanumeric, found "-zone"'],
    ["Example.com/x=a", 'position 1: expected a valid label key: "Example.com/x" has prefix "Example.com": a prefix must be a DNS subdomain (lowercase a-z, 0-9, "-" and ".", at most 253 characters), found "Example.com/x"'],
    [`zone=${"v".repeat(64)}`, "position 6: expected a valid label value: it must be empty or 1 to 63 characters"],
    ["zone>1", 'position 1: expected a valid label key: "zone>1" has name "zone>1"'],
  ];

  it.each(errors)("%j is INVALID_ARGUMENT: %s", (text, message) => {
    let caught: unknown;
    try {
      LabelSelector.parse(text);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as InvalidArgumentError).field).toBe("filter.label_selector");
    expect((caught as Error).message).toContain(`filter.label_selector has a syntax error at ${message}`);
  });
});

describe("labels and versions at registration", () => {
  it("accepts Kubernetes-valid keys and values", () => {
    expect(() =>
      validateLabels({ zone: "eu-1", "example.com/team": "ml", "a.b-c_d": "", x: "A1.b_c-d", [`k${"8".repeat(62)}`]: "v".repeat(63) }),
    ).not.toThrow();
  });

  it.each([
    [{ "": "x" }, 'labels[""] key has name "": a name must be'],
    [{ [`k${"8".repeat(63)}`]: "x" }, "key has name"],
    [{ "a/b/c": "x" }, 'key has name "b/c"'],
    [{ "/x": "x" }, 'key has prefix "": a prefix must be a DNS subdomain'],
    [{ zone: "eu 1" }, 'labels["zone"] value must be empty or 1 to 63 characters [a-z0-9A-Z-_.] that start and end alphanumeric, got "eu 1"'],
    [{ zone: "-eu" }, "value must be empty or"],
    [{ zone: "v".repeat(64) }, "value must be empty or"],
  ])("refuses %j naming the label", (labels, message) => {
    expect(() => validateLabels(labels)).toThrow(message);
  });

  it("refuses more than 64 labels", () => {
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    expect(() => validateLabels(labels)).toThrow("labels must have at most 64 entries, got 65");
  });

  it("takes a version without white space or invisible characters, at most 128 long", () => {
    expect(() => validateVersion("2026.11.3+build.7")).not.toThrow();
    expect(() => validateVersion("")).not.toThrow();
    expect(() => validateVersion("v 2")).toThrow('version must not contain white space, control or format characters, got "v 2"');
    expect(() => validateVersion("v\u202e2")).toThrow("version must not contain white space");
    expect(() => validateVersion("v".repeat(129))).toThrow("version must be at most 128 characters, got 129");
  });
});
