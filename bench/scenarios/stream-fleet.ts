import path from "node:path";
import { fmt, log } from "../progress.js";
import { seedDatabase } from "../seed.js";
import type { ScenarioContext } from "./scenario-context.js";

/**
 * Seeds the database the heartbeat scenarios (closed loop, paced fleet)
 * share, with a worker for every stream either opens, and returns its path.
 */
export function seedStreamFleet(context: ScenarioContext): string {
  const { mode, workDir } = context;
  const dbPath = path.join(workDir, "streams.db");
  const workers = Math.max(...mode.closedLoopStreams, mode.pacedWorkers);
  log(`seeding ${fmt(workers)} workers for the heartbeat streams (${seedDatabase(dbPath, workers).toFixed(2)} s)`);
  return dbPath;
}
