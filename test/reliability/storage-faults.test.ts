import { status } from "@grpc/grpc-js";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { openHeartbeats } from "../support/watch-issue4.js";
import { sleep, startRegistry, waitFor, type RegistryProcess } from "./support/server.js";

/**
 * Storage that fails under a running server: a database locked by another
 * process, a full disk, a read-only file system. Writes must be refused with
 * UNAVAILABLE and a clear message, reads and heartbeats must go on, the
 * server must not crash, and it must recover by itself once the fault is gone,
 * with nothing corrupted.
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const STORAGE_UNAVAILABLE = /^storage unavailable while trying to register a worker; retry later/;

const dirs = tempDirs();
const servers: RegistryProcess[] = [];
const children: ChildProcess[] = [];
const clients: RawRegistryClient[] = [];
const mounts: string[] = [];

afterEach(async () => {
  clients.splice(0).forEach((client) => client.close());
  children.splice(0).forEach((child) => child.kill("SIGKILL"));
  await Promise.all(servers.splice(0).map((server) => server.stop("SIGKILL")));
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {
      // not mounted
    }
  }
});
afterAll(() => dirs.cleanup());

async function serve(dbPath: string, extra: readonly string[] = []): Promise<{ server: RegistryProcess; client: RawRegistryClient }> {
  const server = await startRegistry(["--db", dbPath, ...extra]);
  servers.push(server);
  const client = new RawRegistryClient(server.address);
  clients.push(client);
  return { server, client };
}

const register = (client: RawRegistryClient, nodeId: string) =>
  client.call("registerWorker", { nodeId, capabilities: ["storage"], maxConcurrentTasks: 4 }).then((response) => response.worker);

/** A call's outcome and how long it took. */
async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value?: T; code?: status; details?: string }> {
  const started = performance.now();
  try {
    const value = await run();
    return { ms: performance.now() - started, value };
  } catch (error) {
    const { code, details } = error as { code: status; details: string };
    return { ms: performance.now() - started, code, details };
  }
}

/** Mounts a tmpfs of `size` on a new directory, or returns undefined when this machine does not allow it (not root, no CAP_SYS_ADMIN). */
function mountTmpfs(size: string): string | undefined {
  const dir = dirs.make("registry-tmpfs-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch {
    return undefined;
  }
  mounts.push(dir);
  return dir;
}

function integrity(dbPath: string): string {
  const db = new Database(dbPath);
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}

