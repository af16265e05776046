import { spawn } from "node:child_process";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { CLI_PATH } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";
import { freePort, startRegistry, type RegistryProcess } from "./support/server.js";

/**
 * One database, one server. A second `serve` on a database that a live server
 * holds must refuse to start, saying which file and which process holds it;
 * the hold must end with the process, however it dies. And a server must not
 * start on a port another process listens on, nor leave its database held
 * when it gives up.
 */

const dirs = tempDirs();
const servers: RegistryProcess[] = [];
const inProcess: RegistryServer[] = [];
const clients: RawRegistryClient[] = [];

afterEach(async () => {
  clients.splice(0).forEach((client) => client.close());
  await Promise.all(servers.splice(0).map((server) => server.stop("SIGKILL")));
  await Promise.all(inProcess.splice(0).map((server) => server.close()));
});
afterAll(() => dirs.cleanup());

async function serve(args: readonly string[], options: { port?: number } = {}): Promise<RegistryProcess> {
  const server = await startRegistry(args, options);
  servers.push(server);
  return server;
}

/**
 * Runs `worker-registry serve` expecting it to refuse: resolves with its exit
 * code and stderr once it exits, or rejects if it starts serving instead.
 */
function expectRefusal(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--host", "127.0.0.1", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (!line.includes('"msg":"registry serving"')) return;
      child.kill("SIGKILL");
      reject(new Error(`a second server started: ${line}`));
    });
    child.once("exit", (code) => resolve({ code, stderr }));
  });
}

const register = (client: RawRegistryClient, nodeId: string) =>
  client.call("registerWorker", { nodeId, capabilities: ["lock"], maxConcurrentTasks: 1 }).then((response) => response.worker);

describe("two servers on one database", () => {
  // Regression test: a second serve on the same file ran happily, each server with its own fleet in memory; workers
  // registered on one were unknown to the other and came back as ghosts after a restart.
  it("refuses the second, naming the file and the holder's pid, host and start, and leaves the first serving", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const first = await serve(["--db", dbPath]);
    const startedAtMs = Date.now();

    const refused = await expectRefusal(["--port", "0", "--db", dbPath]);

    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`database ${dbPath} is in use by another worker-registry`);
    expect(refused.stderr).toContain(`pid ${first.pid} on ${hostname()}`);
    const since = /serving since (\S+) \(lock file /.exec(refused.stderr)?.[1];
    expect(since, refused.stderr).toBeDefined();
    expect(Math.abs(Date.parse(since!) - startedAtMs)).toBeLessThan(10_000);
    const client = new RawRegistryClient(first.address);
    clients.push(client);
    expect((await register(client, "still-served")).nodeId).toBe("still-served");
    expect(first.alive()).toBe(true);
  });

  it("lets exactly one of three servers started together serve, and the others name it", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const outcomes = await Promise.allSettled([0, 1, 2].map(() => serve(["--db", dbPath])));
    const serving = outcomes.filter((o): o is PromiseFulfilledResult<RegistryProcess> => o.status === "fulfilled").map((o) => o.value);
    const refusals = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected").map((o) => String(o.reason));
    expect(serving).toHaveLength(1);
    expect(refusals).toHaveLength(2);
    for (const refusal of refusals) expect(refusal).toContain(`is in use by another worker-registry: pid ${serving[0]!.pid} on ${hostname()}`);
  });

  it("lets a server start once the holder was killed with SIGKILL: the lock dies with its process", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const first = await serve(["--db", dbPath]);
    const client = new RawRegistryClient(first.address);
    clients.push(client);
    const worker = await register(client, "survives-the-holder");
    expect(await first.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });

    const second = await serve(["--db", dbPath]);
    const after = new RawRegistryClient(second.address);
    clients.push(after);
    expect((await after.call("getWorker", { workerId: worker.id })).worker.nodeId).toBe("survives-the-holder");
  });

  it("lets a server start once the holder has shut down gracefully", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const first = await serve(["--db", dbPath]);
    expect(await first.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    const second = await serve(["--db", dbPath]);
    expect(second.alive()).toBe(true);
  });

  it("refuses a second server in the same process too, and releases the lock on close", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const options = { host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" as const };
    const first = await startRegistryServer(options);
    inProcess.push(first);
    await expect(startRegistryServer(options)).rejects.toThrow(`database ${dbPath} is in use by another worker-registry: pid ${process.pid}`);
    await inProcess.pop()!.close();
    const again = await startRegistryServer(options);
    inProcess.push(again);
    expect(again.port).toBeGreaterThan(0);
  });

  it("does not stop another SQLite connection of the serving process from writing to the database", { timeout: 30_000 }, async () => {
    const dbPath = join(dirs.make("registry-lock-"), "registry.db");
    const server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent" });
    inProcess.push(server);
    const second = new Database(dbPath);
    try {
      second.pragma("busy_timeout = 2000");
      second.exec("BEGIN IMMEDIATE");
      second.prepare("INSERT INTO registry_meta (key, value) VALUES ('second-writer', 1)").run();
      second.exec("COMMIT");
      expect(second.prepare("SELECT value FROM registry_meta WHERE key = 'second-writer'").pluck().get()).toBe(1);
    } finally {
      second.close();
    }
  });
});

describe("a port another process listens on", () => {
  // Regression test: serve recovered the store first, then failed with grpc-js's "No address added out of total 1
  // resolved".
  it("refuses to start, saying the port is in use, and leaves the database free for the next server", { timeout: 30_000 }, async () => {
    const taken = await serve(["--db", join(dirs.make("registry-port-"), "registry.db")], { port: await freePort() });
    const dbPath = join(dirs.make("registry-port-"), "registry.db");

    const refused = await expectRefusal(["--port", String(taken.port), "--db", dbPath]);

    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`port ${taken.port} on 127.0.0.1 is in use`);
    expect(refused.stderr).not.toContain("No address added");
    const next = await serve(["--db", dbPath]);
    expect(next.alive()).toBe(true);
  });
});
