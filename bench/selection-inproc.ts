/**
 * Server-side cost of selection, timed inside one process against the
 * registry itself (WorkerRegistry on the real SQLite store, no transport),
 * so that the 100k / 10k cost ratio is exact rather than bucketed.
 *
 *   node dist/bench/selection-inproc.js --sizes 1000,10000,100000 --budget-ms 1000 [--dir /tmp/x]
 *
 * Prints one JSON line per size: {workers, rank, acquire, release} with
 * latency summaries in ms. Run with `node --cpu-prof` to see where the time goes.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startRegistryServer } from "../src/app.js";
import { LatencyHistogram } from "./histogram.js";
import type { InprocResult } from "./results.js";
import { SEED_CAPABILITY, seedDatabase } from "./seed.js";

const FILTER = { capabilities: [SEED_CAPABILITY], healthStatuses: [], minAvailableCapacity: 0 };

async function measure(workers: number, budgetMs: number, dir: string): Promise<InprocResult> {
  const dbPath = path.join(dir, `inproc-${workers}.db`);
  seedDatabase(dbPath, workers);
  // The composition root as `serve` uses it (store, registry, background tasks), on a loopback port nobody calls:
  // the timings below are of the registry object itself.
  const server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" });
  const registry = server.registry;
  const rank = new LatencyHistogram();
  const acquire = new LatencyHistogram();
  const release = new LatencyHistogram();
  try {
    // Warm-up: let V8 optimise before timing.
    for (let i = 0; i < 50; i++) registry.getWorkersForLoadBalancing(FILTER, 10);
    for (let i = 0; i < 50; i++) {
      const acquired = await registry.acquireWorker(FILTER);
      await registry.releaseWorker(acquired.reservationId, true, 50);
    }
    for (const end = performance.now() + budgetMs; performance.now() < end || rank.count < 10; ) {
      const started = performance.now();
      registry.getWorkersForLoadBalancing(FILTER, 10);
      rank.recordMs(performance.now() - started);
    }
    for (const end = performance.now() + budgetMs; performance.now() < end || acquire.count < 10; ) {
      const started = performance.now();
      const acquired = await registry.acquireWorker(FILTER);
      const acquiredAt = performance.now();
      acquire.recordMs(acquiredAt - started);
      await registry.releaseWorker(acquired.reservationId, true, 50);
      release.recordMs(performance.now() - acquiredAt);
    }
  } finally {
    await server.close();
    fs.rmSync(dbPath, { force: true });
  }
  return { workers, rank: rank.summary(), acquire: acquire.summary(), release: release.summary() };
}

const { values } = parseArgs({
  options: { sizes: { type: "string", default: "1000,10000,100000" }, "budget-ms": { type: "string", default: "1000" }, dir: { type: "string" } },
});
const dir = values.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "registry-bench-inproc-"));
try {
  for (const size of values.sizes!.split(",").map(Number)) {
    console.log(JSON.stringify(await measure(size, Number(values["budget-ms"]), dir)));
  }
} finally {
  if (values.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
}
