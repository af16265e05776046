import type pg from "pg";
import { LeaseLostError } from "../domain/errors.js";
import {
  DuplicateWorkerIdError,
  type AdjustTaskCountResult,
  type ChangeStateResult,
  type Committed,
  type HealthChange,
  type Lease,
  type ReleaseReservationResult,
  type Snapshot,
  type StateTransition,
  type TaskOutcome,
} from "../domain/registry-store.js";
import { encodeEventPayload, type CommittedEvent } from "../domain/worker-events.js";
import type { ReservationRecord, WorkerRecord } from "../domain/worker-record.js";

/** The channel a writing transaction notifies, once, so other replicas read the log. */
export const CHANGES_CHANNEL = "sentinel_registry_changes";

/** Namespace of the advisory locks that serialise registrations of one node_id across replicas. */
const NODE_LOCK_CLASS = 7262;

const columns = `id, node_id AS "nodeId", capabilities, max_concurrent_tasks AS "maxConcurrentTasks",
  current_tasks AS "currentTasks", tasks_completed AS "tasksCompleted", tasks_failed AS "tasksFailed",
  total_task_duration_ms AS "totalTaskDurationMs", registered_at_ms AS "registeredAtMs",
  last_heartbeat_at_ms AS "lastHeartbeatAtMs", health, token_hash AS "tokenHash", registered_by AS "registeredBy",
  labels, version, state, drain_deadline_ms AS "drainDeadlineMs"`;

/** The same columns of a table aliased `w`, for statements that join workers with something else. */
const columnsOfW = columns.replaceAll(/(^|,\s*)(\w+)/g, "$1w.$2");

/** An event before the log numbers it. */
type Draft = Omit<CommittedEvent, "revision">;
type Client = pg.ClientBase;

async function rows<T>(client: Client, sql: string, values: unknown[] = []): Promise<T[]> {
  return (await client.query(sql, values)).rows as T[];
}

/**
 * Numbers the drafts from the revision counter and appends them, in one
 * statement that also notifies the other replicas. The counter row is
 * updated last in the writing transaction, so its lock (which serialises
 * every writer) is held only until the commit: revisions are gap-free and
 * increase in commit order.
 */
async function log(client: Client, drafts: readonly Draft[]): Promise<CommittedEvent[]> {
  if (drafts.length === 0) return [];
  const [first] = await rows<{ first: number }>(
    client,
    `WITH counter AS (UPDATE registry_meta SET value = value + $1 WHERE key = 'revision' RETURNING value),
       appended AS (
         INSERT INTO events (revision, type, worker_id, occurred_at_ms, payload)
         SELECT counter.value - $1 + e.ord, e.type, e.worker_id, e.at, e.payload
         FROM counter, unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY AS e(type, worker_id, at, payload, ord)
         RETURNING revision)
     SELECT min(revision) AS first, pg_notify('${CHANGES_CHANNEL}', max(revision)::text) FROM appended`,
    [drafts.length, drafts.map((d) => d.type), drafts.map((d) => d.worker.id), drafts.map((d) => d.occurredAtMs), drafts.map((d) => encodeEventPayload(d))],
  );
  return drafts.map((draft, i) => ({ ...draft, revision: first!.first + i }));
}

/** Refuses (and so rolls back) a leader's write once its lease is not the current one; holds the lease row till commit. */
async function fence(client: Client, lease: Lease): Promise<void> {
  const held = await rows(client, "SELECT 1 FROM registry_lease WHERE id = 1 AND owner = $1 AND epoch = $2 AND expires_at > clock_timestamp() FOR SHARE", [lease.owner, lease.epoch]);
  if (held.length === 0) throw new LeaseLostError();
}

const updated = (worker: WorkerRecord, occurredAtMs: number, reservation?: CommittedEvent["reservation"]): Draft => ({
  type: "updated",
  occurredAtMs,
  worker,
  ...(reservation === undefined ? {} : { reservation }),
});

