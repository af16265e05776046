import fs from "node:fs";
import Database from "better-sqlite3";
import { migrate } from "../src/store/migrations.js";

/** Registration time in the ids of seeded workers (2026-01-01T00:00:00Z). */
const SEED_EPOCH_MS = 1_767_225_600_000;

/** The id of the i-th seeded worker: the registry's own id form, worker-<ms>-<9 chars of a-z0-9>. */
export function seededWorkerId(i: number): string {
  return `worker-${SEED_EPOCH_MS}-${i.toString(36).padStart(9, "0")}`;
}

/** Every seeded worker has "general", and one of ten pools. */
export const SEED_CAPABILITY = "general";
export const seededCapabilities = (i: number) => [SEED_CAPABILITY, `pool-${i % 10}`];
export const SEED_MAX_TASKS = 1000;

/**
 * Creates a registry database with `count` workers, written straight into
 * SQLite with the registry's own schema (src/store/migrations.ts), in
 * transactions of 10,000 rows, registered one a millisecond in the order of
 * their ids (as a registry that filled over time stores them), the last just
 * now. Every worker heartbeated just now.
 * Returns the seconds it took.
 */
export function seedDatabase(path: string, count: number): number {
  const started = performance.now();
  const db = new Database(path);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    migrate(db);
    const insertWorker = db.prepare(
      `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, current_tasks, tasks_completed, tasks_failed,
         total_task_duration_ms, registered_at_ms, last_heartbeat_at_ms)
       VALUES (?, ?, ?, ?, 0, 0, 0, 0, ?, ?)`,
    );
    const now = Date.now();
    const batch = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const registeredAtMs = now - (count - 1 - i);
        insertWorker.run(seededWorkerId(i), `bench-node-${String(i).padStart(6, "0")}`, JSON.stringify(seededCapabilities(i)), SEED_MAX_TASKS, registeredAtMs, now);
      }
    });
    for (let from = 0; from < count; from += 10_000) batch(from, Math.min(count, from + 10_000));
    db.pragma("wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
  return (performance.now() - started) / 1000;
}

/** Deletes a seeded database with its WAL and shared-memory files. */
export function removeDatabase(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`]) fs.rmSync(file, { force: true });
}
