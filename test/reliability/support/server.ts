import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { CLI_PATH } from "../../support/server-process.js";

/** A `worker-registry serve` process the reliability tests start, kill and restart. */
export interface RegistryProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly address: string;
  /** The metrics endpoint's port, when `--metrics-port` was given. */
  readonly metricsPort: number | undefined;
  /** Every JSON log line printed so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolves once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last 4 KB of stderr. */
  stderr(): string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Sends `signal` and resolves once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resident set size in KiB, from /proc/<pid>/status. */
  rssKiB(): number;
  /** The text of GET /metrics. */
  metrics(): Promise<string>;
}

const running = new Set<ChildProcess>();
// A test that fails half-way must not leave a server behind for the next one (or a stopped one, holding a port).
process.once("exit", () => {
  for (const child of running) {
    try {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts `worker-registry serve` on 127.0.0.1 (on `port`, or a free one) and
 * resolves once it logs "registry serving" (the log level must stay info).
 */
export async function startRegistry(args: readonly string[], options: { port?: number } = {}): Promise<RegistryProcess> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" (npm test does) before these tests`);
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--host", "127.0.0.1", "--port", String(options.port ?? 0), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4096)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  let metricsPort: number | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        entry = { msg: "unparsed", line };
      }
      logs.push(entry);
      if (entry.msg === "metrics serving") metricsPort = Number(entry.port);
      if (entry.msg === "registry serving") resolve(Number(String(entry.address).split(":").pop()));
    });
    void exited.then(({ code, signal }) => reject(new Error(`server exited (${code ?? signal}) before serving: ${stderr}`)));
  });
  return {
    child,
    pid: child.pid!,
    port,
    address: `127.0.0.1:${port}`,
    metricsPort,
    logs,
    exited,
    stderr: () => stderr,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    rssKiB() {
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      return match ? Number(match[1]) : Number.NaN;
    },
    async metrics() {
      if (metricsPort === undefined) throw new Error("the server was started without --metrics-port");
      const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
      return response.text();
    },
  };
}

/** The value of a Prometheus series in `text` (the first line that matches name and labels), or NaN. */
export function metricValue(text: string, name: string, labels = ""): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(" ") || rest.startsWith("{"))) continue;
    if (labels !== "" && !rest.includes(labels)) continue;
    return Number(rest.slice(rest.lastIndexOf(" ") + 1));
  }
  return Number.NaN;
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Opens a copy of the database as a crash left it (the main file and its
 * WAL), so that reading it cannot change what the restarted server recovers.
 * The caller runs `read` on it; the copy is removed afterwards.
 */
export function withDatabaseSnapshot<T>(dbPath: string, read: (db: Database.Database) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "registry-snapshot-"));
  try {
    const copy = join(dir, "copy.db");
    copyFileSync(dbPath, copy);
    if (existsSync(`${dbPath}-wal`)) copyFileSync(`${dbPath}-wal`, `${copy}-wal`);
    const db = new Database(copy);
    try {
      return read(db);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns something other than undefined/false, or rejects after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, everyMs = 25): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A seeded uniform source in [0, 1) (mulberry32), so a failing run can be replayed from its printed seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
