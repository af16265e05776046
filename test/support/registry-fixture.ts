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

/** Reservation ids in the production form, predictable in tests. */
export function sequentialReservationIds(clock: FakeClock): () => string {
  let next = 0;
  return () => `rsv-${clock.now()}-t${(next++).toString(36).padStart(19, "0")}`;
}

/** A seeded uniform source in [0, 1) (mulberry32): tests get the same "random" choices every run. */
export function seededRandom(seed = 42): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A registry on a real SQLite store (in memory unless a path is given) and a fake clock. */
export async function createTestRegistry(
  options: RegistryOptions = {},
  setup: { clock?: FakeClock; store?: SqliteStore; log?: Logger; random?: () => number } = {},
): Promise<{ registry: WorkerRegistry; clock: FakeClock; store: SqliteStore }> {
  const clock = setup.clock ?? new FakeClock();
  const store = setup.store ?? openSqliteStore({ path: ":memory:" });
  const registry = await WorkerRegistry.create({
    store,
    clock,
    log: setup.log ?? silentLogger,
    // Tests jump the fake clock by minutes with the whole fleet silent; only the eviction-guard tests want that
    // read as a stall or an intake collapse.
    options: compileRegistryOptions({ stallThresholdMs: 365 * 24 * 3_600_000, collapseMinWorkers: 1_000_000, ...options }),
    newWorkerId: sequentialIds(clock),
    newReservationId: sequentialReservationIds(clock),
    newWorkerSecret: () => Buffer.alloc(32, 7).toString("base64url"),
    random: setup.random ?? seededRandom(),
    replicaId: "test",
  });
  registry.beginServing({ backgroundTasks: false });
  return { registry, clock, store };
}

export const NO_FILTER = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 } as const;