/** A draining worker whose task count reached zero leaves, in the transaction that took it there. */
async function drainedIfIdle(client: Client, row: WorkerRecord | undefined, atMs: number): Promise<Draft[]> {
  if (row === undefined || row.state !== "draining" || row.currentTasks !== 0) return [];
  const [removed] = await rows<WorkerRecord>(client, `DELETE FROM workers WHERE id = $1 AND state = 'draining' AND current_tasks = 0 RETURNING ${columns}`, [row.id]);
  return removed === undefined ? [] : [{ type: "unregistered", reason: "drained", occurredAtMs: atMs, worker: removed }];
}

/** Adds an outcome to a worker's counters (and frees a slot when `freed`); the worker's row as it is after. */
async function complete(client: Client, workerId: string, outcome: TaskOutcome, freed: boolean): Promise<WorkerRecord | undefined> {
  const [row] = await rows<WorkerRecord>(
    client,
    `UPDATE workers SET tasks_completed = tasks_completed + $2, tasks_failed = tasks_failed + $3,
       total_task_duration_ms = total_task_duration_ms + $4,
       current_tasks = current_tasks - $5, reserved_tasks = reserved_tasks - $5
     WHERE id = $1 RETURNING ${columns}`,
    [workerId, outcome.success ? 1 : 0, outcome.success ? 0 : 1, outcome.durationMs, freed ? 1 : 0],
  );
  return row;
}

/** Locks a reservation's worker first, so every transaction takes a worker's row before its reservations'. */
async function lockWorkerOf(client: Client, reservationId: string): Promise<string | undefined> {
  const [reservation] = await rows<{ workerId: string }>(client, `SELECT worker_id AS "workerId" FROM reservations WHERE id = $1`, [reservationId]);
  if (reservation === undefined) return undefined;
  const locked = await rows(client, "SELECT 1 FROM workers WHERE id = $1 FOR UPDATE", [reservation.workerId]);
  return locked.length === 0 ? undefined : reservation.workerId;
}

