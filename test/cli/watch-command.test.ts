import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { watchCommand } from "../../src/cli/watch-command.js";
import { TestRegistry } from "../client/registry-server.js";
import { CLI_PATH } from "../support/server-process.js";
import { capture } from "./capture.js";

const coder = (nodeId: string) => ({ nodeId, capabilities: ["coder"], maxConcurrentTasks: 4 });

describe("worker-registry watch", () => {
  const registries: TestRegistry[] = [];
  afterEach(async () => {
    await Promise.all(registries.splice(0).map((r) => r.dispose()));
  });

  async function started(): Promise<{ registry: TestRegistry; client: WorkerRegistryClient; next: number }> {
    const registry = await TestRegistry.start();
    registries.push(registry);
    const client = new WorkerRegistryClient({ address: registry.address });
    return { registry, client, next: (await client.getRegistryStats()).revision + 1 };
  }

  it("prints each change live, resumes after the registry restarts without repeating or missing one, and stops cleanly on its signal", async () => {
    const { registry, client, next } = await started();
    const stop = new AbortController();
    const output = capture({ signal: stop.signal });
    const watching = watchCommand(["--address", registry.address, "--from", String(next)], output.io);
    try {
      const first = await client.registerWorker(coder("coder-1"));
      await client.updateTaskCount(first.id, 1);
      await vi.waitFor(() => expect(output.out).toHaveLength(2), { timeout: 5000 });
      expect(output.out[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z  #${next} +registered {8}  coder-1 {5}  ${first.id}  healthy  tasks 0/4$`));
      expect(output.out[1]).toMatch(new RegExp(`  #${next + 1} +updated {11}  coder-1 {5}  ${first.id}  healthy  tasks 1/4$`));

      await registry.stop();
      await registry.start();
      // A change made while the watch is away: printed once it is back, from the revision after the last printed.
      await client.unregisterWorker(first.id);
      await vi.waitFor(() => expect(output.out).toHaveLength(3), { timeout: 10_000 });
      expect(output.out[2]).toMatch(new RegExp(`  #${next + 2} +unregistered {6}  coder-1 {5}  ${first.id}  healthy  tasks 1/4  \\(unregistered\\)$`));
      // The columns line up: the worker id starts at the same place on every line.
      expect(new Set(output.out.map((line) => line.indexOf(first.id))).size).toBe(1);
      expect(output.err[0]).toBe(`watching ${registry.address} from revision ${next}; Ctrl-C stops`);
      expect(output.err.slice(1).join("\n")).toMatch(new RegExp(`^worker-registry: watch interrupted \\(.+\\); resuming from revision ${next + 2} in \\d+\\.\\ds$`, "m"));
    } finally {
      stop.abort();
    }
    expect(await watching).toBe(0);
    client.close();
  });

  it("prints JSON lines with --json, and only the workers the filter matches", async () => {
    const { registry, client, next } = await started();
    const stop = new AbortController();
    const output = capture({ signal: stop.signal });
    const watching = watchCommand(["--json", "--capability", "gpu", "--address", registry.address, "--from", String(next)], output.io);
    await client.registerWorker(coder("coder-1"));
    const gpu = await client.registerWorker({ nodeId: "gpu-1", capabilities: ["gpu"], maxConcurrentTasks: 1 });
    await vi.waitFor(() => expect(output.out).toHaveLength(1), { timeout: 5000 });
    stop.abort();
    expect(await watching).toBe(0);
    expect(JSON.parse(output.out[0]!)).toMatchObject({ type: "registered", revision: next + 1, worker: { id: gpu.id, nodeId: "gpu-1", healthStatus: "healthy" } });
    client.close();
  });

  it("exits 1 with the reason for what retrying cannot cure, and 2 for a bad flag", async () => {
    const { registry, client } = await started();
    const refused = capture();
    expect(await watchCommand(["--address", registry.address, "--capability", "x".repeat(65)], refused.io)).toBe(1);
    expect(refused.err.at(-1)).toMatch(/^worker-registry: filter\.capabilities.* 64 /);
    const bad = capture();
    expect(await watchCommand(["--address", registry.address, "--from", "soon"], bad.io)).toBe(2);
    expect(bad.stderr()).toMatch(/^--from "soon": must be a whole number/);
    client.close();
  });

  it("stops on Ctrl-C (SIGINT) as a command: exit 0, after printing what it saw", async () => {
    const { registry, client, next } = await started();
    const child = spawn(process.execPath, [CLI_PATH, "watch", "--address", registry.address, "--from", String(next)], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on("line", (line) => lines.push(line));
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const worker = await client.registerWorker(coder("coder-9"));
    await vi.waitFor(() => expect(lines).toHaveLength(1), { timeout: 10_000 });
    expect(lines[0]).toContain(`registered          coder-9       ${worker.id}`);
    const sentAt = performance.now();
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(performance.now() - sentAt).toBeLessThan(3000);
    expect(stderr).toBe(`watching ${registry.address} from revision ${next}; Ctrl-C stops\n`);
    client.close();
  });
});
