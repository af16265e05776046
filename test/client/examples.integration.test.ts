import * as grpc from "@grpc/grpc-js";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { TestRegistry } from "./registry-server.js";
import { until } from "./watch-helpers.js";
import { RemovalReason, WorkerEventType, WorkerState } from "@sentinel/worker-registry-client/contract";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { openWatch } from "../support/watch-issue4.js";

// The usage guide's examples, compiled by the root build into dist/examples,
// run as a user would run them against a real registry; the printed lines are
// checked against what the guide shows.

const root = fileURLToPath(new URL("../../", import.meta.url));
const example = (name: string) => `${root}dist/examples/${name}.js`;
const WORKER_ID = /worker-\d+-[a-z0-9]+/;

let registry: TestRegistry;

beforeAll(async () => {
  // `npm test` builds first; running vitest alone needs `npm run build`.
  for (const name of ["complete-example", "monitoring-dashboard", "worker-node"]) {
    if (!existsSync(example(name))) throw new Error(`${example(name)} is missing: run "npm run build" (npm test does) first`);
  }
  registry = await TestRegistry.start();
});

afterAll(async () => {
  await registry?.dispose();
});

function run(name: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [example(name)], {
    env: { ...process.env, REGISTRY_ADDRESS: registry.address, ...env },
    timeout: 15_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number | null; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** The indented block the Complete Example prints for one worker. */
function workerBlock(stdout: string, nodeId: string): string {
  const block = stdout.split(/\n(?=Worker: )/).find((part) => part.includes(`  Node: ${nodeId}\n`));
  if (block === undefined) throw new Error(`no block for ${nodeId} in:\n${stdout}`);
  return block;
}

describe("the guide's examples against a real registry", () => {
  // Order matters: the dashboard reads what the complete example left behind.
  it("Complete Example: registers two workers, runs a task on the best coder and prints every worker", async () => {
    const { code, stdout, stderr } = await run("complete-example", { EXAMPLE_TASK_MS: "50" });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.split("\n");
    expect(lines[0]).toBe("Assigning tasks...");
    expect(lines[1]).toMatch(new RegExp(`^Selected worker: ${WORKER_ID.source}$`));
    expect(lines[2]).toBe("Task completed successfully");
    const selected = lines[1]!.slice("Selected worker: ".length);

    const coder = workerBlock(stdout, "coder-1");
    expect(coder).toContain(`Worker: ${selected}\n`);
    expect(coder).toContain("  Capabilities: coder, tester\n");
    expect(coder).toContain("  Health: healthy\n");
    // The guide assigns the task and records its completion but never lowers the count.
    expect(coder).toContain("  Tasks: 1/5\n");
    expect(coder).toContain("  Completed: 1\n");
    expect(coder).toContain("  Failed: 0\n");
    expect(coder).toContain("  Avg Duration: 50ms\n");

    const reviewer = workerBlock(stdout, "reviewer-1");
    expect(reviewer).toMatch(new RegExp(`^Worker: ${WORKER_ID.source}\n`));
    expect(reviewer).toContain("  Capabilities: reviewer\n");
    expect(reviewer).toContain("  Health: healthy\n");
    expect(reviewer).toContain("  Tasks: 0/3\n");
    expect(reviewer).toContain("  Completed: 0\n");
    expect(reviewer).toContain("  Avg Duration: 0ms\n");
  });

  it("Monitoring Dashboard: counts, capacity, success rate and top performers of that fleet", async () => {
    const { code, stdout, stderr } = await run("monitoring-dashboard");
    expect(stderr).toBe("");
    expect(code).toBe(0);
    // coder-1: 0.5 x 4/5 + 0.3 x 1 + 0.2 x min(1, 1000/50); reviewer-1: 0.5 x 1 + priors 0.3 x 0.5 + 0.2 x 0.5.
    expect(stdout).toBe(
      [
        "",
        "=== Worker Dashboard ===",
        "",
        "Healthy: 2",
        "Degraded: 0",
        "Unhealthy: 0",
        "",
        "Capacity: 1/8 (7 available)",
        "",
        "Tasks: 1 completed, 0 failed",
        "Success Rate: 100.0%",
        "",
        "Top Performers:",
        "  1. coder-1 (priority: 0.900)",
        "  2. reviewer-1 (priority: 0.750)",
        "",
      ].join("\n"),
    );
  });

  // Regression test: the guide's executeTask never lowers the task count, so with the server holding it to
  // 0..max_concurrent_tasks the sixth task was refused (FAILED_PRECONDITION) inside the try, recorded as a failure,
  // and the worker stayed full for ever.
  it("Worker Node: runs more tasks than its capacity one after another, each a success, and gives every slot back", async () => {
    const tasks = 7;
    const capacity = 5;
    const child = spawn(process.execPath, [example("worker-node")], {
      env: { ...process.env, REGISTRY_ADDRESS: registry.address, EXAMPLE_TASKS: String(tasks) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const outcomes = () => (stdout + stderr).match(/^Task (completed|failed) /gm)?.length ?? 0;
    let tasksDone: () => void = () => undefined;
    const allTasksDone = new Promise<void>((resolve) => (tasksDone = resolve));
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (outcomes() === tasks) tasksDone();
    });
    const started = new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /^Worker (\S+) started$/m.exec(stdout);
        if (match) resolve(match[1]!);
        if (outcomes() === tasks) tasksDone();
      });
      child.on("exit", () => reject(new Error(`worker-node exited before starting: ${stdout}${stderr}`)));
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal })),
    );

    const workerId = await started;
    expect(workerId).toMatch(WORKER_ID);
    const client = new WorkerRegistryClient({ address: registry.address });
    try {
      await Promise.race([allTasksDone, exited.then(() => Promise.reject(new Error(`worker-node exited early: ${stdout}${stderr}`)))]);
      expect(tasks).toBeGreaterThan(capacity);
      // The example prints a task's outcome before its finally gives the slot back: wait for that call.
      await until("the last task's slot given back", async () => (await client.getWorker(workerId)).currentTasks === 0);
      // Every task ran and succeeded, and the worker holds no slot once they are over.
      expect(await client.getWorker(workerId)).toMatchObject({
        nodeId: "coder-node-1",
        capabilities: ["coder", "tester"],
        maxConcurrentTasks: capacity,
        currentTasks: 0,
        availableCapacity: capacity,
        successRate: 1,
        metrics: { tasksCompleted: tasks, tasksFailedCount: 0 },
      });
      child.kill("SIGTERM");
      expect(await exited).toEqual({ code: 0, signal: null });
      const lines = stdout.trimEnd().split("\n");
      expect(lines[0]).toBe(`Worker ${workerId} started`);
      for (let i = 1; i <= tasks; i++) {
        expect(lines[2 * i - 1]).toBe(`Executing task: { id: ${i} }`);
        expect(lines[2 * i]).toMatch(/^Task completed in \d+ms$/);
      }
      expect(lines.slice(2 * tasks + 1)).toEqual([`Worker ${workerId} stopped`]);
      expect(stderr).toBe("");
      await expect(client.getWorker(workerId)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      child.kill("SIGKILL");
      client.close();
    }
  });

  it("Worker Node: a SIGTERM in the middle of a task drains the worker: the task finishes and is recorded, then the worker leaves", async () => {
    const raw = new RawRegistryClient(registry.address);
    const watch = openWatch(raw, {});
    const child = spawn(process.execPath, [example("worker-node")], {
      env: { ...process.env, REGISTRY_ADDRESS: registry.address, EXAMPLE_TASKS: "5", EXAMPLE_TASK_MS: "1500" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    try {
      await until("the first task to start", async () => stdout.includes("Executing task: { id: 1 }"));
      const workerId = /^Worker (\S+) started$/m.exec(stdout)![1]!;
      child.kill("SIGTERM");
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(stdout.trimEnd().split("\n").slice(1)).toEqual(["Executing task: { id: 1 }", expect.stringMatching(/^Task completed in \d+ms$/), `Worker ${workerId} stopped`]);
      expect(stderr).toBe("");
      // Drained while its task ran: out of rotation first, then removed by the registry once the task gave its slot back.
      const removed = await watch.waitFor("the worker's removal", (e) => e.worker?.id === workerId && e.type === WorkerEventType.UNREGISTERED, 5000);
      const drained = watch.events.find((e) => e.worker?.id === workerId && e.type === WorkerEventType.STATE_CHANGED);
      expect(drained?.worker?.state).toBe(WorkerState.DRAINING);
      expect({ reason: removed.removalReason, tasks: removed.worker!.currentTasks, completed: removed.worker!.metrics!.tasksCompleted }).toEqual({
        reason: RemovalReason.DRAINED,
        tasks: 0,
        completed: 1n,
      });
    } finally {
      child.kill("SIGKILL");
      watch.cancel();
      raw.close();
    }
  });
});
