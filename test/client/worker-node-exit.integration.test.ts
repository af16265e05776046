import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerChangeEvent, WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { TestRegistry } from "./registry-server.js";
import { nextWithin } from "./watch-helpers.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
/** How long a stopped or drained worker process may take to exit by itself. */
const EXIT_WITHIN_MS = 3000;

let registry: TestRegistry;

beforeAll(async () => {
  // The child runs the package as published, compiled by its own tsconfig into clients/typescript/dist;
  // `npm test` builds it first.
  if (!existsSync(`${root}clients/typescript/dist/index.js`)) {
    throw new Error('clients/typescript/dist is missing: run "npm run build" (npm test does) first');
  }
  registry = await TestRegistry.start({ heartbeatIntervalMs: 100 });
});

afterAll(async () => {
  await registry?.dispose();
});

interface WorkerProcess {
  /** Resolves with the child's exit, and when the marker line was printed; rejects if it runs past 15 s. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number; markedAt: number | undefined }>;
  /** The JSON lines printed so far. */
  lines(): Record<string, unknown>[];
  /** Resolves with the first printed line whose `event` is `event`. */
  line(event: string): Promise<Record<string, unknown>>;
  stderr(): string;
}

/** Runs a fixture against the registry; `marker` names the event line after which the process should exit by itself. */
function runWorkerProcess(name: string, marker: string): WorkerProcess {
  const child = spawn(process.execPath, [fixture(name)], {
    env: { ...process.env, REGISTRY_ADDRESS: registry.address },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let markedAt: number | undefined;
  const waiters: (() => void)[] = [];
  const lines = () =>
    stdout
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (markedAt === undefined && stdout.includes(`"event":"${marker}"`)) markedAt = performance.now();
    for (const wake of waiters.splice(0)) wake();
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number; markedAt: number | undefined }>((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`worker process still running after 15 s; stdout=${stdout} stderr=${stderr}`));
    }, 15_000);
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      for (const wake of waiters.splice(0)) wake();
      resolve({ code, signal, at: performance.now(), markedAt });
    });
  });
  const line = async (event: string): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = lines().find((candidate) => candidate.event === event);
      if (found !== undefined) return found;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the process exited without printing ${event}: ${stdout}${stderr}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { exit, lines, line, stderr: () => stderr };
}

describe("WorkerNode.stop() in a real process", () => {
  it("leaves nothing running: the process exits on its own right after stop()", async () => {
    const child = runWorkerProcess("worker-node-stop.mjs", "stopped");
    const exit = await child.exit;

    expect(child.stderr()).toBe("");
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.markedAt).toBeDefined();
    expect(exit.at - exit.markedAt!).toBeLessThan(EXIT_WITHIN_MS);

    const { workerId } = child.lines()[0] as { workerId: string };
    const client = new WorkerRegistryClient({ address: registry.address });
    try {
      await expect(client.getWorker(workerId)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }
  });
});

describe("a WorkerNode drained from outside, in a real process", () => {
  it("finishes its running task, is removed as drained, and its process exits by itself", async () => {
    const orchestrator = new WorkerRegistryClient({ address: registry.address });
    try {
      const child = runWorkerProcess("worker-node-drain.mjs", "drained");
      const { workerId } = (await child.line("task-running")) as { workerId: string };
      const { revision } = await orchestrator.getRegistryStats();
      const events = orchestrator.watchWorkers({ labelSelector: "rollout=old" }, { startRevision: revision + 1 })[Symbol.asyncIterator]();

      expect(await orchestrator.drainWorker(workerId, { graceMs: 60_000 })).toMatchObject({ state: "draining", currentTasks: 1 });
      const exit = await child.exit;

      expect(child.stderr()).toBe("");
      expect(exit).toMatchObject({ code: 0, signal: null });
      // The task finishes and its drained node leaves in either order: both only wait for the task's bookkeeping.
      expect(child.lines().map((line) => line.event).slice(0, 2)).toEqual(["task-running", "draining"]);
      expect(child.lines().map((line) => line.event).sort()).toEqual(["drained", "draining", "task-finished", "task-running"]);
      expect(await child.line("task-finished")).toEqual({ event: "task-finished", result: "task done" });
      expect(await child.line("drained")).toEqual({ event: "drained", workerId, reason: "drained", runningTasks: 0 });
      expect(exit.at - exit.markedAt!).toBeLessThan(EXIT_WITHIN_MS);

      // The registry recorded the task, then removed the worker because its drain was over.
      const seen: WorkerWatchEvent[] = [];
      while (!seen.some((event) => event.type === "unregistered")) seen.push(await nextWithin(events, "the drained worker's removal"));
      await events.return?.();
      const changes = seen as WorkerChangeEvent[];
      expect(changes.some((event) => event.type === "updated" && event.worker.metrics.tasksCompleted === 1)).toBe(true);
      expect(changes.at(-1)).toMatchObject({ type: "unregistered", removalReason: "drained", worker: { id: workerId, currentTasks: 0 } });
      await expect(orchestrator.getWorker(workerId)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      orchestrator.close();
    }
  });
});