/** The operations of the PostgreSQL store, each the body of one transaction (or a single statement). */
export const postgresOperations = {
  async load(client: Client): Promise<Snapshot> {
    const workers = await rows<WorkerRecord>(client, `SELECT ${columns} FROM workers ORDER BY last_heartbeat_at_ms, id`);
    const reservations = await rows<ReservationRecord>(
      client,
      `SELECT id, worker_id AS "workerId", created_at_ms AS "createdAtMs", expires_at_ms AS "expiresAtMs"
       FROM reservations WHERE state = 'active' ORDER BY expires_at_ms`,
    );
    const meta = new Map((await rows<{ key: string; value: number }>(client, "SELECT key, value FROM registry_meta")).map((r) => [r.key, r.value]));
    return { workers, reservations, revision: meta.get("revision") ?? 0, compactedRevision: meta.get("compacted_revision") ?? 0, lastAliveAtMs: meta.get("last_alive_at_ms") ?? null };
  },

  async registerWorker(client: Client, worker: WorkerRecord, atMs: number): Promise<Committed> {
    // One registration of a node_id at a time across every replica, so each sees (and replaces) the one before.
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [NODE_LOCK_CLASS, worker.nodeId]);
    const inserted = await rows(
      client,
      `INSERT INTO workers (id, node_id, capabilities, max_concurrent_tasks, current_tasks, tasks_completed, tasks_failed,
         total_task_duration_ms, registered_at_ms, last_heartbeat_at_ms, health, token_hash, registered_by, labels, version, state, drain_deadline_ms)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, $17) ON CONFLICT (id) DO NOTHING RETURNING 1`,
      [worker.id, worker.nodeId, JSON.stringify(worker.capabilities), worker.maxConcurrentTasks, worker.currentTasks, worker.tasksCompleted,
        worker.tasksFailed, worker.totalTaskDurationMs, worker.registeredAtMs, worker.lastHeartbeatAtMs, worker.health, worker.tokenHash, worker.registeredBy,
        JSON.stringify(worker.labels), worker.version, worker.state, worker.drainDeadlineMs],
    );
    if (inserted.length === 0) throw new DuplicateWorkerIdError(worker.id);
    const replaced = await rows<WorkerRecord>(client, `DELETE FROM workers WHERE node_id = $1 AND id <> $2 RETURNING ${columns}`, [worker.nodeId, worker.id]);
    const drafts: Draft[] = replaced.map((old) => ({ type: "unregistered", reason: "replaced", occurredAtMs: atMs, worker: old }));
    return { events: await log(client, [...drafts, { type: "registered", occurredAtMs: atMs, worker }]) };
  },

  async unregisterWorker(client: Client, workerId: string, atMs: number): Promise<Committed> {
    const [row] = await rows<WorkerRecord>(client, `DELETE FROM workers WHERE id = $1 RETURNING ${columns}`, [workerId]);
    return { events: row === undefined ? [] : await log(client, [{ type: "unregistered", reason: "unregistered", occurredAtMs: atMs, worker: row }]) };
  },

  async changeState(client: Client, workerId: string, transition: StateTransition, atMs: number): Promise<Committed & { result: ChangeStateResult }> {
    const [before] = await rows<{ state: WorkerRecord["state"] }>(client, "SELECT state FROM workers WHERE id = $1 FOR UPDATE", [workerId]);
    if (before === undefined) return { events: [], result: { status: "not-found" } };
    if (before.state === "draining" && transition.to !== "draining") return { events: [], result: { status: "draining" } };
    const [row] =
      transition.to === "draining"
        ? await rows<WorkerRecord>(
            client,
            `UPDATE workers SET state = 'draining', drain_deadline_ms = $2
             WHERE id = $1 AND (state <> 'draining' OR drain_deadline_ms > $2) RETURNING ${columns}`,
            [workerId, transition.deadlineMs],
          )
        : await rows<WorkerRecord>(client, `UPDATE workers SET state = $2 WHERE id = $1 AND state = $3 RETURNING ${columns}`, [
            workerId,
            transition.to,
            transition.to === "cordoned" ? "active" : "cordoned",
          ]);
    if (row === undefined) return { events: [], result: { status: "ok" } };
    const changed: Draft = { type: "state_changed", occurredAtMs: atMs, worker: row, previousState: before.state };
    return { events: await log(client, [changed, ...(await drainedIfIdle(client, row, atMs))]), result: { status: "ok" } };
  },

  async removeOverdueDrains(client: Client, workerIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    await fence(client, lease);
    const removed = await rows<WorkerRecord>(
      client,
      `DELETE FROM workers WHERE id = ANY($1::text[]) AND state = 'draining' AND drain_deadline_ms <= $2 RETURNING ${columns}`,
      [workerIds, atMs],
    );
    const order = new Map(workerIds.map((id, i) => [id, i]));
    removed.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
    return { events: await log(client, removed.map((worker) => ({ type: "unregistered", reason: "drain_deadline", occurredAtMs: atMs, worker }))) };
  },

  async adjustTaskCount(client: Client, workerId: string, delta: number, atMs: number): Promise<Committed & { result: AdjustTaskCountResult }> {
    const [row] = await rows<WorkerRecord>(
      client,
      `UPDATE workers SET current_tasks = current_tasks + $2
       WHERE id = $1 AND current_tasks + $2 BETWEEN reserved_tasks AND max_concurrent_tasks RETURNING ${columns}`,
      [workerId, delta],
    );
    if (row !== undefined) return { events: await log(client, [updated(row, atMs), ...(await drainedIfIdle(client, row, atMs))]), result: { status: "ok" } };
    const [current] = await rows<{ currentTasks: number; maxConcurrentTasks: number; reservedTasks: number }>(
      client,
      `SELECT current_tasks AS "currentTasks", max_concurrent_tasks AS "maxConcurrentTasks", reserved_tasks AS "reservedTasks" FROM workers WHERE id = $1`,
      [workerId],
    );
    return { events: [], result: current === undefined ? { status: "not-found" } : { status: "out-of-range", ...current } };
  },

  async recordCompletion(client: Client, workerId: string, outcome: TaskOutcome, atMs: number): Promise<Committed> {
    const row = await complete(client, workerId, outcome, false);
    return { events: row === undefined ? [] : await log(client, [updated(row, atMs)]) };
  },

  async acquireSlot(client: Client, reservation: ReservationRecord, atMs: number): Promise<Committed & { status: "ok" | "full" | "not-found" }> {
    const [row] = await rows<WorkerRecord>(
      client,
      `UPDATE workers SET current_tasks = current_tasks + 1, reserved_tasks = reserved_tasks + 1
       WHERE id = $1 AND current_tasks < max_concurrent_tasks AND state = 'active' RETURNING ${columns}`,
      [reservation.workerId],
    );
    if (row === undefined) {
      const exists = await rows(client, "SELECT 1 FROM workers WHERE id = $1", [reservation.workerId]);
      return { events: [], status: exists.length > 0 ? "full" : "not-found" };
    }
    await client.query("INSERT INTO reservations (id, worker_id, created_at_ms, expires_at_ms, state) VALUES ($1, $2, $3, $4, 'active')", [
      reservation.id,
      reservation.workerId,
      reservation.createdAtMs,
      reservation.expiresAtMs,
    ]);
    return { events: await log(client, [updated(row, atMs, { granted: reservation })]), status: "ok" };
  },

  async releaseReservation(client: Client, reservationId: string, outcome: TaskOutcome, atMs: number): Promise<Committed & { result: ReleaseReservationResult }> {
    const workerId = await lockWorkerOf(client, reservationId);
    if (workerId === undefined) return { events: [], result: { status: "not-found" } };
    const released = await rows(client, "UPDATE reservations SET state = 'released', ended_at_ms = $2 WHERE id = $1 AND state = 'active' RETURNING 1", [reservationId, atMs]);
    if (released.length > 0) {
      const row = await complete(client, workerId, outcome, true);
      const drafts = [updated(row!, atMs, { ended: reservationId }), ...(await drainedIfIdle(client, row, atMs))];
      return { events: await log(client, drafts), result: { status: "released", workerId } };
    }
    const late = await rows(client, "UPDATE reservations SET state = 'released' WHERE id = $1 AND state = 'expired' RETURNING 1", [reservationId]);
    if (late.length > 0) {
      const row = await complete(client, workerId, outcome, false);
      return { events: await log(client, [updated(row!, atMs)]), result: { status: "expired", workerId } };
    }
    return { events: [], result: { status: "already-released", workerId } };
  },

  async changeHealth(client: Client, changes: readonly HealthChange[], atMs: number, lease: Lease | undefined): Promise<Committed> {
    if (lease !== undefined) await fence(client, lease);
    const drafts: Draft[] = [];
    for (const change of changes) {
      const [row] = await rows<WorkerRecord & { previous: WorkerRecord["health"] }>(
        client,
        `UPDATE workers w SET health = $2
         FROM (SELECT id, health FROM workers WHERE id = $1 FOR UPDATE) before
         WHERE w.id = before.id AND w.health <> $2 AND ($3::text IS NULL OR w.health = $3)
           AND ($4::bigint IS NULL OR w.last_heartbeat_at_ms <= $4)
         RETURNING ${columnsOfW}, before.health AS previous`,
        [change.workerId, change.to, change.from ?? null, change.heardUntilMs ?? null],
      );
      if (row === undefined) continue;
      const { previous, ...worker } = row;
      drafts.push({
        type: "health_changed",
        occurredAtMs: atMs,
        worker,
        previousHealth: previous,
        ...(change.heardUntilMs === undefined ? {} : { heardUntilMs: change.heardUntilMs }),
      });
    }
    return { events: await log(client, drafts) };
  },

  async removeExpired(client: Client, candidates: ReadonlyArray<{ readonly workerId: string; readonly heardUntilMs: number }>, atMs: number, lease: Lease): Promise<Committed> {
    await fence(client, lease);
    const removed = await rows<WorkerRecord>(
      client,
      `DELETE FROM workers w USING unnest($1::text[], $2::bigint[]) AS c(id, heard)
       WHERE w.id = c.id AND w.last_heartbeat_at_ms <= c.heard RETURNING ${columnsOfW}`,
      [candidates.map((c) => c.workerId), candidates.map((c) => c.heardUntilMs)],
    );
    const order = new Map(candidates.map((c, i) => [c.workerId, i]));
    removed.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
    return { events: await log(client, removed.map((worker) => ({ type: "removed", reason: "expired", occurredAtMs: atMs, worker }))) };
  },

  async expireReservations(client: Client, reservationIds: readonly string[], atMs: number, lease: Lease): Promise<Committed> {
    await fence(client, lease);
    const drafts: Draft[] = [];
    for (const id of reservationIds) {
      const workerId = await lockWorkerOf(client, id);
      if (workerId === undefined) continue;
      const ended = await rows(client, "UPDATE reservations SET state = 'expired', ended_at_ms = $2 WHERE id = $1 AND state = 'active' RETURNING 1", [id, atMs]);
      if (ended.length === 0) continue;
      const [row] = await rows<WorkerRecord>(
        client,
        `UPDATE workers SET current_tasks = current_tasks - 1, reserved_tasks = reserved_tasks - 1 WHERE id = $1 RETURNING ${columns}`,
        [workerId],
      );
      drafts.push(updated(row!, atMs, { ended: id }), ...(await drainedIfIdle(client, row, atMs)));
    }
    return { events: await log(client, drafts) };
  },

  async prune(client: Client, eventsBeforeMs: number, reservationsEndedBeforeMs: number, limit: number, lease: Lease): Promise<number> {
    await fence(client, lease);
    await client.query("DELETE FROM reservations WHERE ended_at_ms < $1", [reservationsEndedBeforeMs]);
    // In revision order, stopping at the first event young enough to keep: every event up to the compacted
    // revision is gone, even if a replica's clock stepped back.
    let through: number | undefined;
    for (const event of await rows<{ revision: number; occurredAtMs: number }>(client, `SELECT revision, occurred_at_ms AS "occurredAtMs" FROM events ORDER BY revision LIMIT $1`, [limit])) {
      if (event.occurredAtMs >= eventsBeforeMs) break;
      through = event.revision;
    }
    if (through !== undefined) {
      await client.query("DELETE FROM events WHERE revision <= $1", [through]);
      await client.query("UPDATE registry_meta SET value = greatest(value, $1) WHERE key = 'compacted_revision'", [through]);
    }
    const [compacted] = await rows<{ value: number }>(client, "SELECT value FROM registry_meta WHERE key = 'compacted_revision'");
    return compacted!.value;
  },
};

