import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { freePort, sleep } from "./proc.js";

/** A server process the suite started. */
export interface ServerProcess {
  readonly kind: "registry" | "echo" | "etcd";
  readonly pid: number;
  readonly address: string;
  /** Milliseconds from spawn to ready (the "registry serving" / "echo serving" / "ready to serve" line, or the port answering). */
  readonly startMs: number;
  readonly metricsPort: number | undefined;
  /** SIGTERM, then SIGKILL after 10 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

/** Kills every server still running (on exit or interrupt of the suite). */
export function killAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/** The repository root (dist/bench/servers.js is two levels below it). */
export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");

function track(kind: ServerProcess["kind"], child: ChildProcess, logFile: string): { lines: (fn: (line: string) => void) => void; exited: Promise<void> } {
  children.add(child);
  const log = fs.createWriteStream(logFile);
  const listeners: ((line: string) => void)[] = [];
  let buffered = "";
  const onChunk = (chunk: Buffer) => {
    log.write(chunk);
    buffered += chunk.toString("utf8");
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      for (const listener of listeners) listener(line);
    }
  };
  child.stdout?.on("data", onChunk);
  child.stderr?.on("data", onChunk);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      children.delete(child);
      log.end();
      resolve();
    }),
  );
  void kind;
  return { lines: (fn) => listeners.push(fn), exited };
}

async function waitFor(child: ChildProcess, exited: Promise<void>, ready: Promise<void>, what: string, logFile: string, timeoutMs = 60_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const failed = Promise.race([
    exited.then(() => {
      throw new Error(`${what} exited with ${child.exitCode ?? child.signalCode} before it was ready; see ${logFile}:\n${tail(logFile)}`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms; see ${logFile}`)), timeoutMs);
    }),
  ]);
  try {
    await Promise.race([ready, failed]);
  } finally {
    clearTimeout(timer);
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
}

function stopper(child: ChildProcess, exited: Promise<void>): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
  };
}

async function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

let serveFlags: Set<string> | undefined;

/** The flags this build's `serve` accepts (from `serve --help`), so the suite also runs against builds without a given flag. */
export function supportedServeFlags(): Set<string> {
  serveFlags ??= new Set(
    [...execFileSync(process.execPath, [path.join(ROOT, "dist/src/cli/main.js"), "serve", "--help"], { encoding: "utf8" }).matchAll(/^\s+--([a-z0-9-]+)/gm)].map(
      (m) => m[1]!,
    ),
  );
  return serveFlags;
}

/**
 * Starts `node dist/src/cli/main.js serve` on a free port. At log level
 * "info" it is ready at its "registry serving" line; at a quieter level
 * (no per-call log lines to slow it), once its port answers.
 */
export async function startRegistry(options: {
  readonly dbPath: string;
  readonly workDir: string;
  readonly logLevel?: "info" | "warn";
  readonly metrics?: boolean;
  readonly cpuProfDir?: string;
  readonly label?: string;
  /** More serve flags; those this build does not know are left out. */
  readonly flags?: Readonly<Record<string, string>>;
}): Promise<ServerProcess> {
  const logLevel = options.logLevel ?? "warn";
  const port = await freePort();
  const metricsPort = options.metrics ? await freePort() : undefined;
  const nodeArgs = options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const args = [
    ...nodeArgs,
    path.join(ROOT, "dist/src/cli/main.js"),
    "serve",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--db",
    options.dbPath,
    "--log-level",
    logLevel,
    ...(metricsPort !== undefined ? ["--metrics-port", String(metricsPort)] : []),
    ...Object.entries(options.flags ?? {})
      .filter(([flag]) => supportedServeFlags().has(flag))
      .flatMap(([flag, value]) => [`--${flag}`, value]),
  ];
  const logFile = path.join(options.workDir, `registry-${options.label ?? port}.log`);
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT });
  const { lines, exited } = track("registry", child, logFile);
  let readyAt = 0;
  const ready =
    logLevel === "info"
      ? new Promise<void>((resolve) =>
          lines((line) => {
            if (readyAt === 0 && line.includes('"msg":"registry serving"')) {
              readyAt = performance.now();
              resolve();
            }
          }),
        )
      : (async () => {
          while (!(await portAnswers(port))) await sleep(10);
          readyAt = performance.now();
        })();
  await waitFor(child, exited, ready, "registry", logFile);
  return {
    kind: "registry",
    pid: child.pid!,
    address: `127.0.0.1:${port}`,
    startMs: readyAt - started,
    metricsPort,
    stop: stopper(child, exited),
  };
}

/** Starts the ceiling, dist/bench/echo-server.js, on a free port; `bare`: with no protobuf at all (its --bare). */
export async function startEcho(options: { readonly workDir: string; readonly cpuProfDir?: string; readonly bare?: boolean }): Promise<ServerProcess> {
  const logFile = path.join(options.workDir, `echo-${options.bare ? "bare-" : ""}${Date.now()}.log`);
  const started = performance.now();
  const nodeArgs = options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, "dist/bench/echo-server.js"), ...(options.bare ? ["--bare"] : [])], { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT });
  const { lines, exited } = track("echo", child, logFile);
  let port = 0;
  let readyAt = 0;
  const ready = new Promise<void>((resolve) =>
    lines((line) => {
      const match = /"msg":"echo serving","port":(\d+)/.exec(line);
      if (match && port === 0) {
        port = Number(match[1]);
        readyAt = performance.now();
        resolve();
      }
    }),
  );
  await waitFor(child, exited, ready, "echo server", logFile);
  return { kind: "echo", pid: child.pid!, address: `127.0.0.1:${port}`, startMs: readyAt - started, metricsPort: undefined, stop: stopper(child, exited) };
}

/** The etcd binary on PATH, or undefined. */
export function findEtcd(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, "etcd");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Starts a single-member etcd on free loopback ports with a fresh data directory. */
export async function startEtcd(options: { readonly binary: string; readonly workDir: string }): Promise<ServerProcess> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = fs.mkdtempSync(path.join(options.workDir, "etcd-"));
  const logFile = path.join(options.workDir, `etcd-${clientPort}.log`);
  const started = performance.now();
  const child = spawn(
    options.binary,
    [
      "--name=bench",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=bench=http://127.0.0.1:${peerPort}`,
      "--logger=zap",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const { lines, exited } = track("etcd", child, logFile);
  let readyAt = 0;
  const ready = new Promise<void>((resolve) =>
    lines((line) => {
      // capnslog says "ready to serve client requests"; zap (3.4) says "serving client traffic insecurely".
      if (readyAt === 0 && /ready to serve client requests|serving client traffic/.test(line)) {
        readyAt = performance.now();
        resolve();
      }
    }),
  );
  await waitFor(child, exited, ready, "etcd", logFile);
  return { kind: "etcd", pid: child.pid!, address: `127.0.0.1:${clientPort}`, startMs: readyAt - started, metricsPort: undefined, stop: stopper(child, exited) };
}

/** `etcd --version`'s first line, or undefined. */
export async function etcdVersion(binary: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.on("exit", () => resolve(/etcd Version:\s*(\S+)/.exec(out)?.[1]));
    child.on("error", () => resolve(undefined));
  });
}
