import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// The READMEs' acquisition, watch and lifecycle snippets are copied from the
// examples that package-install.integration.test.ts runs from the packed
// package; this keeps each copy equal to its region of an example, so a
// snippet cannot drift from code that is known to run.

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
const acquireAndWatch = read("clients/typescript/examples/acquire-and-watch.mjs");
const rollingUpgrade = read("clients/typescript/examples/rolling-upgrade.mjs");

/** The lines between `// #region NAME` and `// #endregion`, without their common indentation. */
function exampleRegion(name: string, example = acquireAndWatch): string {
  const match = new RegExp(`^[ \\t]*// #region ${name}\\n([\\s\\S]*?)^[ \\t]*// #endregion`, "m").exec(example);
  if (match === null) throw new Error(`no region ${name} in the example`);
  const lines = match[1]!.replace(/\n$/, "").split("\n");
  const indent = Math.min(...lines.filter((line) => line.trim() !== "").map((line) => /^ */.exec(line)![0].length));
  return lines.map((line) => line.slice(indent)).join("\n");
}

/** The bodies of the fenced blocks of `language` in `markdown`. */
function codeBlocks(markdown: string, language: string): string[] {
  return [...markdown.matchAll(new RegExp("^```" + language + "\\n([\\s\\S]*?)\\n```$", "gm"))].map((match) => match[1]!);
}

/** A `## ` section of a README, up to the next one. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`no section "${heading}"`);
  const end = markdown.indexOf("\n## ", start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

describe("the README snippets of acquisition and watch", () => {
  it.each(["watch", "with-worker"])("the root README's From TypeScript section shows the example's %s region as it is", (region) => {
    const blocks = codeBlocks(section(read("README.md"), "From TypeScript"), "ts");
    expect(blocks).toContain(exampleRegion(region));
  });

  it.each(["watch", "with-worker", "acquire", "no-worker"])("the package README shows the example's %s region as it is", (region) => {
    expect(codeBlocks(read("clients/typescript/README.md"), "ts")).toContain(exampleRegion(region));
  });

  it("has regions worth showing: each is code, not an empty marker", () => {
    for (const region of ["watch", "with-worker", "acquire", "no-worker"]) {
      expect(exampleRegion(region).split("\n").length).toBeGreaterThan(2);
    }
    expect(exampleRegion("watch")).toContain("registry.watchWorkers(");
    expect(exampleRegion("with-worker")).toContain("registry.withWorker(");
  });
});

describe("the README snippets of the fleet lifecycle", () => {
  const regions = ["versioned-node", "drain-by-version", "refused", "select"];

  it.each(regions)("the package README shows the rolling upgrade's %s region as it is", (region) => {
    expect(codeBlocks(read("clients/typescript/README.md"), "ts")).toContain(exampleRegion(region, rollingUpgrade));
  });

  it("has regions worth showing", () => {
    for (const region of regions) expect(exampleRegion(region, rollingUpgrade).split("\n").length).toBeGreaterThanOrEqual(2);
    expect(exampleRegion("drain-by-version", rollingUpgrade)).toContain("registry.drainWorker(");
    expect(exampleRegion("versioned-node", rollingUpgrade)).toContain("version },");
  });
});
