import { execFile } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestRegistry } from "./registry-server.js";

// The client as a user gets it: `npm pack` of clients/typescript, installed
// with `npm install <tarball>` into an empty project outside the repository,
// where only the package and its declared dependencies exist. A script there
// imports the package by name and runs the acquisition and watch example
// against a real registry.
//
// The package is packed from a clean copy of its folder (its files without
// dist/, as a fresh clone has them), so that `prepare` must build it from
// source, and so that the rebuild does not swap clients/typescript/dist
// under tests that run from it at the same time. The copy finds the
// repository's devDependencies (typescript) through a node_modules link, as
// the folder itself does inside the repository.

const root = fileURLToPath(new URL("../../", import.meta.url));
const packageDir = join(root, "clients", "typescript");
const examples = ["acquire-and-watch.mjs", "rolling-upgrade.mjs"];
const exec = promisify(execFile);

/**
 * The environment for npm: this process's, without what `npm test` exported
 * about the repository's own package (npm_config_local_prefix would point the
 * inner npm at the repository).
 */
function npmEnv(): NodeJS.ProcessEnv {
  const kept = /^npm_config_(registry|cache|userconfig|globalconfig|cafile|proxy|https_proxy|noproxy|strict_ssl)$/i;
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^npm_/i.test(key) && !kept.test(key)) delete env[key];
  }
  delete env.INIT_CWD;
  return env;
}

function npm(args: string[], cwd: string, timeoutMs: number) {
  return exec("npm", args, { cwd, env: npmEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
}

interface PackResult {
  filename: string;
  files: { path: string }[];
}

let workDir: string;
let projectDir: string;
let packed: PackResult;
let registry: TestRegistry;

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), "registry-client-pack-"));
  const copy = join(workDir, "package");
  cpSync(packageDir, copy, {
    recursive: true,
    filter: (source) => !/^(dist|node_modules)(\/|$)/.test(relative(packageDir, source).split(sep).join("/")),
  });
  symlinkSync(join(root, "node_modules"), join(copy, "node_modules"), "dir");
  const { stdout } = await npm(["pack", "--json", "--pack-destination", workDir], copy, 120_000);
  const results = JSON.parse(stdout) as PackResult[];
  expect(results).toHaveLength(1);
  packed = results[0]!;

  // An empty ESM project: nothing but what `npm install` adds.
  projectDir = join(workDir, "project");
  mkdirSync(projectDir);
  writeFileSync(join(projectDir, "package.json"), `${JSON.stringify({ name: "registry-client-smoke", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`);
  await npm(["install", join(workDir, packed.filename), "--prefer-offline", "--no-audit", "--no-fund"], projectDir, 180_000);
  for (const example of examples) copyFileSync(join(packageDir, "examples", example), join(projectDir, example));

  registry = await TestRegistry.start();
}, 300_000);

afterAll(async () => {
  await registry?.dispose();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
});

const isWatchLine = (line: string) => line.startsWith("watch: ");

/** The output block that follows an example's command in the package README. */
function documentedOutput(example: string): string[] {
  const readme = readFileSync(join(packageDir, "README.md"), "utf8");
  const command = `node examples/${example}`.replace(/[./]/g, (c) => `\\${c}`);
  const match = new RegExp(`${command}\\n\`\`\`\\n\\n\`\`\`text\\n([\\s\\S]*?)\\n\`\`\``).exec(readme);
  if (match === null) throw new Error(`the package README shows no output after the command of ${example}`);
  return match[1]!.split("\n");
}

describe("the packed client", () => {
  it("holds the compiled package and its README: no sources, no tests, no server-only contracts", () => {
    const paths = packed.files.map((file) => file.path).sort();
    expect(paths.filter((path) => !(path.startsWith("dist/") || path === "package.json" || path === "README.md"))).toEqual([]);
    expect(paths.filter((path) => path.endsWith(".ts") && !path.endsWith(".d.ts"))).toEqual([]);
    expect(paths.filter((path) => /test|\/gen\/grpc\//.test(path))).toEqual([]);
    // Every module of src/ ships compiled, with its declarations; so does the generated contract it imports.
    const modules = readdirSync(join(packageDir, "src")).filter((name) => name.endsWith(".ts")).map((name) => name.replace(/\.ts$/, ""));
    for (const module of [...modules, "gen/sentinel/registry/v1/registry_service_pb", "gen/sentinel/registry/v1/worker_pb"]) {
      expect(paths).toContain(`dist/${module}.js`);
      expect(paths).toContain(`dist/${module}.d.ts`);
    }
  });

  it("installs into an empty project outside the repository, importing nothing but its declared dependencies", () => {
    expect(relative(root, projectDir).startsWith("..")).toBe(true);
    const installed = join(projectDir, "node_modules", "@sentinel", "worker-registry-client");
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(manifest.dependencies).toEqual({ "@bufbuild/protobuf": "2.13.0", "@grpc/grpc-js": "^1.14.0" });
    const imported = new Set<string>();
    const scan = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) scan(path);
        else if (entry.name.endsWith(".js")) {
          const code = readFileSync(path, "utf8");
          const statements = /^\s*(?:import|export)\s[^;]*?\sfrom\s*"([^"]+)"|^\s*import\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm;
          for (const match of code.matchAll(statements)) {
            const specifier = match[1] ?? match[2] ?? match[3]!;
            if (specifier.startsWith(".") || specifier.startsWith("node:")) continue;
            imported.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
          }
        }
      }
    };
    scan(join(installed, "dist"));
    expect([...imported].sort()).toEqual(Object.keys(manifest.dependencies).sort());
  });

  it("runs the acquisition and watch example there, against a real registry", async () => {
    const { stdout, stderr } = await exec(process.execPath, ["acquire-and-watch.mjs"], {
      cwd: projectDir,
      env: { ...process.env, REGISTRY_ADDRESS: registry.address },
      timeout: 30_000,
    });
    expect(stderr).toBe("");
    // The package README shows the output of a real run; this run must print the same, apart from the
    // reservation's expiry time and from how the watch's lines interleave with the others (each side keeps its order).
    const documented = documentedOutput("acquire-and-watch.mjs");
    expect(documented.filter(isWatchLine)).toHaveLength(7);
    expect(documented).toContain("task ran on coder-node-1");
    const lines = stdout.trimEnd().split("\n");
    expect(lines.filter(isWatchLine)).toEqual(documented.filter(isWatchLine));
    const timestamp = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g;
    const others = lines.filter((line) => !isWatchLine(line));
    expect(others.map((line) => line.replace(timestamp, "<time>"))).toEqual(documented.filter((line) => !isWatchLine(line)).map((line) => line.replace(timestamp, "<time>")));
    expect(others.find((line) => line.startsWith("released "))).toMatch(new RegExp(timestamp.source));
  });

  it("runs the rolling upgrade example there, against a real registry", async () => {
    const { stdout, stderr } = await exec(process.execPath, ["rolling-upgrade.mjs"], {
      cwd: projectDir,
      env: { ...process.env, REGISTRY_ADDRESS: registry.address },
      timeout: 30_000,
    });
    expect(stderr).toBe("");
    const documented = documentedOutput("rolling-upgrade.mjs");
    expect(documented).toContain("in rotation: coder-v2 (v2)");
    expect(stdout.trimEnd().split("\n")).toEqual(documented);
  });
});
