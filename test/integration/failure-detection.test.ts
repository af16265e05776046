import { status } from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { WorkerEventType, type WorkerEvent } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { openHeartbeats, openWatch, sleep, waitUntil } from "../support/watch-issue4.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/heartbeat-worker.mjs", import.meta.url));
const COMPILED_CONTRACT = fileURLToPath(new URL("../../clients/typescript/dist/contract.js", import.meta.url));

/** Starts the fixture worker process and resolves once it has registered and had its first heartbeat answered. */
async function spawnWorker(address: string, capability: string): Promise<{ child: ChildProcess; workerId: string; exited: Promise<NodeJS.Signals | null> }> {
  const child = spawn(process.execPath, [FIXTURE], {
    env: { ...process.env, REGISTRY_ADDRESS: address, WORKER_CAPABILITY: capability, HEARTBEAT_MS: "100" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
  const workerId = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const message = JSON.parse(line) as { event: string; workerId: string };
      if (message.event === "heartbeating") resolve(message.workerId);
    });
    void exited.then((signal) => reject(new Error(`worker process exited (${signal}) before heartbeating: ${stderr}`)));
  });
  return { child, workerId, exited };
}

const healthChanged = (workerId: string, to: HealthStatus) => (e: WorkerEvent) =>
  e.worker?.id === workerId && e.type === WorkerEventType.HEALTH_CHANGED && e.worker.healthStatus === to;

describe("failure detection from heartbeat streams", () => {
  const dirs = tempDirs();
  const children: ChildProcess[] = [];
  let server: RegistryServer;
  let address: string;
  let client: RawRegistryClient;

  beforeAll(async () => {
    if (!existsSync(COMPILED_CONTRACT)) throw new Error(`${COMPILED_CONTRACT} is missing: run "npm run build" before these tests`);
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    address = `127.0.0.1:${server.port}`;
    client = new RawRegistryClient(address);
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    client.close();
    await server.close();
    dirs.cleanup();
  });

  const health = async (workerId: string) => (await client.call("getWorker", { workerId })).worker.healthStatus as HealthStatus;
  const watchFrom = async (capability: string) =>
    openWatch(client, { filter: { capabilities: [capability] }, startRevision: (await client.call("getRegistryStats")).revision + 1n });

  it("a worker process killed with SIGKILL is DEGRADED within a second, with an event; its next heartbeat makes it HEALTHY", async () => {
    const capability = "fd-killed";
    const watch = await watchFrom(capability);
    try {
      const worker = await spawnWorker(address, capability);
      children.push(worker.child);
      const { workerId } = worker;
      await watch.waitFor("REGISTERED", (e) => e.worker?.id === workerId && e.type === WorkerEventType.REGISTERED);
      await sleep(300);
      expect(await health(workerId)).toBe(HealthStatus.HEALTHY);

      const killedAt = performance.now();
      worker.child.kill("SIGKILL");
      const degraded = await watch.waitFor("HEALTH_CHANGED to DEGRADED", healthChanged(workerId, HealthStatus.DEGRADED), 3000);
      const latencyMs = watch.arrivals[watch.events.indexOf(degraded)]! - killedAt;
      expect(await worker.exited).toBe("SIGKILL");
      expect(degraded.previousHealthStatus).toBe(HealthStatus.HEALTHY);
      expect(latencyMs, `event arrived ${Math.round(latencyMs)} ms after the kill`).toBeLessThan(1000);
      expect(await health(workerId)).toBe(HealthStatus.DEGRADED);
      // Only the one degradation so far: no flapping back and forth.
      expect(watch.events.filter((e) => e.worker?.id === workerId && e.type === WorkerEventType.HEALTH_CHANGED)).toHaveLength(1);

      // A new stream's first heartbeat (from someone else, here the test) heals it at once.
      const heartbeats = openHeartbeats(client, workerId);
      const reply = await heartbeats.beat();
      expect(reply.healthStatus).toBe(HealthStatus.HEALTHY);
      expect(await health(workerId)).toBe(HealthStatus.HEALTHY);
      const healed = await watch.waitFor("HEALTH_CHANGED back to HEALTHY", healthChanged(workerId, HealthStatus.HEALTHY), 3000);
      expect(healed.previousHealthStatus).toBe(HealthStatus.DEGRADED);
      heartbeats.stream.end();
      expect((await heartbeats.done).code).toBe(status.OK);
    } finally {
      watch.cancel();
    }
  });

  it("a clean half-close (end) does not degrade the worker; a client cancel does", async () => {
    const capability = "fd-close";
    const watch = await watchFrom(capability);
    try {
      const register = async (nodeId: string) =>
        (await client.call("registerWorker", { nodeId, capabilities: [capability], maxConcurrentTasks: 1 })).worker.id as string;
      const polite = await register("fd-polite");
      const cancelled = await register("fd-cancelled");

      const goodbye = openHeartbeats(client, polite);
      expect((await goodbye.beat()).healthStatus).toBe(HealthStatus.HEALTHY);
      goodbye.stream.end();
      expect((await goodbye.done).code).toBe(status.OK);
      await sleep(100);
      expect(await health(polite)).toBe(HealthStatus.HEALTHY);

      const dropped = openHeartbeats(client, cancelled);
      expect((await dropped.beat()).healthStatus).toBe(HealthStatus.HEALTHY);
      // Between heartbeats, as a worker shutting down abruptly would: the stream is idle when it is cancelled.
      await sleep(50);
      dropped.stream.cancel();
      expect((await dropped.done).code).toBe(status.CANCELLED);
      await waitUntil("the cancelled worker to be DEGRADED", async () => (await health(cancelled)) === HealthStatus.DEGRADED, 1000);
      await watch.waitFor("HEALTH_CHANGED of the cancelled worker", healthChanged(cancelled, HealthStatus.DEGRADED), 3000);

      // Events are published in order: had the half-close degraded `polite`, its event would have come first.
      expect(watch.events.filter((e) => e.worker?.id === polite && e.type === WorkerEventType.HEALTH_CHANGED)).toEqual([]);
      expect(await health(polite)).toBe(HealthStatus.HEALTHY);
    } finally {
      watch.cancel();
    }
  });
});
