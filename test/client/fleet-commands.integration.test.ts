import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { resumeEvictionCommand, workerCommand, workersCommand, type FleetCommandIo } from "../../src/cli/fleet-commands.js";
import { TestRegistry } from "./registry-server.js";

let registry: TestRegistry;
let coderId: string;
let reviewerId: string;

beforeAll(async () => {
  registry = await TestRegistry.start();
  const client = new WorkerRegistryClient({ address: registry.address });
  try {
    coderId = (await client.registerWorker({ nodeId: "coder-1", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 })).id;
    reviewerId = (await client.registerWorker({ nodeId: "reviewer-1", capabilities: ["reviewer"], maxConcurrentTasks: 3 })).id;
    await client.updateTaskCount(coderId, 2);
    await client.recordTaskCompletion(coderId, true, 2000);
    await client.recordTaskCompletion(coderId, true, 1000);
    await client.recordTaskCompletion(coderId, false, 3000);
  } finally {
    client.close();
  }
});

afterAll(async () => {
  await registry?.dispose();
});

function capture(env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: FleetCommandIo = { stdout: (text) => out.push(text), stderr: (text) => err.push(text), env };
  return { io, stdout: () => out.join("\n"), stderr: () => err.join("\n") };
}

describe("worker-registry workers", () => {
  it("prints the dashboard as an aligned table", async () => {
    const { io, stdout, stderr } = capture();
    expect(await workersCommand(["--address", registry.address], io)).toBe(0);
    expect(stderr()).toBe("");
    const lines = stdout().split("\n");
    expect(lines).toContain("Workers       2");
    expect(lines).toContain("  healthy     2");
    expect(lines).toContain("  degraded    0");
    expect(lines).toContain("  unhealthy   0");
    expect(lines).toContain("Capacity      2/8 used (6 available)");
    expect(lines).toContain("Tasks         2 completed, 1 failed");
    expect(lines).toContain("Success rate  66.7%");
    const header = lines.findIndex((line) => line.trimStart().startsWith("#  NODE"));
    expect(header).toBeGreaterThan(0);
    const rows = lines.slice(header + 1);
    expect(rows).toHaveLength(2);
    // reviewer-1: 0.5 x 3/3 + priors 0.3 x 0.5 + 0.2 x 0.5 = 0.750;
    // coder-1: 0.5 x 3/5 + 0.3 x 2/3 + 0.2 x (1000 ms / 2000 ms) = 0.600.
    expect(rows[0]).toMatch(new RegExp(`^\\s+1  reviewer-1\\s+${reviewerId}\\s+healthy\\s+0/3\\s+n/a\\s+0\\.750$`));
    expect(rows[1]).toMatch(new RegExp(`^\\s+2  coder-1\\s+${coderId}\\s+healthy\\s+2/5\\s+66\\.7%\\s+0\\.600$`));
    // Aligned: text columns start under their headings, number columns end at the same place.
    const headings = lines[header]!;
    for (const [row, nodeId, workerId] of [
      [rows[0]!, "reviewer-1", reviewerId],
      [rows[1]!, "coder-1", coderId],
    ] as const) {
      expect(row.indexOf(nodeId)).toBe(headings.indexOf("NODE"));
      expect(row.indexOf(workerId)).toBe(headings.indexOf("WORKER"));
      expect(row.indexOf("healthy")).toBe(headings.indexOf("HEALTH"));
      expect(row.length).toBe(headings.length);
    }
  });

  it("prints JSON with --json", async () => {
    const { io, stdout } = capture();
    expect(await workersCommand(["--json", `--address=${registry.address}`], io)).toBe(0);
    const parsed = JSON.parse(stdout()) as {
      address: string;
      stats: { totalWorkers: number; usedCapacity: number; tasksFailed: number };
      topPerformers: { id: string; priority: number }[];
    };
    expect(parsed.address).toBe(registry.address);
    expect(parsed.stats).toMatchObject({ totalWorkers: 2, usedCapacity: 2, tasksFailed: 1 });
    expect(parsed.topPerformers.map((w) => w.id)).toEqual([reviewerId, coderId]);
  });

  it("reads the address from REGISTRY_ADDRESS", async () => {
    const { io, stdout } = capture({ REGISTRY_ADDRESS: registry.address });
    expect(await workersCommand([], io)).toBe(0);
    expect(stdout()).toContain(`Registry      ${registry.address}`);
  });

  it("exits 1 with the reason when the registry cannot be reached", async () => {
    const { io, stderr } = capture();
    expect(await workersCommand(["--address", "127.0.0.1:1"], io)).toBe(1);
    expect(stderr()).toMatch(/^worker-registry: cannot reach the registry at 127\.0\.0\.1:1: /);
  });

  it("exits 2 with the usage for an unknown flag, and 0 with it for --help", async () => {
    const bad = capture();
    expect(await workersCommand(["--bogus"], bad.io)).toBe(2);
    expect(bad.stderr()).toContain("usage: worker-registry workers");
    const help = capture();
    expect(await workersCommand(["--help"], help.io)).toBe(0);
    expect(help.stdout()).toContain("usage: worker-registry workers");
  });
});

