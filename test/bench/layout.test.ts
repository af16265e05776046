import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The benchmark suite stays a tree: no module of bench/ imports, directly or
 * through others, a module that imports it (type-only imports count: a cycle
 * of types is still two files that cannot be read apart), and no file grows
 * past 400 lines.
 */

const BENCH = fileURLToPath(new URL("../../bench/", import.meta.url));

function benchFiles(dir = BENCH): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "results" ? [] : benchFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Each file of bench/ (relative to it) with the files of bench/ it imports, by any form of import or re-export. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of benchFiles()) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    const targets = importedFiles
      .map((imported) => imported.fileName)
      .filter((specifier) => specifier.startsWith("."))
      .map((specifier) => resolve(dirname(file), specifier.replace(/\.js$/, ".ts")))
      .filter((target) => target.startsWith(BENCH))
      .map((target) => relative(BENCH, target));
    graph.set(relative(BENCH, file), [...new Set(targets)]);
  }
  return graph;
}

/** Every cycle reachable in `graph`, each as the path that closes it (a → b → a); none for a tree. */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") cycles.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

describe("bench/ layout", () => {
  it("finds a cycle when there is one (the check itself)", () => {
    const graph = new Map([
      ["run.ts", ["report.ts", "modes.ts"]],
      ["report.ts", ["run.ts"]],
      ["modes.ts", []],
    ]);
    expect(findCycles(graph)).toEqual([["report.ts", "run.ts", "report.ts"]]);
    expect(findCycles(new Map([["a.ts", ["b.ts"]], ["b.ts", []]]))).toEqual([]);
  });

  it("sees the suite's imports, type-only ones included", () => {
    const graph = importGraph();
    expect(graph.get("run.ts")).toEqual(expect.arrayContaining(["report.ts", "results.ts", "scenarios/closed-loop.ts"]));
    expect(graph.get("report.ts")).toContain("results.ts");
  });

  it("has no import cycle", () => {
    expect(findCycles(importGraph()).map((cycle) => cycle.join(" → "))).toEqual([]);
  });

  it("has no file over 400 lines", () => {
    const long = benchFiles()
      .map((file) => ({ file: relative(BENCH, file), lines: readFileSync(file, "utf8").split("\n").length - 1 }))
      .filter(({ lines }) => lines > 400);
    expect(long).toEqual([]);
  });
});
