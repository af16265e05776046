import { join } from "node:path";
import { startRegistryServer } from "../../src/app.js";
import { selectableNames } from "./exposition.js";
import { tempDirs } from "./temp-dir.js";

/**
 * Every series name a PromQL query can select from a registry's /metrics:
 * the families a freshly started server declares (each with its HELP and
 * TYPE, values or not), histograms with their `_bucket`, `_sum` and `_count`.
 */
export async function exportedSeries(): Promise<Set<string>> {
  const dirs = tempDirs();
  const server = await startRegistryServer({ host: "127.0.0.1", port: 0, metricsPort: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
  try {
    return selectableNames(await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text());
  } finally {
    await server.close();
    dirs.cleanup();
  }
}
