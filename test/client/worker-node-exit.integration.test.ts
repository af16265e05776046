import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { TestRegistry } from "./registry-server.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const fixture = fileURLToPath(new URL("./fixtures/worker-node-stop.mjs", import.meta.url));
/** How long a stopped worker process may take to exit by itself. */
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

describe("WorkerNode.stop() in a real process", () => {
  it("leaves nothing running: the process exits on its own right after stop()", async () => {
    const child = spawn(process.execPath, [fixture], {
      env: { ...process.env, REGISTRY_ADDRESS: registry.address },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let stoppedAt: number | undefined;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stoppedAt === undefined && stdout.includes('"event":"stopped"')) stoppedAt = performance.now();
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));

    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve, reject) => {
      const guard = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`worker process still running ${EXIT_WITHIN_MS}ms after stop(); stdout=${stdout} stderr=${stderr}`));
      }, 15_000);
      child.on("exit", (code, signal) => {
        clearTimeout(guard);
        resolve({ code, signal, at: performance.now() });
      });
    });

    expect(stderr).toBe("");
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(stoppedAt).toBeDefined();
    expect(exit.at - stoppedAt!).toBeLessThan(EXIT_WITHIN_MS);

    const { workerId } = JSON.parse(stdout.trim()) as { workerId: string };
    const client = new WorkerRegistryClient({ address: registry.address });
    try {
      await expect(client.getWorker(workerId)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }
  });
});
