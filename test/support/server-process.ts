import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The compiled CLI; `npm test` builds it first. */
export const CLI_PATH = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

/** A registry server in its own process, as an operator runs it. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** Every JSON log line the server printed so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code and signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `worker-registry serve` (on a free port unless `args` name one) and resolves once it logs "registry serving" (so the log level must be info or lower). */
export async function startServerProcess(args: readonly string[]): Promise<ServerProcess> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" (npm test does) before these tests`);
  const freePort = args.includes("--port") ? [] : ["--port", "0"];
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--host", "127.0.0.1", ...freePort, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === "registry serving") resolve(Number(String(entry.address).split(":").pop()));
    });
    void exited.then(({ code, signal }) => reject(new Error(`server exited (${code ?? signal}) before serving: ${stderr}`)));
  });
  return { child, port, logs, exited };
}
