/** The load generator as the soak's driver sees it: this script forked with `--role load`, spoken to over IPC. */
import { fork, type ChildProcess } from "node:child_process";
import { timeout } from "../proc.js";
import type { LoadStats } from "./load-tally.js";

export interface LoadProcess {
  /** The load's counters now. */
  stats(): Promise<LoadStats>;
  /** Stops the load (every loop, then every node) and returns its final counters once the process has exited. */
  stop(): Promise<LoadStats>;
  /** SIGKILL, if still running. */
  kill(): void;
}

/** Forks `entry --role load` against `address` with `workers` worker nodes, and waits (2 min at most) until every node has started. */
export async function startLoadProcess(entry: string, address: string, workers: number): Promise<LoadProcess> {
  const child = fork(entry, ["--role", "load", "--address", address, "--workers", String(workers)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const kill = () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
  const next = messages(child);
  try {
    const ready = await next(120_000);
    if (ready.type !== "ready") throw new Error(`unexpected message from the load generator: ${JSON.stringify(ready)}`);
  } catch (error) {
    kill();
    throw error;
  }
  return {
    async stats() {
      child.send({ type: "stats" });
      return (await next(10_000)).stats as LoadStats;
    },
    async stop() {
      child.send({ type: "stop" });
      const final = (await next(60_000)).stats as LoadStats;
      await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", () => resolve())));
      return final;
    },
    kill,
  };
}

/** The child's next IPC message, or a rejection after `timeoutMs`. */
function messages(child: ChildProcess): (timeoutMs: number) => Promise<any> {
  const waiting: Array<(message: any) => void> = [];
  child.on("message", (message) => waiting.splice(0).forEach((resolve) => resolve(message)));
  return (timeoutMs) =>
    Promise.race([
      new Promise<any>((resolve) => waiting.push(resolve)),
      timeout(timeoutMs).then(() => {
        throw new Error(`the load generator did not answer within ${timeoutMs} ms`);
      }),
    ]);
}
