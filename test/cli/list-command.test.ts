import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { ago, listCommand } from "../../src/cli/list-command.js";
import { parseExposition, valueOf } from "../support/exposition.js";
import { FakeClock } from "../support/fake-clock.js";
import { tempDirs } from "../support/temp-dir.js";
import { capture } from "./capture.js";

const MINUTE = 60_000;

describe("worker-registry list", () => {
  const dirs = tempDirs();
  const clock = new FakeClock();
  let server: RegistryServer;
  let address: string;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      clock,
      // The clock jumps by minutes: neither a stall of the registry, nor old enough for cleanup.
      registry: { stallThresholdMs: 24 * 60 * MINUTE, workerTtlMs: 60 * MINUTE },
    });
    address = server.address;
    const client = new WorkerRegistryClient({ address });
    try {
      // Silent for 16 minutes: unhealthy. For 11: degraded. Registered just now: healthy.
      ids.unhealthy = (await client.registerWorker({ nodeId: "gpu-7", capabilities: ["render", "gpu"], maxConcurrentTasks: 2 })).id;
      clock.advance(5 * MINUTE);
      ids.degraded = (await client.registerWorker({ nodeId: "coder-2", capabilities: ["coder"], maxConcurrentTasks: 5 })).id;
      clock.advance(11 * MINUTE);
      ids.healthy = (await client.registerWorker({ nodeId: "coder-1", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 })).id;
      await client.updateTaskCount(ids.healthy, 2);
      await client.recordTaskCompletion(ids.healthy, true, 1000);
      await client.recordTaskCompletion(ids.healthy, false, 1000);
    } finally {
      client.close();
    }
  });
  afterAll(async () => {
    await server.close();
    dirs.cleanup();
  });

  const list = async (...args: string[]) => {
    const { io, stdout, stderr } = capture({ now: () => clock.now() });
    const code = await listCommand([...args, "--address", address], io);
    return { code, stdout: stdout(), stderr: stderr() };
  };

  it("prints every worker, whatever its health, as an aligned table with a count by health", async () => {
    const { code, stdout, stderr } = await list();
    expect([code, stderr]).toEqual([0, ""]);
    const lines = stdout.split("\n");
    expect(lines[0]).toMatch(/^NODE\s+WORKER\s+VERSION\s+STATE\s+HEALTH\s+TASKS\s+SUCCESS\s+LAST HEARTBEAT\s+CAPABILITIES\s+LABELS$/);
    // Ordered by id: by registration time.
    expect(lines.slice(1, 4)).toEqual([
      expect.stringMatching(new RegExp(`^gpu-7\\s+${ids.unhealthy}\\s+-\\s+active\\s+unhealthy\\s+0/2\\s+n/a\\s+16m ago\\s+render,gpu\\s+-$`)),
      expect.stringMatching(new RegExp(`^coder-2\\s+${ids.degraded}\\s+-\\s+active\\s+degraded\\s+0/5\\s+n/a\\s+11m ago\\s+coder\\s+-$`)),
      expect.stringMatching(new RegExp(`^coder-1\\s+${ids.healthy}\\s+-\\s+active\\s+healthy\\s+2/5\\s+50\\.0%\\s+0s ago\\s+coder,tester\\s+-$`)),
    ]);
    for (const row of lines.slice(1, 4)) {
      expect(row.indexOf(row.split(/\s+/)[1]!)).toBe(lines[0]!.indexOf("WORKER"));
    }
    expect(lines.slice(4)).toEqual(["", `3 workers: 1 healthy, 1 degraded, 1 unhealthy (from ${address})`]);
  });

  it("filters by health and by capability, on the server", async () => {
    const unhealthy = await list("--health", "unhealthy");
    expect(unhealthy.stdout).toContain(ids.unhealthy);
    expect(unhealthy.stdout).not.toContain(ids.degraded);
    expect(unhealthy.stdout).toContain("1 worker: 0 healthy, 0 degraded, 1 unhealthy");
    const notHealthy = await list("--health", "degraded,unhealthy");
    expect(notHealthy.stdout).toContain("2 workers: 0 healthy, 1 degraded, 1 unhealthy");
    const coders = await list("--capability", "coder", "--capability", "tester");
    expect(coders.stdout).toContain(ids.healthy);
    expect(coders.stdout).toContain("1 worker: 1 healthy");
    const nobody = await list("--capability", "painter");
    expect(nobody.stdout.split("\n")[0]).toBe("no workers match");
  });

  it("reads the fleet a page at a time, and the list is still complete", async () => {
    const discoverCalls = async () =>
      valueOf(parseExposition(await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text()), "worker_registry_rpc_duration_seconds_count", {
        method: "DiscoverWorkers",
        code: "OK",
      }) ?? 0;
    const before = await discoverCalls();
    const { stdout } = await list("--page-size", "1", "--json");
    expect(await discoverCalls()).toBeGreaterThanOrEqual(before + 3);
    const parsed = JSON.parse(stdout) as { address: string; workers: Array<{ id: string; healthStatus: string; lastHeartbeatAt: string }> };
    expect(parsed.address).toBe(address);
    expect(parsed.workers.map((w) => [w.id, w.healthStatus])).toEqual([
      [ids.unhealthy, "unhealthy"],
      [ids.degraded, "degraded"],
      [ids.healthy, "healthy"],
    ]);
    expect(parsed.workers[2]!.lastHeartbeatAt).toBe(new Date(clock.now()).toISOString());
  });

  it("refuses a health state that does not exist, and a page size out of range, with the usage", async () => {
    const health = await list("--health", "sick");
    expect(health.code).toBe(2);
    expect(health.stderr).toMatch(/^--health "sick": must be healthy, degraded or unhealthy\n\nusage: worker-registry list/);
    const page = await list("--page-size", "0");
    expect(page.code).toBe(2);
    expect(page.stderr).toMatch(/^--page-size "0": must be a whole number from 1 to 10000/);
  });
});

describe("ago", () => {
  it.each([
    [0, "0s ago"],
    [-5_000, "0s ago"],
    [42_000, "42s ago"],
    [11 * MINUTE + 5_000, "11m 5s ago"],
    [16 * MINUTE, "16m ago"],
    [2 * 60 * MINUTE + 3 * MINUTE + 59_000, "2h 3m ago"],
    [4 * 24 * 60 * MINUTE + 60 * MINUTE, "4d 1h ago"],
  ])("%i ms is %s", (ms, text) => {
    expect(ago(ms)).toBe(text);
  });
});
