import { compileRegistryOptions, type RegistryOptions } from "../../src/domain/registry-options.js";
import { silentLogger, type Logger } from "../../src/domain/logger.js";
import { WorkerRegistry } from "../../src/domain/worker-registry.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "./fake-clock.js";

/** Ids in the guide's form, predictable in tests. */
export function sequentialIds(clock: FakeClock): () => string {
  let next = 0;
  return () => `worker-${clock.now()}-t${(next++).toString(36).padStart(8, "0")}`;
}

/** A registry on a real SQLite store (in memory unless a path is given) and a fake clock. */
export async function createTestRegistry(
  options: RegistryOptions = {},
  setup: { clock?: FakeClock; store?: SqliteStore; log?: Logger } = {},
): Promise<{ registry: WorkerRegistry; clock: FakeClock; store: SqliteStore }> {
  const clock = setup.clock ?? new FakeClock();
  const store = setup.store ?? openSqliteStore({ path: ":memory:" });
  const registry = await WorkerRegistry.create({
    store,
    clock,
    log: setup.log ?? silentLogger,
    options: compileRegistryOptions(options),
    newWorkerId: sequentialIds(clock),
  });
  registry.beginServing({ backgroundTasks: false });
  return { registry, clock, store };
}

export const NO_FILTER = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 } as const;