describe("a database locked by another process (BEGIN EXCLUSIVE for longer than the 5 s busy timeout)", () => {
  /** Takes the database's write lock in a process of its own; `release()` commits and resolves once it has. */
  async function lockDatabase(dbPath: string): Promise<{ release(): Promise<void> }> {
    const script = `
      const db = require("better-sqlite3")(process.argv[1]);
      db.exec("BEGIN EXCLUSIVE");
      console.log("locked");
      process.stdin.once("data", () => { db.exec("COMMIT"); db.close(); console.log("released"); process.exit(0); });
    `;
    const child = spawn(process.execPath, ["-e", script, dbPath], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const next = () => new Promise<string>((resolve) => lines.once("line", resolve));
    expect(await next()).toBe("locked");
    return {
      async release() {
        const released = next();
        child.stdin!.write("release\n");
        expect(await released).toBe("released");
      },
    };
  }

  it("refuses writes with UNAVAILABLE and a clear message, does not crash, and writes again once the lock is gone, without a restart", { timeout: 60_000 }, async () => {
    const dbPath = join(dirs.make("registry-locked-"), "registry.db");
    const { server, client } = await serve(dbPath);
    const worker = await register(client, "before-lock");
    const heartbeats = openHeartbeats(client, worker.id);
    await heartbeats.beat();

    const lock = await lockDatabase(dbPath);
    const refusing = timed(() => register(client, "while-locked"));
    // Sent while the lock is held; heartbeats are written behind, so they must be acknowledged and reach the disk later.
    const beating = heartbeats.beat();
    const reading = timed(() => client.call("getWorker", { workerId: worker.id }));
    const refused = await refusing;
    expect(refused.code, refused.details).toBe(status.UNAVAILABLE);
    expect(refused.details).toMatch(STORAGE_UNAVAILABLE);
    // Refused promptly (the busy timeout is short), so that the caller can retry and nobody else waits.
    expect(refused.ms).toBeLessThan(2000);
    await lock.release();

    const beat = await beating;
    const beatAtMs = Number(beat.serverTime.seconds) * 1000 + Math.floor(beat.serverTime.nanos / 1e6);
    const read = await reading;
    expect(read.code, read.details).toBeUndefined();
    expect(read.value.worker.id).toBe(worker.id);
    // Recovers by itself: the next writes succeed, and the heartbeat kept in memory reaches the disk.
    const after = await timed(() => register(client, "after-lock"));
    expect(after.code, after.details).toBeUndefined();
    expect((await client.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 1 })).worker.metrics.tasksCompleted).toBe(1n);
    await waitFor(
      "the heartbeat acknowledged during the lock to be written",
      () => {
        const db = new Database(dbPath, { readonly: true });
        try {
          const row = db.prepare("SELECT last_heartbeat_at_ms AS at FROM workers WHERE id = ?").get(worker.id) as { at: number };
          return row.at >= beatAtMs;
        } finally {
          db.close();
        }
      },
      10_000,
      100,
    );
    heartbeats.stream.end();
    expect(server.alive()).toBe(true);
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(integrity(dbPath)).toBe("ok");
    const db = new Database(dbPath, { readonly: true });
    try {
      expect(db.prepare("SELECT node_id FROM workers ORDER BY node_id").pluck().all()).toEqual(["after-lock", "before-lock"]);
    } finally {
      db.close();
    }
  });

  // Regression test: with the 5 s busy timeout SQLite waited for the lock on the serving thread, and every call
  // (GetWorker included) took ~10 s while another process held the database.
  it("keeps answering reads and heartbeats within a second while writes run into the lock", { timeout: 60_000 }, async () => {
    const dbPath = join(dirs.make("registry-locked-"), "registry.db");
    const { server, client } = await serve(dbPath);
    const worker = await register(client, "reader-target");
    const heartbeats = openHeartbeats(client, worker.id);
    await heartbeats.beat();
    const writerClient = new RawRegistryClient(server.address, { "grpc.channel_id": "writer" });
    clients.push(writerClient);
    const lock = await lockDatabase(dbPath);
    const within = <T>(ms: number, what: string, promise: Promise<T>) =>
      Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`${what} took more than ${ms} ms while writes ran into the lock`)))]);
    // Writes keep arriving for the whole time the lock is held, and the heartbeat write-behind runs into it too.
    let writing = true;
    const writes: Array<Awaited<ReturnType<typeof timed>>> = [];
    const writer = (async () => {
      while (writing) writes.push(await timed(() => register(writerClient, "blocked-writer")));
    })();
    const reads: number[] = [];
    try {
      const until = performance.now() + 2500;
      while (performance.now() < until) {
        const started = performance.now();
        expect((await within(1000, "GetWorker", client.call("getWorker", { workerId: worker.id }))).worker.id).toBe(worker.id);
        expect((await within(1000, "a heartbeat", heartbeats.beat())).workerId).toBe(worker.id);
        reads.push(performance.now() - started);
        await sleep(50);
      }
    } finally {
      writing = false;
      await writer;
      await lock.release();
      heartbeats.stream.cancel();
    }
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.filter((w) => w.code !== status.UNAVAILABLE).map((w) => `${w.code} ${w.details}`)).toEqual([]);
    console.log(`locked database: ${writes.length} writes refused (slowest ${Math.max(...writes.map((w) => w.ms)).toFixed(0)} ms); GetWorker + heartbeat slowest ${Math.max(...reads).toFixed(0)} ms`);
  });
});

describe("a full disk (the database on a 2 MiB tmpfs, filled up)", () => {
  it("refuses writes with UNAVAILABLE, serves reads and heartbeats, and recovers once space is freed", { timeout: 60_000 }, async (context) => {
    const dir = mountTmpfs("2m");
    if (dir === undefined) {
      context.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): the full-disk test does not run");
      return;
    }
    const dbPath = join(dir, "registry.db");
    const { server, client } = await serve(dbPath);
    const workers = [];
    for (let i = 0; i < 5; i++) workers.push(await register(client, `before-full-${i}`));
    const heartbeats = openHeartbeats(client, workers[0]!.id);
    await heartbeats.beat();

    // Fill the file system to the last byte.
    const filler = join(dir, "filler");
    const fd = openSync(filler, "w");
    try {
      const chunk = Buffer.alloc(16 * 1024);
      for (;;) writeSync(fd, chunk);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe("ENOSPC");
    } finally {
      closeSync(fd);
    }
    try {
      const oneByte = openSync(join(dir, "byte"), "w");
      try {
        for (;;) writeSync(oneByte, "x");
      } finally {
        closeSync(oneByte);
      }
    } catch {
      // full
    }

    // The WAL has room left from earlier transactions; writes fail once it needs more.
    let refused: Awaited<ReturnType<typeof timed>> | undefined;
    let accepted = 0;
    for (let i = 0; i < 2000 && refused === undefined; i++) {
      const outcome = await timed(() => register(client, `while-full-${i}-${"x".repeat(200)}`));
      if (outcome.code === undefined) accepted++;
      else refused = outcome;
    }
    expect(refused, `${accepted} registrations accepted on a full disk and none refused`).toBeDefined();
    console.log(`full disk: ${accepted} registrations accepted into the WAL's free room, then refused: ${refused!.details}`);
    expect(refused!.code, refused!.details).toBe(status.UNAVAILABLE);
    expect(refused!.details).toMatch(STORAGE_UNAVAILABLE);
    expect(server.alive()).toBe(true);
    for (const worker of workers) expect((await client.call("getWorker", { workerId: worker.id })).worker.id).toBe(worker.id);
    expect((await client.call("discoverWorkers", {})).workers.length).toBe(workers.length + accepted);
    await heartbeats.beat();

    rmSync(filler);
    rmSync(join(dir, "byte"), { force: true });
    const after = await timed(() => register(client, "after-full"));
    expect(after.code, after.details).toBeUndefined();
    heartbeats.stream.end();
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(integrity(dbPath)).toBe("ok");
    // Everything acknowledged is there.
    const db = new Database(dbPath, { readonly: true });
    try {
      expect(db.prepare("SELECT count(*) FROM workers").pluck().get()).toBe(workers.length + accepted + 1);
    } finally {
      db.close();
    }
  });
});

