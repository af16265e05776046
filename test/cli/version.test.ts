import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { readBuildInfo } from "../../src/build-info.js";
import { CLI_PATH, startServerProcess } from "../support/server-process.js";
import { tempDirs } from "../support/temp-dir.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };

/** The commit git says is checked out, or undefined where git cannot tell (no git, not a checkout). */
function gitHead(): string | undefined {
  const run = spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  return run.status === 0 ? run.stdout.trim() : undefined;
}

describe("what is running: version, commit, Node.js", () => {
  const dirs = tempDirs();
  afterAll(() => dirs.cleanup());

  it("worker-registry --version prints the package version, the commit the build came from and the Node.js version", () => {
    const head = gitHead();
    const printed = execFileSync(process.execPath, [CLI_PATH, "--version"], { encoding: "utf8" });
    const match = /^worker-registry (\S+) \(commit (\S+), node (\S+)\)\n$/.exec(printed);
    expect(match, printed).not.toBeNull();
    const [, shownVersion, commit, node] = match!;
    expect(shownVersion).toBe(version);
    expect(node).toBe(process.version);
    // A checkout with changes not committed is built "-dirty"; without git the commit is unknown.
    if (head === undefined) expect(commit).toBe("unknown");
    else expect(commit).toMatch(new RegExp(`^${head}(-dirty)?$`));
    expect(execFileSync(process.execPath, [CLI_PATH, "version"], { encoding: "utf8" })).toBe(printed);
  });

  it("the startup log says the same", async () => {
    const server = await startServerProcess(["--db", join(dirs.make(), "registry.db")]);
    try {
      const serving = server.logs.find((entry) => entry.msg === "registry serving")!;
      const build = readBuildInfo();
      expect(serving).toMatchObject({ version: build.version, commit: build.commit, nodeVersion: process.version });
      expect(execFileSync(process.execPath, [CLI_PATH, "--version"], { encoding: "utf8" })).toBe(
        `worker-registry ${serving.version} (commit ${serving.commit}, node ${serving.nodeVersion})\n`,
      );
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });

  it("a build outside git takes the commit from WORKER_REGISTRY_COMMIT", () => {
    const out = join(dirs.make(), "build-info.json");
    execFileSync(process.execPath, [join(ROOT, "scripts/write-build-info.mjs"), out], { env: { ...process.env, WORKER_REGISTRY_COMMIT: "0123abc" } });
    expect(JSON.parse(readFileSync(out, "utf8"))).toEqual({ version, commit: "0123abc" });
  });

  it("code run from source before any build still knows its version, and says the commit is unknown", () => {
    const root = dirs.make();
    writeFileSync(join(root, "package.json"), JSON.stringify({ name: "worker-registry", version: "9.9.9" }));
    mkdirSync(join(root, "src"));
    expect(readBuildInfo(join(root, "src", "build-info.js"))).toEqual({ version: "9.9.9", commit: "unknown", nodeVersion: process.version });
  });
});
