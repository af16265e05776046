import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { freePort, seededRandom, sleep, startRegistry, waitFor, withDatabaseSnapshot, type RegistryProcess } from "./support/server.js";

/**
 * A Jepsen-style ledger check of kill -9: client processes drive mixed writes
 * and log every call they made and every answer they got; the test kills the
 * server at random moments and, after each kill, compares the database the
 * crash left behind with the ledgers, then restarts the server on it and
 * checks that it serves exactly that.
 */

const FIXTURE = fileURLToPath(new URL("./fixtures/ledger-client.mjs", import.meta.url));
const KILLS = 20;
const CLIENTS = 3;
/** Heartbeats are soft state, written behind every second: one acknowledged longer than this before a kill must be on disk. */
const HEARTBEAT_DURABLE_AFTER_MS = 2500;
const RELEASED = 1;
const ALREADY_RELEASED = 2;

/** One line of a client's ledger. */
interface Entry {
  seq: number;
  op: "register" | "task" | "complete" | "heartbeat" | "unregister" | "acquire" | "release";
  st: "sent" | "ack" | "err";
  node: string;
  id?: string;
  delta?: number;
  success?: boolean;
  repeat?: boolean;
  rsv?: string;
  outcome?: number;
  cur?: number;
  done?: number;
  failed?: number;
  at?: number;
  code?: string;
}

/** What the ledgers say about one worker: acknowledged state, and the one call (at most) whose outcome is unknown. */
interface WorkerLedger {
  node: string;
  registered: "acked" | "unknown";
  id?: string;
  cur: number;
  done: number;
  failed: number;
  unregistered: "no" | "acked";
  /** The last call sent without an answer: the server died under it (or it is still in flight). */
  unknown?: Entry;
  heartbeats: number[];
  reservations: Map<string, "active" | "released">;
  /** Acknowledged calls that write an `updated` event. */
  updates: number;
  /** Repeated releases that did not answer ALREADY_RELEASED. */
  badRepeats: string[];
}

/** Reads the ledgers incrementally: only what was appended since the last read, keeping a partial last line for later. */
class Ledgers {
  readonly workers = new Map<string, WorkerLedger>();
  readonly acked: Record<string, number> = {};
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, string>();

  constructor(private readonly paths: readonly string[]) {}

  /** Bytes written so far, over every ledger. */
  size(): number {
    return this.paths.reduce((sum, path) => sum + (statSync(path, { throwIfNoEntry: false })?.size ?? 0), 0);
  }

  read(): void {
    for (const path of this.paths) {
      const from = this.offsets.get(path) ?? 0;
      const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
      if (size <= from) continue;
      const buffer = Buffer.alloc(size - from);
      const fd = openSync(path, "r");
      try {
        readSync(fd, buffer, 0, buffer.length, from);
      } finally {
        closeSync(fd);
      }
      this.offsets.set(path, size);
      const text = (this.partial.get(path) ?? "") + buffer.toString("utf8");
      const lines = text.split("\n");
      this.partial.set(path, lines.pop() ?? "");
      for (const line of lines) if (line !== "") this.apply(JSON.parse(line) as Entry);
    }
  }

  private apply(entry: Entry): void {
    let worker = this.workers.get(entry.node);
    if (worker === undefined) {
      worker = { node: entry.node, registered: "unknown", cur: 0, done: 0, failed: 0, unregistered: "no", heartbeats: [], reservations: new Map(), updates: 0, badRepeats: [] };
      this.workers.set(entry.node, worker);
    }
    // A call sent and not answered (yet, or ever: "err") is of unknown outcome; after an error the lane abandons the worker.
    if (entry.st === "sent") {
      worker.unknown = entry;
      return;
    }
    if (entry.st === "err") return;
    worker.unknown = undefined;
    this.acked[entry.op] = (this.acked[entry.op] ?? 0) + 1;
    switch (entry.op) {
      case "register":
        worker.registered = "acked";
        worker.id = entry.id;
        break;
      case "task":
      case "complete":
        worker.updates++;
        break;
      case "heartbeat":
        worker.heartbeats.push(entry.at!);
        return;
      case "unregister":
        worker.unregistered = "acked";
        return;
      case "acquire":
        worker.reservations.set(entry.rsv!, "active");
        worker.updates++;
        worker.cur = entry.cur!;
        return;
      case "release":
        if (entry.repeat) {
          if (entry.outcome !== ALREADY_RELEASED) worker.badRepeats.push(`${entry.rsv} answered outcome ${entry.outcome}`);
        } else {
          if (entry.outcome === RELEASED) worker.updates++;
          worker.reservations.set(entry.rsv!, "released");
        }
        break;
    }
    worker.cur = entry.cur ?? worker.cur;
    worker.done = entry.done ?? worker.done;
    worker.failed = entry.failed ?? worker.failed;
  }
}