describe("a read-only file system", () => {
  /** A tmpfs with a database that a server wrote and was then stopped with `signal`; the mount is then made read-only. */
  async function readOnlyDatabase(signal: NodeJS.Signals): Promise<{ dir: string; dbPath: string; ids: string[] } | undefined> {
    const dir = mountTmpfs("16m");
    if (dir === undefined) return undefined;
    const dbPath = join(dir, "registry.db");
    const { server, client } = await serve(dbPath);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await register(client, `before-ro-${i}`)).id);
    await client.call("updateTaskCount", { workerId: ids[0], delta: 2 });
    await server.stop(signal);
    execFileSync("mount", ["-o", "remount,ro", dir]);
    return { dir, dbPath, ids };
  }

  it("after a crash: the server starts on it, serves reads and heartbeats, and refuses writes with UNAVAILABLE", { timeout: 60_000 }, async (context) => {
    const setup = await readOnlyDatabase("SIGKILL");
    if (setup === undefined) return context.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
    const { server, client } = await serve(setup.dbPath);
    const read = await client.call("getWorker", { workerId: setup.ids[0] });
    expect(read.worker.currentTasks).toBe(2);
    expect((await client.call("discoverWorkers", {})).workers).toHaveLength(3);
    const heartbeats = openHeartbeats(client, setup.ids[1]!);
    expect((await heartbeats.beat()).workerId).toBe(setup.ids[1]);
    const refused = await timed(() => register(client, "on-read-only"));
    expect(refused.code, refused.details).toBe(status.UNAVAILABLE);
    expect(refused.details).toMatch(STORAGE_UNAVAILABLE);
    expect(server.alive()).toBe(true);
    heartbeats.stream.end();
  });

  // Regression test: SQLite opens the file read-only when the file system refuses O_RDWR, and the store kept that
  // connection for the life of the process, so once the file system was writable again every write still failed
  // with SQLITE_READONLY (UNAVAILABLE) until the server was restarted.
  it("after a crash: writes succeed again once the file system is writable again, without a restart", { timeout: 60_000 }, async (context) => {
    const setup = await readOnlyDatabase("SIGKILL");
    if (setup === undefined) return context.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
    const { server, client } = await serve(setup.dbPath);
    expect((await timed(() => register(client, "on-read-only"))).code).toBe(status.UNAVAILABLE);
    execFileSync("mount", ["-o", "remount,rw", setup.dir]);
    const outcome = await waitFor(
      "a write to succeed after remount rw",
      async () => {
        const attempt = await timed(() => register(client, "after-remount"));
        return attempt.code === undefined ? attempt : undefined;
      },
      5000,
      500,
    );
    expect(outcome.value.nodeId).toBe("after-remount");
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(integrity(setup.dbPath)).toBe("ok");
  });

  // Regression test: the message used to be "storage unavailable while trying to open the store; retry later" alone.
  it("after a clean shutdown: the server refuses to start with a message naming the database and the cause", { timeout: 60_000 }, async (context) => {
    const setup = await readOnlyDatabase("SIGTERM");
    if (setup === undefined) return context.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
    const failure = await startRegistry(["--db", setup.dbPath]).then(
      (server) => {
        servers.push(server);
        throw new Error("the server started on a database it cannot open");
      },
      (error: Error) => error.message,
    );
    expect(failure).toMatch(/storage unavailable/);
    expect(failure).toContain(setup.dbPath);
    expect(failure).toMatch(/read-only|readonly|unable to open/);
  });
});