describe("several addresses", () => {
  // Nothing listens on port 1: a replica that is down.
  const down = "127.0.0.1:1";

  it("asks the next --address when the first cannot be reached, and names the one that answered", async () => {
    const { io, stdout, stderr } = capture();
    expect(await workersCommand(["--address", down, "--address", registry.address], io)).toBe(0);
    expect(stderr()).toBe("");
    expect(stdout()).toContain(`Registry      ${registry.address} (server time`);
    expect(stdout()).toContain("Workers       2");
  });

  it("reads a comma-separated list from REGISTRY_ADDRESS", async () => {
    const { io, stdout } = capture({ REGISTRY_ADDRESS: `${down}, ${registry.address}` });
    expect(await workerCommand([coderId, "--json"], io)).toBe(0);
    expect(JSON.parse(stdout())).toMatchObject({ id: coderId });
  });

  it("resumes eviction through the next address too", async () => {
    const { io, stdout } = capture();
    expect(await resumeEvictionCommand(["--json", `--address=${down},${registry.address}`], io)).toBe(0);
    expect(JSON.parse(stdout())).toMatchObject({ address: registry.address, wasPaused: false });
  });

  it("exits 1 naming every address when none can be reached", async () => {
    const { io, stderr } = capture();
    expect(await workersCommand(["--address", down, "--address", "127.0.0.1:2"], io)).toBe(1);
    expect(stderr()).toMatch(/^worker-registry: cannot reach the registry at 127\.0\.0\.1:1, 127\.0\.0\.1:2: /);
  });

  it("exits 2 for an empty --address or a REGISTRY_ADDRESS that names no registry", async () => {
    const empty = capture();
    expect(await workersCommand(["--address", registry.address, "--address", ""], empty.io)).toBe(2);
    expect(empty.stderr()).toMatch(/^--address must not be empty/);
    const blank = capture({ REGISTRY_ADDRESS: " , " });
    expect(await workersCommand([], blank.io)).toBe(2);
    expect(blank.stderr()).toMatch(/^REGISTRY_ADDRESS names no registry: " , "/);
  });
});

describe("worker-registry worker <id>", () => {
  it("prints one worker", async () => {
    const { io, stdout, stderr } = capture();
    expect(await workerCommand([coderId, "--address", registry.address], io)).toBe(0);
    expect(stderr()).toBe("");
    const lines = stdout().split("\n");
    expect(lines.slice(0, 10)).toEqual([
      `Worker          ${coderId}`,
      "Node            coder-1",
      "Version         (none)",
      "Labels          (none)",
      "Capabilities    coder, tester",
      "State           active (in rotation)",
      "Health          healthy",
      "Tasks           2/5 (3 available)",
      "Success rate    66.7% (2 completed, 1 failed)",
      "Avg duration    2000ms",
    ]);
    expect(lines[10]).toMatch(/^Registered      \d{4}-\d\d-\d\dT/);
    expect(lines[11]).toMatch(/^Last heartbeat  \d{4}-\d\d-\d\dT/);
  });

  it("prints JSON with --json", async () => {
    const { io, stdout } = capture();
    expect(await workerCommand(["--json", reviewerId, "--address", registry.address], io)).toBe(0);
    expect(JSON.parse(stdout())).toMatchObject({ id: reviewerId, nodeId: "reviewer-1", healthStatus: "healthy", currentTasks: 0 });
  });

  it("exits 1 naming the worker that is not found", async () => {
    const { io, stderr } = capture();
    const missing = "worker-1767268800123-abc123xyz";
    expect(await workerCommand([missing, "--address", registry.address], io)).toBe(1);
    expect(stderr()).toBe(`worker-registry: worker ${missing} not found`);
  });

  it("exits 2 without exactly one id", async () => {
    const none = capture();
    expect(await workerCommand(["--address", registry.address], none.io)).toBe(2);
    expect(none.stderr()).toContain("usage: worker-registry worker <id>");
    const two = capture();
    expect(await workerCommand([coderId, reviewerId], two.io)).toBe(2);
  });
});

describe("worker-registry resume-eviction", () => {
  it("says when eviction was not paused, and answers the status as JSON", async () => {
    const text = capture();
    expect(await resumeEvictionCommand(["--address", registry.address], text.io)).toBe(0);
    expect(text.stdout()).toBe("eviction was not paused; nothing changed");
    const json = capture();
    expect(await resumeEvictionCommand(["--address", registry.address, "--json"], json.io)).toBe(0);
    expect(JSON.parse(json.stdout())).toMatchObject({ wasPaused: false, eviction: { paused: false, reason: "" } });
  });
});