interface Row {
  id: string;
  node_id: string;
  max_concurrent_tasks: number;
  current_tasks: number;
  tasks_completed: number;
  tasks_failed: number;
  last_heartbeat_at_ms: number;
  active: number;
}

/** What the database a crash left behind holds. */
interface Snapshot {
  integrity: string;
  rows: Row[];
  reservations: Map<string, { workerId: string; state: string }>;
  events: Map<string, number>;
  revisions: { count: number; min: number; max: number; meta: number; compacted: number; current: number };
}

function snapshot(dbPath: string): Snapshot {
  return withDatabaseSnapshot(dbPath, (db) => {
    const integrity = String(db.pragma("integrity_check", { simple: true }));
    const rows = db
      .prepare(
        `SELECT id, node_id, max_concurrent_tasks, current_tasks, tasks_completed, tasks_failed, last_heartbeat_at_ms,
           (SELECT count(*) FROM reservations r WHERE r.worker_id = w.id AND r.state = 'active') AS active
         FROM workers w`,
      )
      .all() as Row[];
    const reservations = new Map(
      (db.prepare("SELECT id, worker_id AS workerId, state FROM reservations").all() as Array<{ id: string; workerId: string; state: string }>).map((r) => [r.id, r]),
    );
    const events = new Map(
      (db.prepare("SELECT worker_id || ' ' || type AS key, count(*) AS n FROM events GROUP BY worker_id, type").all() as Array<{ key: string; n: number }>).map((e) => [
        e.key,
        e.n,
      ]),
    );
    const revisions = db.prepare("SELECT count(*) AS count, coalesce(min(revision), 0) AS min, coalesce(max(revision), 0) AS max FROM events").get() as {
      count: number;
      min: number;
      max: number;
    };
    const metaValue = (key: string) => (db.prepare("SELECT value FROM registry_meta WHERE key = ?").get(key) as { value: number } | undefined)?.value ?? 0;
    // The meta row keeps the revision only for when pruning has emptied the log; the registry's revision is the larger.
    const meta = metaValue("revision");
    const compacted = metaValue("compacted_revision");
    // Revisions are the events table's integer primary key; gaps or a meta revision behind the log would mean a torn commit.
    const ordered = db.prepare("SELECT revision FROM events ORDER BY rowid").pluck().all() as number[];
    if (!ordered.every((r, i) => i === 0 || r > ordered[i - 1]!)) throw new Error("event revisions are not strictly increasing in log order");
    return { integrity, rows, reservations, events, revisions: { ...revisions, meta, compacted, current: Math.max(meta, revisions.max) } };
  });
}

