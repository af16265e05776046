import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// The READMEs' acquisition and watch snippets are copied from the example
// that package-install.integration.test.ts runs from the packed package; this
// keeps each copy equal to its region of the example, so a snippet cannot
// drift from code that is known to run.

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
const example = read("clients/typescript/examples/acquire-and-watch.mjs");

/** The lines between `// #region NAME` and `// #endregion`, without their common indentation. */
function exampleRegion(name: string): string {
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
