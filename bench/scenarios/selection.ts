/**
 * Selection: orchestrators asking for workers (GetWorkersForLoadBalancing,
 * and AcquireWorker with its ReleaseWorker) against registries of 1k, 10k
 * and 100k workers, with the registry's own histogram for the server-side
 * cost; the same calls against the ceiling; and the same selection timed
 * inside one process (bench/selection-inproc.ts), where the 100k / 10k cost
 * ratio is exact rather than bucketed.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import type { ModeConfig } from "../modes.js";
import { fmt, fx, log } from "../progress.js";
import type { InprocResult, SelectionResult, UnaryResult } from "../results.js";
import { removeDatabase, seedDatabase } from "../seed.js";
import { ROOT } from "../servers.js";
import { measureUnaryLoad } from "../unary-load.js";
import type { ScenarioContext } from "./scenario-context.js";

const OPS = ["GetWorkersForLoadBalancing", "AcquireRelease"] as const;

/** Each fleet size of the mode on a freshly seeded registry (with metrics), then the ceiling, then in-process. */
export async function measureSelection(context: ScenarioContext): Promise<SelectionResult> {
  const { mode, workDir, servers, loadGenerators } = context;
  const load = (op: (typeof OPS)[number], workers: number) => ({ op, workers, warmupMs: mode.warmupMs, measureMs: mode.selectionMeasureMs, load: mode.selectionLoad });
  const selection: UnaryResult[] = [];
  for (const size of mode.selectionSizes) {
    const dbPath = path.join(workDir, `selection-${size}.db`);
    log(`seeded ${fmt(size)} workers in ${seedDatabase(dbPath, size).toFixed(2)} s`);
    const label = `selection-${size}`;
    const server = await servers.registry({ dbPath, label, profile: label, metrics: true });
    for (const op of OPS) selection.push(await measureUnaryLoad(loadGenerators, server, load(op, size)));
    await servers.stop(server);
    removeDatabase(dbPath);
  }
  const echo = await servers.echo();
  for (const op of OPS) selection.push(await measureUnaryLoad(loadGenerators, echo, load(op, 0)));
  await servers.stop(echo);
  return { selection, inproc: await measureInProcess(mode, workDir) };
}

/** Runs dist/bench/selection-inproc.js over the mode's fleet sizes and reads its JSON lines. */
async function measureInProcess(mode: ModeConfig, workDir: string): Promise<InprocResult[]> {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "dist/bench/selection-inproc.js"), "--sizes", mode.selectionSizes.join(","), "--budget-ms", String(mode.inprocBudgetMs), "--dir", workDir],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`selection-inproc exited with ${code}`);
  const results = out
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as InprocResult);
  for (const r of results) {
    log(
      `in-process ${fmt(r.workers)} workers: GetWorkersForLoadBalancing p50 ${fx(r.rank.p50Ms, 3)} p99 ${fx(r.rank.p99Ms, 3)} ms; ` +
        `AcquireWorker p50 ${fx(r.acquire.p50Ms, 3)} p99 ${fx(r.acquire.p99Ms, 3)} ms`,
    );
  }
  return results;
}