/** Every way the snapshot disagrees with the ledgers; empty when it keeps every acknowledged write. */
function violations(ledgers: Ledgers, snap: Snapshot, incarnation: { startedAtMs: number; killedAtMs: number }): string[] {
  const problems: string[] = [];
  const byNode = new Map<string, Row[]>();
  for (const row of snap.rows) byNode.set(row.node_id, [...(byNode.get(row.node_id) ?? []), row]);
  const activeByWorker = new Map<string, string[]>();
  for (const [id, r] of snap.reservations) if (r.state === "active") activeByWorker.set(r.workerId, [...(activeByWorker.get(r.workerId) ?? []), id]);

  if (snap.integrity !== "ok") problems.push(`integrity_check: ${snap.integrity}`);
  const { count, min, max, meta, compacted } = snap.revisions;
  if (count > 0 && max - min + 1 !== count) problems.push(`event revisions ${min}..${max} have gaps: ${count} events`);
  if (count > 0 && min !== compacted + 1) problems.push(`the log starts at revision ${min}, but only events up to ${compacted} were pruned`);
  if (count > 0 && meta > max) problems.push(`registry_meta revision ${meta} is ahead of the log's last event ${max}`);

  for (const row of snap.rows) {
    if (row.current_tasks < 0 || row.current_tasks > row.max_concurrent_tasks) {
      problems.push(`${row.node_id}: current_tasks ${row.current_tasks} outside 0..${row.max_concurrent_tasks}`);
    }
    if (row.current_tasks < row.active) problems.push(`${row.node_id}: current_tasks ${row.current_tasks} < ${row.active} active reservations`);
    if (!ledgers.workers.has(row.node_id)) problems.push(`${row.node_id}: in the database but never sent by any client`);
  }

  for (const worker of ledgers.workers.values()) {
    const rows = byNode.get(worker.node) ?? [];
    if (rows.length > 1) problems.push(`${worker.node}: ${rows.length} rows for one registration`);
    const row = rows[0];
    const unknown = worker.unknown;
    if (worker.registered === "unknown") {
      if (row && (row.current_tasks !== 0 || row.tasks_completed + row.tasks_failed !== 0)) problems.push(`${worker.node}: unacknowledged registration has state`);
      continue;
    }
    const unregisterPending = unknown?.op === "unregister";
    if (worker.unregistered === "acked") {
      if (row) problems.push(`${worker.node}: acknowledged unregistration, but the worker is still stored`);
      if ((snap.events.get(`${worker.id} unregistered`) ?? 0) !== 1) problems.push(`${worker.node}: acknowledged unregistration without its event`);
      continue;
    }
    if (!row) {
      if (!unregisterPending) problems.push(`${worker.node}: acknowledged registration ${worker.id} lost`);
      continue;
    }
    if (row.id !== worker.id) problems.push(`${worker.node}: stored as ${row.id}, acknowledged as ${worker.id}`);
    if ((snap.events.get(`${worker.id} registered`) ?? 0) !== 1) problems.push(`${worker.node}: registration without exactly one registered event`);

    // Counters: the acknowledged values, or those plus the one call in flight.
    const curOptions = new Set([worker.cur]);
    const doneOptions = new Set([`${worker.done}/${worker.failed}`]);
    let updateOptions = [worker.updates];
    if (unknown?.op === "task") curOptions.add(worker.cur + unknown.delta!);
    if (unknown?.op === "acquire") curOptions.add(worker.cur + 1);
    if (unknown?.op === "release" && !unknown.repeat) curOptions.add(worker.cur - 1);
    if (unknown?.op === "complete" || (unknown?.op === "release" && !unknown.repeat)) {
      doneOptions.add(unknown.success ? `${worker.done + 1}/${worker.failed}` : `${worker.done}/${worker.failed + 1}`);
    }
    if (unknown !== undefined && ["task", "complete", "acquire", "release"].includes(unknown.op)) updateOptions = [worker.updates, worker.updates + 1];
    if (!curOptions.has(row.current_tasks)) problems.push(`${worker.node}: current_tasks ${row.current_tasks}, acknowledged ${[...curOptions].join(" or ")}`);
    if (!doneOptions.has(`${row.tasks_completed}/${row.tasks_failed}`)) {
      problems.push(`${worker.node}: completed/failed ${row.tasks_completed}/${row.tasks_failed}, acknowledged ${[...doneOptions].join(" or ")}`);
    }
    const updated = snap.events.get(`${worker.id} updated`) ?? 0;
    if (!updateOptions.includes(updated)) problems.push(`${worker.node}: ${updated} updated events for ${updateOptions.join(" or ")} acknowledged changes`);

    // Reservations: acknowledged ones are in the state acknowledged; an unknown acquisition may have left one more.
    const active = new Set(activeByWorker.get(row.id) ?? []);
    for (const [rsv, state] of worker.reservations) {
      const stored = snap.reservations.get(rsv)?.state;
      const maybe = unknown?.op === "release" && unknown.rsv === rsv ? ["active", "released"] : [state];
      if (!maybe.includes(stored ?? "missing")) problems.push(`${worker.node}: reservation ${rsv} is ${stored ?? "missing"}, acknowledged ${state}`);
      active.delete(rsv);
    }
    if (active.size > (unknown?.op === "acquire" ? 1 : 0)) problems.push(`${worker.node}: active reservations nobody was granted: ${[...active].join(", ")}`);
    if (/-p\d+-/.test(worker.node) && row.current_tasks !== row.active) {
      problems.push(`${worker.node}: pool worker holds ${row.current_tasks} slots for ${row.active} active reservations`);
    }
    problems.push(...worker.badRepeats.map((repeat) => `${worker.node}: repeated release ${repeat}`));

    // Heartbeats are written behind: those acknowledged well before the kill are on disk, none from the future is.
    const durable = worker.heartbeats.filter((at) => at > incarnation.startedAtMs && at < incarnation.killedAtMs - HEARTBEAT_DURABLE_AFTER_MS);
    const latest = Math.max(0, ...durable);
    if (row.last_heartbeat_at_ms < latest) problems.push(`${worker.node}: last heartbeat on disk ${row.last_heartbeat_at_ms}, acknowledged ${latest}`);
    if (row.last_heartbeat_at_ms > incarnation.killedAtMs) problems.push(`${worker.node}: last heartbeat ${row.last_heartbeat_at_ms} after the kill`);
  }
  return problems;
}

