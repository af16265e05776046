/**
 * Cold start: from spawning `worker-registry serve` on a database of 100k
 * workers to its "registry serving" line, next to a bare grpc-js server's
 * spawn to bound, once per run of the mode.
 */
import path from "node:path";
import { fmt, log } from "../progress.js";
import type { ColdStartResult } from "../results.js";
import { removeDatabase, seedDatabase } from "../seed.js";
import type { ScenarioContext } from "./scenario-context.js";

/** Seeds `mode.coldStartWorkers` workers, then starts and stops the registry and the ceiling `mode.coldStartRuns` times each. */
export async function measureColdStart(context: ScenarioContext): Promise<ColdStartResult> {
  const { mode, workDir, servers } = context;
  const workers = mode.coldStartWorkers;
  const dbPath = path.join(workDir, `coldstart-${workers}.db`);
  const seedSeconds = seedDatabase(dbPath, workers);
  log(`seeded ${fmt(workers)} workers in ${seedSeconds.toFixed(2)} s`);
  const registryMs: number[] = [];
  const echoMs: number[] = [];
  for (let run = 0; run < mode.coldStartRuns; run++) {
    const label = `coldstart-${run}`;
    const registry = await servers.registry({ dbPath, logLevel: "info", label, profile: label });
    registryMs.push(registry.startMs);
    await servers.stop(registry);
    const echo = await servers.echo();
    echoMs.push(echo.startMs);
    await servers.stop(echo);
  }
  log(`cold start with ${fmt(workers)} workers: ${registryMs.map((ms) => `${ms.toFixed(0)} ms`).join(", ")} (bare grpc-js server: ${echoMs.map((ms) => `${ms.toFixed(0)} ms`).join(", ")})`);
  removeDatabase(dbPath);
  return { workers, seedSeconds, registryMs, echoMs };
}
