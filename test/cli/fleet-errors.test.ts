import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";
import type { RegistryServer } from "../../src/app.js";
import { resumeEvictionCommand, workerCommand } from "../../src/cli/fleet-commands.js";
import { tokenOf } from "../../src/cli/fleet-errors.js";
import { listCommand } from "../../src/cli/list-command.js";
import { unregisterCommand } from "../../src/cli/unregister-command.js";
import { watchCommand } from "../../src/cli/watch-command.js";
import { tempDirs } from "../support/temp-dir.js";
import { capture } from "./capture.js";
import { startSecuredServer } from "../support/secured-server.js";

const TOKENS = { admin: "admin-token-of-the-cli-error-tests-0123456", orchestrator: "orchestrator-token-of-the-cli-error-tests-01", worker: "worker-token-of-the-cli-error-tests-0123456" };

describe("errors an operator understands", () => {
  it("an unreachable registry: which address, and that nothing listens there", async () => {
    const { io, stderr } = capture();
    expect(await listCommand(["--address", "127.0.0.1:1"], io)).toBe(1);
    expect(stderr()).toBe("worker-registry: cannot reach the registry at 127.0.0.1:1: nothing listens there (connection refused): is the registry running, on that host and port?");
    const both = capture();
    expect(await listCommand(["--address", "127.0.0.1:1,127.0.0.1:2"], both.io)).toBe(1);
    expect(both.stderr()).toMatch(/^worker-registry: cannot reach the registry at 127\.0\.0\.1:1, 127\.0\.0\.1:2: nothing listens there/);
  });

  it("a host name that does not resolve", async () => {
    const { io, stderr } = capture();
    expect(await listCommand(["--address", "no-such-registry.invalid:50051"], io)).toBe(1);
    expect(stderr()).toBe("worker-registry: cannot reach the registry at no-such-registry.invalid:50051: the host name does not resolve");
  });

  it("names the roles that may do an operation, from the access policy", () => {
    expect(tokenOf("read-fleet")).toBe("an orchestrator or admin token");
    expect(tokenOf("administer")).toBe("an admin token");
    expect(tokenOf("unregister")).toBe("an admin token");
    expect(tokenOf("register")).toBe("a worker or admin token");
  });

  describe("against a registry with tokens", () => {
    const dirs = tempDirs();
    let server: RegistryServer;
    let address: string;
    beforeAll(async () => {
      const dir = dirs.make();
      server = await startSecuredServer(dir, TOKENS);
      address = server.address;
    });
    afterAll(async () => {
      await server.close();
      dirs.cleanup();
    });

    const run = async (command: typeof listCommand, args: string[], token?: string) => {
      const out = capture({ env: token === undefined ? {} : { REGISTRY_TOKEN: token } });
      const code = await command([...args, "--address", address], out.io);
      return { code, stdout: out.stdout(), stderr: out.stderr() };
    };

    it("a missing token points to REGISTRY_TOKEN and the role it must have", async () => {
      const { code, stderr } = await run(listCommand, []);
      expect(code).toBe(1);
      expect(stderr).toBe(`worker-registry: the registry at ${address} needs a token, and REGISTRY_TOKEN is not set: reading the fleet needs an orchestrator or admin token`);
    });

    it("a token of the wrong role: which role is needed, in words", async () => {
      expect((await run(listCommand, [], TOKENS.worker)).stderr).toBe(
        "worker-registry: reading the fleet needs an orchestrator or admin token, and the token in REGISTRY_TOKEN is not one (the registry said: the worker role may not read-fleet)",
      );
      expect((await run(resumeEvictionCommand, [], TOKENS.orchestrator)).stderr).toBe(
        "worker-registry: resuming eviction needs an admin token, and the token in REGISTRY_TOKEN is not one (the registry said: the orchestrator role may not administer)",
      );
      const watch = await run(watchCommand, [], TOKENS.worker);
      expect(watch.code).toBe(1);
      expect(watch.stderr).toContain("worker-registry: reading the fleet needs an orchestrator or admin token, and the token in REGISTRY_TOKEN is not one");
    });

    it("a token the registry does not know: said so, the token never printed", async () => {
      const wrong = "not-a-token-of-this-registry-at-all-0123456789";
      const { code, stderr } = await run(workerCommand, ["worker-1767268800123-abc123xyz"], wrong);
      expect(code).toBe(1);
      expect(stderr).toBe(`worker-registry: the registry at ${address} refused the token in REGISTRY_TOKEN (invalid token): reading a worker needs an orchestrator or admin token`);
      expect(stderr).not.toContain(wrong);
    });

    describe("worker-registry unregister", () => {
      it("removes each worker named, with an admin token, and says so", async () => {
        const client = new WorkerRegistryClient({ address, token: TOKENS.worker });
        const a = await client.registerWorker({ nodeId: "unreg-a", capabilities: ["x"], maxConcurrentTasks: 1 });
        const b = await client.registerWorker({ nodeId: "unreg-b", capabilities: ["x"], maxConcurrentTasks: 1 });
        client.close();
        const missing = "worker-1767268800123-abc123xyz";
        const { code, stdout, stderr } = await run(unregisterCommand, [a.id, missing, b.id], TOKENS.admin);
        expect(code).toBe(1);
        expect(stdout).toBe(`unregistered ${a.id}\nunregistered ${b.id}`);
        expect(stderr).toBe(`worker-registry: worker ${missing} not found`);
        const again = await run(listCommand, ["--json"], TOKENS.admin);
        expect(JSON.parse(again.stdout).workers.map((w: { id: string }) => w.id)).not.toContain(a.id);
      });

      it("with another role's token: the admin role is needed, and the other ids are not tried", async () => {
        const client = new WorkerRegistryClient({ address, token: TOKENS.worker });
        const a = await client.registerWorker({ nodeId: "unreg-c", capabilities: ["x"], maxConcurrentTasks: 1 });
        const b = await client.registerWorker({ nodeId: "unreg-d", capabilities: ["x"], maxConcurrentTasks: 1 });
        client.close();
        const { code, stdout, stderr } = await run(unregisterCommand, [a.id, b.id], TOKENS.orchestrator);
        expect([code, stdout]).toEqual([1, ""]);
        expect(stderr.split("\n")).toEqual([
          "worker-registry: unregistering workers needs an admin token, and the token in REGISTRY_TOKEN is not one (the registry said: the orchestrator role may not unregister)",
          `worker-registry: not tried, for the same reason: ${b.id}`,
        ]);
        const json = await run(unregisterCommand, ["--json", a.id, b.id], TOKENS.admin);
        expect(json.code).toBe(0);
        expect(JSON.parse(json.stdout)).toEqual({ address, unregistered: [a.id, b.id], failed: [] });
      });

      it("needs at least one id", async () => {
        const { code, stderr } = await run(unregisterCommand, [], TOKENS.admin);
        expect(code).toBe(2);
        expect(stderr).toMatch(/^expected at least 1 argument, got 0\n\nusage: worker-registry unregister <id>\.\.\./);
      });
    });
  });
});
