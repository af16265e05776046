import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDirs } from "../support/temp-dir.js";

/**
 * The soak in CI: `bench/soak.ts` (what `npm run soak` runs) for half a
 * minute, sampling every 2 s. It starts its own server and load generator;
 * the test holds it to the same verdict as a long run: memory and handles
 * flat, p99 stable, no unexpected failure, ordered watches, a clean exit and
 * a sound database. A run of 30 minutes or more is recorded in docs/reliability.md.
 */

const SOAK = fileURLToPath(new URL("../../dist/bench/soak.js", import.meta.url));

describe("soak (short version)", () => {
  const dirs = tempDirs();
  afterAll(() => dirs.cleanup());

  it("30 s of mixed load: memory and handles flat, p99 stable, nothing unexpected", { timeout: 120_000 }, async () => {
    if (!existsSync(SOAK)) throw new Error(`${SOAK} is missing: run "npm run build" (npm test does) before these tests`);
    const json = join(dirs.make("registry-soak-test-"), "soak.json");
    const output: string[] = [];
    const child = spawn(process.execPath, [SOAK, "--minutes", "0.5", "--interval-seconds", "2", "--workers", "40", "--json", json], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
    const text = output.join("");
    console.log(text);
    const report = JSON.parse(readFileSync(json, "utf8")) as { rules: Array<{ name: string; ok: boolean; detail: string }>; samples: unknown[] };
    expect(report.samples.length).toBeGreaterThanOrEqual(10);
    expect(report.rules.filter((rule) => !rule.ok)).toEqual([]);
    expect(code, text).toBe(0);
  });
});