/** Statements that run alone, outside an explicit transaction. */
export const postgresStatements = {
  /** The batch and the last-alive time in one statement. */
  writeHeartbeats: `WITH beats AS (
      UPDATE workers w SET last_heartbeat_at_ms = v.at
      FROM unnest($1::text[], $2::bigint[]) AS v(id, at)
      WHERE w.id = v.id)
    INSERT INTO registry_meta (key, value) VALUES ('last_alive_at_ms', $3)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
  heartbeatsSince: `SELECT id AS "workerId", last_heartbeat_at_ms AS "lastHeartbeatAtMs" FROM workers WHERE last_heartbeat_at_ms > $1`,
  readEvents: `SELECT revision, type, occurred_at_ms AS "occurredAtMs", payload FROM events WHERE revision >= $1 ORDER BY revision LIMIT $2`,
  headRevision: "SELECT value FROM registry_meta WHERE key = 'revision'",
  findReservation: `SELECT worker_id AS "workerId", state FROM reservations WHERE id = $1`,
  // Taken when free or expired (a new epoch), renewed by its owner (the same epoch while it has not expired);
  // either way the answer is the lease as it is now, so a replica that did not get it learns who has it.
  lead: `WITH taken AS (
      INSERT INTO registry_lease (id, owner, epoch, expires_at) VALUES (1, $1, 1, clock_timestamp() + $2 * interval '1 millisecond')
      ON CONFLICT (id) DO UPDATE SET
        owner = excluded.owner,
        epoch = CASE WHEN registry_lease.owner = excluded.owner AND registry_lease.expires_at > clock_timestamp()
          THEN registry_lease.epoch ELSE registry_lease.epoch + 1 END,
        expires_at = excluded.expires_at
      WHERE registry_lease.owner = excluded.owner OR registry_lease.expires_at <= clock_timestamp()
      RETURNING owner, epoch, expires_at)
    SELECT owner, epoch, (extract(epoch FROM expires_at) * 1000)::bigint AS "expiresAtMs" FROM taken
    UNION ALL
    SELECT owner, epoch, (extract(epoch FROM expires_at) * 1000)::bigint FROM registry_lease WHERE NOT EXISTS (SELECT 1 FROM taken)`,
  resign: "UPDATE registry_lease SET expires_at = clock_timestamp() WHERE id = 1 AND owner = $1",
} as const;
