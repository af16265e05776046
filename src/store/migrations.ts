import type Database from "better-sqlite3";

/** One forward step of the schema. */
export interface Migration {
  /** The `PRAGMA user_version` the database has once this migration is applied: 1, 2, 3, ... */
  readonly version: number;
  readonly description: string;
  /** Runs inside the migration's transaction, with foreign keys enforced. */
  readonly up: (db: Database.Database) => void;
}

/**
 * Every schema version, oldest first. Append new migrations; never edit or
 * reorder an existing one, since databases in the field have already run it.
 */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "workers, their capability index and registry metadata",
    up: (db) =>
      db.exec(`
        CREATE TABLE workers (
          id TEXT NOT NULL PRIMARY KEY,
          node_id TEXT NOT NULL,
          -- A JSON array rather than only the join table, so registration order survives.
          capabilities TEXT NOT NULL CHECK (json_type(capabilities) = 'array'),
          max_concurrent_tasks INTEGER NOT NULL CHECK (max_concurrent_tasks >= 1),
          current_tasks INTEGER NOT NULL DEFAULT 0 CHECK (current_tasks BETWEEN 0 AND max_concurrent_tasks),
          tasks_completed INTEGER NOT NULL DEFAULT 0,
          tasks_failed INTEGER NOT NULL DEFAULT 0,
          total_task_duration_ms REAL NOT NULL DEFAULT 0,
          registered_at_ms INTEGER NOT NULL,
          last_heartbeat_at_ms INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX workers_last_heartbeat_idx ON workers (last_heartbeat_at_ms);

        -- Lets a capability filter seek by capability instead of parsing every worker's JSON.
        CREATE TABLE worker_capabilities (
          capability TEXT NOT NULL,
          worker_id TEXT NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
          PRIMARY KEY (capability, worker_id)
        ) STRICT, WITHOUT ROWID;
        -- Without it, every cascade from a deleted worker would scan the whole table.
        CREATE INDEX worker_capabilities_worker_idx ON worker_capabilities (worker_id);

        CREATE TABLE registry_meta (
          key TEXT NOT NULL PRIMARY KEY,
          value INTEGER NOT NULL
        ) STRICT;
      `),
  },
  {
    version: 2,
    description: "the revisioned event log and slot reservations",
    up: (db) =>
      db.exec(`
        -- revision is the rowid: appends are cheap and reads by revision are a range scan.
        CREATE TABLE events (
          revision INTEGER NOT NULL PRIMARY KEY,
          type TEXT NOT NULL,
          worker_id TEXT NOT NULL,
          occurred_at_ms INTEGER NOT NULL,
          payload TEXT NOT NULL
        ) STRICT;
        CREATE INDEX events_occurred_idx ON events (occurred_at_ms);

        CREATE TABLE reservations (
          id TEXT NOT NULL PRIMARY KEY,
          worker_id TEXT NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
          created_at_ms INTEGER NOT NULL,
          expires_at_ms INTEGER NOT NULL,
          -- Ended reservations stay a while, so a repeated release can say it is one.
          state TEXT NOT NULL CHECK (state IN ('active', 'released', 'expired')),
          ended_at_ms INTEGER
        ) STRICT;
        CREATE INDEX reservations_worker_idx ON reservations (worker_id);
        CREATE INDEX reservations_ended_idx ON reservations (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
      `),
  },
  {
    version: 3,
    description: "per-worker credentials: the hash of each worker's token, and who registered it",
    up: (db) =>
      db.exec(`
        -- Only hashes: a copy of the database gives no one a usable token.
        ALTER TABLE workers ADD COLUMN token_hash TEXT NOT NULL DEFAULT '';
        ALTER TABLE workers ADD COLUMN registered_by TEXT;
      `),
  },
  {
    version: 4,
    description: "no index on event times: pruning walks the log in revision order, and every append saves a page write",
    up: (db) => db.exec(`DROP INDEX events_occurred_idx;`),
  },
  {
    version: 5,
    description: "a node_id index for registrations that replace a node's worker; no capability table, which nothing read",
    up: (db) =>
      db.exec(`
        CREATE INDEX workers_node_idx ON workers (node_id);
        DROP TABLE worker_capabilities;
      `),
  },
  {
    version: 6,
    description: "announced health is stored, so every process that loads the store starts from it; the lease row",
    up: (db) =>
      db.exec(`
        ALTER TABLE workers ADD COLUMN health TEXT NOT NULL DEFAULT 'healthy' CHECK (health IN ('healthy', 'degraded', 'unhealthy'));
        -- Who runs the fleet-wide schedules; with SQLite one process holds the file, so it is always that one.
        CREATE TABLE registry_lease (
          id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
          owner TEXT NOT NULL,
          epoch INTEGER NOT NULL,
          expires_at_ms INTEGER NOT NULL
        ) STRICT;
      `),
  },
  {
    version: 7,
    description: "fleet lifecycle: labels, version, state (active, cordoned, draining) and the drain deadline",
    up: (db) =>
      db.exec(`
        ALTER TABLE workers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}' CHECK (json_type(labels) = 'object');
        ALTER TABLE workers ADD COLUMN version TEXT NOT NULL DEFAULT '';
        ALTER TABLE workers ADD COLUMN state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cordoned', 'draining'));
        ALTER TABLE workers ADD COLUMN drain_deadline_ms INTEGER CHECK ((state = 'draining') = (drain_deadline_ms IS NOT NULL));
      `),
  },
];

/** The schema version this build writes: the last migration's. */
export const latestSchemaVersion: number = migrations.at(-1)?.version ?? 0;

/**
 * Brings the database up to {@link latestSchemaVersion}, applying each pending
 * migration in its own IMMEDIATE transaction together with its `user_version`,
 * so a crash leaves the database at a whole version. An up-to-date database is
 * only read, so a read-only file still opens.
 *
 * @returns the version found and the version now in place.
 * @throws Error if the database was written by a newer build (its version is
 *   unknown here), or whatever SQLite throws; a failed migration is rolled back.
 */
export function migrate(db: Database.Database): { from: number; to: number } {
  const readVersion = (): number => db.pragma("user_version", { simple: true }) as number;
  const from = readVersion();
  if (from > latestSchemaVersion) {
    throw new Error(`database schema version ${from} is newer than this build supports (${latestSchemaVersion})`);
  }
  for (const [index, migration] of migrations.entries()) {
    if (migration.version !== index + 1) {
      throw new Error(`migration versions must be 1, 2, 3, ...; found ${migration.version} at position ${index + 1}`);
    }
    if (migration.version <= from) continue;
    db.transaction(() => {
      // Another process may have migrated between our first read and this lock.
      if (readVersion() >= migration.version) return;
      migration.up(db);
      db.pragma(`user_version = ${migration.version}`);
    }).immediate();
  }
  return { from, to: latestSchemaVersion };
}
