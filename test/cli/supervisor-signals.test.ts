import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CLI_PATH } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";

/**
 * A supervisor (systemd, Docker, a CI runner, `timeout`) signals the one
 * process it started, not its process group. The README's ways of running the
 * server must shut it down on that signal, and free its port.
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dirs = tempDirs();
/** Every process a test started, with its descendants: killed after each test, by pid, in case the server was orphaned. */
const started: number[] = [];

afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});
afterAll(() => dirs.cleanup());

/** The pids of the live descendants of `pid`, from /proc (children first, then theirs). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat === undefined || stat.state === "Z") continue;
    children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length > 0; ) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/** State and parent of a process from /proc/<pid>/stat, or undefined once it is gone. */
function readStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // The command name is in parentheses and may contain spaces: the fields after its last ")" are fixed.
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** Whether a process is still running (a zombie waiting to be reaped has exited). */
const running = (pid: number) => {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== "Z";
};

/** Whether something listens on the port: a bind that fails with EADDRINUSE. */
function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(true) : reject(error)));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(false)));
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Starts `command` in the repository as a supervisor would, configured by environment variables; resolves once it serves. */
async function supervise(command: string, args: readonly string[]): Promise<{ child: ChildProcess; port: number; logs: string[] }> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" (npm test does) before these tests`);
  const dbPath = join(dirs.make("registry-supervised-"), "registry.db");
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, REGISTRY_HOST: "127.0.0.1", REGISTRY_PORT: "0", REGISTRY_DB: dbPath, REGISTRY_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child.pid!);
  const logs: string[] = [];
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    // npm prints its own lines before the server's JSON logs.
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      const serving = /"msg":"registry serving"/.test(line) ? (JSON.parse(line) as { address: string }) : undefined;
      if (serving) resolve(Number(serving.address.split(":").pop()));
    });
    child.once("exit", (code, signal) => reject(new Error(`${command} exited (${code ?? signal}) before serving: ${stderr}`)));
  });
  started.push(...descendants(child.pid!));
  return { child, port, logs };
}

describe("a supervisor's SIGTERM to the documented command", () => {
  // Regression test: `npm start` ran the server under `sh -c`; npm passed SIGTERM to the shell, the shell died
  // without passing it on, and the server kept running and listening with PPID 1.
  it.each([
    ["npm start", "npm", ["start"]],
    ["node dist/src/cli/main.js serve", process.execPath, [CLI_PATH, "serve"]],
  ])("%s: the server shuts down gracefully, the command exits and the port is freed", { timeout: 30_000 }, async (_name, command, args) => {
    const { child, port, logs } = await supervise(command, args);
    const tree = [child.pid!, ...descendants(child.pid!)];
    expect(await portInUse(port)).toBe(true);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );

    child.kill("SIGTERM");

    const status = await exited;
    const survivors = () => tree.filter(running).map((pid) => `${pid} (PPID ${readStat(pid)?.ppid})`);
    await waitFor(`every process started to exit`, () => survivors().length === 0, 10_000).catch((error: Error) => {
      throw new Error(`${error.message}; still running: ${survivors().join(", ")}, listening on ${port}`);
    });
    expect(await portInUse(port)).toBe(false);
    expect(status).toEqual({ code: 0, signal: null });
    await waitFor("the server's last log line", () => logs.some((line) => line.includes('"msg":"registry stopped"')), 5000);
  });
});