describe("kill -9 at random moments under mixed load from several client processes", () => {
  const dirs = tempDirs();
  const clients: ChildProcess[] = [];
  let server: RegistryProcess | undefined;

  afterAll(async () => {
    clients.forEach((child) => child.kill("SIGKILL"));
    await server?.stop("SIGKILL");
    dirs.cleanup();
  });

  it(`loses no acknowledged write over ${KILLS} kills, and every restart serves what was stored`, { timeout: 180_000 }, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    console.log(`crash-consistency seed ${seed} (rerun with CRASH_SEED=${seed})`);
    const dir = dirs.make("registry-crash-");
    const dbPath = join(dir, "registry.db");
    const port = await freePort();
    // Events are kept for the whole test, so that each acknowledged change can be matched with its event.
    const args = ["--db", dbPath, "--event-ttl", "10m"];
    server = await startRegistry(args, { port });
    let startedAtMs = Date.now();

    const ledgerPaths = Array.from({ length: CLIENTS }, (_, i) => join(dir, `ledger-${i}.jsonl`));
    for (const [i, path] of ledgerPaths.entries()) {
      const child = spawn(process.execPath, [FIXTURE], {
        env: { ...process.env, REGISTRY_ADDRESS: `127.0.0.1:${port}`, LEDGER_PATH: path, CLIENT_ID: String(i) },
        stdio: ["ignore", "inherit", "inherit"],
      });
      clients.push(child);
    }
    const ledgers = new Ledgers(ledgerPaths);
    const reader = new WorkerRegistryClient({ address: `127.0.0.1:${port}`, retry: { maxAttempts: 10, maxMs: 500 }, deadlineMs: 10_000 });
    let previous = { current: 0, count: 0 };
    const cycleMs: number[] = [];
    const restartMs: number[] = [];

    try {
      for (let kill = 1; kill <= KILLS; kill++) {
        // Load from every client before the kill, then a random moment. A few cycles run long enough for the heartbeat
        // write-behind to flush, the first among them (see the reservation test below for what happens otherwise).
        const before = ledgers.size();
        await waitFor("the clients to write again", () => ledgers.size() > before + 2000, 15_000);
        const loadMs = kill % 7 === 1 ? 3000 : 150 + Math.floor(random() * 250);
        cycleMs.push(loadMs);
        await sleep(loadMs);
        const killedAtMs = Date.now();
        expect((await server.stop("SIGKILL")).signal).toBe("SIGKILL");

        // The database as the crash left it, against what every client saw acknowledged.
        ledgers.read();
        const snap = snapshot(dbPath);
        const problems = violations(ledgers, snap, { startedAtMs, killedAtMs });
        expect(problems.slice(0, 20), `after kill ${kill} (seed ${seed})`).toEqual([]);
        expect(snap.revisions.current, "revisions only go forward across restarts").toBeGreaterThanOrEqual(previous.current);
        expect(snap.revisions.count, "no event is lost across restarts").toBeGreaterThanOrEqual(previous.count);
        previous = snap.revisions;

        // Restarted on the same database and port, it serves exactly what was stored.
        const restartedAt = performance.now();
        server = await startRegistry(args, { port });
        restartMs.push(performance.now() - restartedAt);
        startedAtMs = Date.now();
        const served = new Map((await reader.discoverWorkers()).map((w) => [w.id, w]));
        for (const row of snap.rows) {
          const worker = served.get(row.id);
          expect(worker, `${row.node_id} after restart ${kill}`).toBeDefined();
          // Abandoned by their lanes at the kill, the stored workers do not change after it.
          expect([worker!.currentTasks, worker!.metrics.tasksCompleted, worker!.metrics.tasksFailedCount], row.node_id).toEqual([
            row.current_tasks,
            row.tasks_completed,
            row.tasks_failed,
          ]);
        }
        const stats = new RawRegistryClient(server.address, { "grpc.channel_id": `stats-${kill}` });
        expect(Number((await stats.call("getRegistryStats")).revision)).toBeGreaterThanOrEqual(snap.revisions.current);
        stats.close();
      }

      // The load was mixed: every kind of write was acknowledged many times.
      console.log(`acknowledged writes over ${KILLS} kills (load per cycle ${cycleMs.join(", ")} ms; restarts took ${restartMs.map((ms) => ms.toFixed(0)).join(", ")} ms): ${JSON.stringify(ledgers.acked)}`);
      for (const op of ["register", "task", "complete", "heartbeat", "unregister", "acquire", "release"]) {
        expect(ledgers.acked[op] ?? 0, op).toBeGreaterThan(op === "unregister" ? 3 : 20);
      }
    } finally {
      reader.close();
      clients.forEach((child) => child.kill("SIGKILL"));
    }

    // The last run ends gracefully, and leaves a sound file.
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(snapshot(dbPath).integrity).toBe("ok");
  });
});

