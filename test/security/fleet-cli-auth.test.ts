import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryServer } from "../../src/app.js";
import { workersCommand } from "../../src/cli/fleet-commands.js";
import { tempDirs } from "../support/temp-dir.js";
import { startSecuredServer } from "../support/secured-server.js";

const ORCHESTRATOR = "orchestrator-token-for-the-cli-test";

describe("worker-registry workers against a registry that needs tokens", () => {
  const dirs = tempDirs();
  let server: RegistryServer;

  beforeAll(async () => {
    const dir = dirs.make();
    server = await startSecuredServer(dir, { orchestrator: ORCHESTRATOR });
  });
  afterAll(async () => {
    await server.close();
    dirs.cleanup();
  });

  async function run(env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    const code = await workersCommand(["--address", `127.0.0.1:${server.port}`, "--json"], {
      env,
      stdout: (text) => (stdout += text),
      stderr: (text) => (stderr += text),
    });
    return { code, stdout, stderr };
  }

  it("reads the token from REGISTRY_TOKEN", async () => {
    const { code, stdout } = await run({ REGISTRY_TOKEN: ORCHESTRATOR });
    expect(code).toBe(0);
    expect(JSON.parse(stdout).stats.totalWorkers).toBe(0);
  });

  it("says why without one, and never prints a token", async () => {
    const { code, stderr } = await run({});
    expect(code).toBe(1);
    expect(stderr).toContain("needs a token, and REGISTRY_TOKEN is not set: reading the fleet needs an orchestrator or admin token");
    const wrong = await run({ REGISTRY_TOKEN: "not-the-right-token-at-all" });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("invalid token");
    expect(wrong.stderr).not.toContain("not-the-right-token-at-all");
  });
});
