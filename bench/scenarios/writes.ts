/**
 * Writes: RegisterWorker, UpdateTaskCount and RecordTaskCompletion, each a
 * store write, against a registry of 1,000 workers and against the ceiling,
 * back to back.
 */
import path from "node:path";
import type { UnaryResult } from "../results.js";
import { seedDatabase } from "../seed.js";
import { measureUnaryLoad } from "../unary-load.js";
import type { ScenarioContext } from "./scenario-context.js";

const WORKERS = 1000;

/** For each write: the registry, then the ceiling. */
export async function measureWrites(context: ScenarioContext): Promise<UnaryResult[]> {
  const { mode, workDir, servers, loadGenerators } = context;
  const dbPath = path.join(workDir, "writes.db");
  seedDatabase(dbPath, WORKERS);
  // One load generator is one peer address; a fleet registers from many. Lift the per-peer
  // registration rate limit (and the worker cap) so the store, not the limiter, is measured.
  const registry = await servers.registry({
    dbPath,
    label: "writes",
    profile: "writes",
    flags: { "max-registrations-per-second": "1000000", "max-workers": "10000000" },
  });
  const echo = await servers.echo();
  const results: UnaryResult[] = [];
  for (const op of ["RegisterWorker", "UpdateTaskCount", "RecordTaskCompletion"] as const) {
    const load = { op, workers: WORKERS, warmupMs: mode.warmupMs, measureMs: mode.writesMeasureMs, load: mode.writesLoad };
    results.push(await measureUnaryLoad(loadGenerators, registry, load));
    results.push(await measureUnaryLoad(loadGenerators, echo, load));
  }
  await servers.stop(echo);
  await servers.stop(registry);
  return results;
}