describe("kill -9 before the registry's first heartbeat flush", () => {
  const dirs = tempDirs();
  let server: RegistryProcess | undefined;
  afterAll(async () => {
    await server?.stop("SIGKILL");
    dirs.cleanup();
  });

  // Regression: a registry killed before its first heartbeat flush left no last-alive mark, and every reservation it had granted expired at the first tick after the restart.
  it("keeps a granted reservation active: it does not expire at the first tick after the restart", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-early-kill-"), "registry.db");
    const port = await freePort();
    server = await startRegistry(["--db", dbPath], { port });
    const client = new RawRegistryClient(server.address, { "grpc.channel_id": "early-kill" });
    await client.call("registerWorker", { nodeId: "early", capabilities: ["early"], maxConcurrentTasks: 2 });
    const { reservationId } = await client.call("acquireWorker", { filter: { capabilities: ["early"] } });
    client.close();
    await server.stop("SIGKILL");

    server = await startRegistry(["--db", dbPath], { port });
    const after = new RawRegistryClient(server.address, { "grpc.channel_id": "early-kill-after" });
    try {
      // Two ticks of the registry's one-second clock.
      await sleep(2500);
      expect(Number((await after.call("getRegistryStats")).activeReservations)).toBe(1);
      expect((await after.call("releaseWorker", { reservationId, success: true, durationMs: 1 })).outcome).toBe(RELEASED);
    } finally {
      after.close();
    }
  });
});
