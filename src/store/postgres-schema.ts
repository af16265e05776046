import type pg from "pg";

/** One forward step of the PostgreSQL schema. */
export interface PostgresMigration {
  /** The version the schema has once this migration is applied: 1, 2, 3, ... */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/**
 * Every schema version, oldest first. Append new migrations; never edit or
 * reorder one, since databases in the field have already run it.
 *
 * Times are wall-clock milliseconds as the registry processes see them,
 * except the lease's expiry, which is the database's own clock so that the
 * replicas' clocks never decide who leads.
 */
export const postgresMigrations: readonly PostgresMigration[] = [
  {
    version: 1,
    description: "workers, reservations, the revisioned event log, the revision counter and the lease",
    sql: `
      CREATE TABLE workers (
        id text PRIMARY KEY,
        node_id text NOT NULL,
        -- A JSON array, so registration order survives.
        capabilities jsonb NOT NULL CHECK (jsonb_typeof(capabilities) = 'array'),
        max_concurrent_tasks integer NOT NULL CHECK (max_concurrent_tasks >= 1),
        -- reserved_tasks counts active reservations, kept under the row's lock with every change of them, so a
        -- task count is bounded by one conditional UPDATE whatever other replicas do at the same moment.
        current_tasks integer NOT NULL DEFAULT 0,
        reserved_tasks integer NOT NULL DEFAULT 0 CHECK (reserved_tasks >= 0),
        tasks_completed bigint NOT NULL DEFAULT 0,
        tasks_failed bigint NOT NULL DEFAULT 0,
        total_task_duration_ms double precision NOT NULL DEFAULT 0,
        registered_at_ms bigint NOT NULL,
        last_heartbeat_at_ms bigint NOT NULL,
        health text NOT NULL DEFAULT 'healthy' CHECK (health IN ('healthy', 'degraded', 'unhealthy')),
        token_hash text NOT NULL,
        registered_by text,
        CHECK (current_tasks BETWEEN reserved_tasks AND max_concurrent_tasks)
      );
      -- What the leader's scan for overdue workers and a replica's read of new heartbeats use.
      CREATE INDEX workers_last_heartbeat_idx ON workers (last_heartbeat_at_ms);
      CREATE INDEX workers_node_idx ON workers (node_id);

      CREATE TABLE reservations (
        id text PRIMARY KEY,
        worker_id text NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
        created_at_ms bigint NOT NULL,
        expires_at_ms bigint NOT NULL,
        state text NOT NULL CHECK (state IN ('active', 'released', 'expired')),
        ended_at_ms bigint
      );
      CREATE INDEX reservations_worker_idx ON reservations (worker_id);
      CREATE INDEX reservations_ended_idx ON reservations (ended_at_ms) WHERE ended_at_ms IS NOT NULL;

      -- revision is numbered from the counter row below, inside the writing transaction: gap-free in commit order.
      CREATE TABLE events (
        revision bigint PRIMARY KEY,
        type text NOT NULL,
        worker_id text NOT NULL,
        occurred_at_ms bigint NOT NULL,
        payload text NOT NULL
      );

      CREATE TABLE registry_meta (
        key text PRIMARY KEY,
        value bigint NOT NULL
      );
      INSERT INTO registry_meta (key, value) VALUES ('revision', 0), ('compacted_revision', 0);

      CREATE TABLE registry_lease (
        id integer PRIMARY KEY CHECK (id = 1),
        owner text NOT NULL,
        epoch bigint NOT NULL,
        expires_at timestamptz NOT NULL
      );
    `,
  },
  {
    version: 2,
    description: "fleet lifecycle: labels, version, state (active, cordoned, draining) and the drain deadline",
    sql: `
      ALTER TABLE workers
        ADD COLUMN labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
        ADD COLUMN version text NOT NULL DEFAULT '',
        ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cordoned', 'draining')),
        ADD COLUMN drain_deadline_ms bigint,
        ADD CHECK ((state = 'draining') = (drain_deadline_ms IS NOT NULL));
    `,
  },
];

/** The schema version this build writes: the last migration's. */
export const latestPostgresSchemaVersion: number = postgresMigrations.at(-1)?.version ?? 0;

/** Any constant shared by every replica: the key of the advisory lock that serialises migrations. */
const MIGRATION_LOCK = 7_262_937_001;

/**
 * Brings the database up to {@link latestPostgresSchemaVersion}, in one
 * transaction that first takes an advisory lock: when several replicas start
 * at once, one applies the pending migrations and the others, once the lock
 * is theirs, find them applied. DDL is transactional in PostgreSQL, so a
 * failed migration leaves the schema as it was.
 *
 * @returns the version found and the version now in place.
 * @throws Error if the database was written by a newer build; whatever
 *   PostgreSQL throws (everything is rolled back).
 */
export async function migratePostgres(client: pg.ClientBase): Promise<{ from: number; to: number }> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS registry_schema (version integer NOT NULL)");
    const from = Number((await client.query<{ v: number | null }>("SELECT max(version) AS v FROM registry_schema")).rows[0]?.v ?? 0);
    if (from > latestPostgresSchemaVersion) {
      throw new Error(`database schema version ${from} is newer than this build supports (${latestPostgresSchemaVersion})`);
    }
    for (const migration of postgresMigrations) {
      if (migration.version <= from) continue;
      await client.query(migration.sql);
      await client.query("INSERT INTO registry_schema (version) VALUES ($1)", [migration.version]);
    }
    await client.query("COMMIT");
    return { from, to: latestPostgresSchemaVersion };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}
