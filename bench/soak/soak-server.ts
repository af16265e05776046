/**
 * The registry under soak: `worker-registry serve` in a process of its own,
 * on a database in `dir`, with short thresholds and TTLs so that cleanup,
 * reservation expiry and event-log pruning all run many times. Its warnings
 * and errors are counted by message.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { freePort, sleep } from "../proc.js";
import { ROOT } from "../servers.js";
import { scrapeMetrics } from "./server-metrics.js";

const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");

export interface ServerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface SoakServer {
  readonly address: string;
  readonly metricsPort: number;
  readonly pid: number;
  readonly dbPath: string;
  /** "warn: <msg>" / "error: <msg>" (and unparsed lines) with how often each was logged. */
  readonly logCounts: Map<string, number>;
  /** Resolves once the metrics endpoint answers; throws if the server exits first or takes over 30 s. */
  serving(): Promise<void>;
  /** SIGTERM, and how it exited (signal "timeout" if it had not within 30 s; it is then killed). */
  terminate(): Promise<ServerExit>;
  /** SIGKILL, if still running. */
  kill(): void;
}

/** Starts the server; it is killed when this process exits, whatever happens. */
export async function startSoakServer(dir: string): Promise<SoakServer> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  const dbPath = path.join(dir, "registry.db");
  const [port, metricsPort] = [await freePort(), await freePort()];
  const serverArgs = [
    ...["--host", "127.0.0.1", "--port", String(port), "--metrics-port", String(metricsPort), "--db", dbPath, "--log-level", "warn"],
    // Short thresholds and TTLs, so that cleanup, expiry and pruning run throughout the soak.
    ...["--healthy-threshold", "10s", "--degraded-threshold", "20s", "--worker-ttl", "30s", "--cleanup-interval", "5s"],
    ...["--heartbeat-interval", "2s", "--reservation-ttl", "20s", "--event-ttl", "30s", "--watch-buffer", "1000"],
  ];
  const server = spawn(process.execPath, [CLI, "serve", ...serverArgs], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<ServerExit>((resolve) => server.once("exit", (code, signal) => resolve({ code, signal })));
  const logCounts = countLogLines(server.stdout!);
  let stderr = "";
  server.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)));
  const kill = () => {
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
  };
  process.once("exit", kill);
  return {
    address: `127.0.0.1:${port}`,
    metricsPort,
    pid: server.pid!,
    dbPath,
    logCounts,
    async serving() {
      for (let waited = 0; ; waited += 100) {
        if (server.exitCode !== null) throw new Error(`the server exited before serving: ${stderr}`);
        try {
          await scrapeMetrics(metricsPort);
          return;
        } catch {
          if (waited > 30_000) throw new Error(`the server did not serve within 30 s: ${stderr}`);
          await sleep(100);
        }
      }
    },
    async terminate() {
      server.kill("SIGTERM");
      const timedOut = new Promise<ServerExit>((resolve) => setTimeout(() => resolve({ code: null, signal: "timeout" as NodeJS.Signals }), 30_000).unref());
      const exit = await Promise.race([exited, timedOut]);
      kill();
      return exit;
    },
    kill,
  };
}

/** The server logs JSON lines at warn and above: counts them by level and message. */
function countLogLines(stdout: NodeJS.ReadableStream): Map<string, number> {
  const logCounts = new Map<string, number>();
  let pending = "";
  stdout.on("data", (chunk: Buffer) => {
    pending += chunk.toString("utf8");
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      try {
        const entry = JSON.parse(line) as { level: number; msg: string };
        const key = `${entry.level >= 50 ? "error" : "warn"}: ${entry.msg}`;
        logCounts.set(key, (logCounts.get(key) ?? 0) + 1);
      } catch {
        logCounts.set(`unparsed: ${line.slice(0, 80)}`, (logCounts.get(`unparsed: ${line.slice(0, 80)}`) ?? 0) + 1);
      }
    }
  });
  return logCounts;
}
