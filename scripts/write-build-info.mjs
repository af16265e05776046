#!/usr/bin/env node
// Writes dist/build-info.json (or the file named by the first argument): the package's version and the commit it was built from, which the server shows in
// worker_registry_build_info, its startup log and `worker-registry --version`. Run by `npm run build`, after tsc.
//
// The commit is $WORKER_REGISTRY_COMMIT when set (a build from a tarball or in a container without .git), else
// `git rev-parse HEAD`, with "-dirty" when tracked files differ from it, else "unknown" (no git, or not a checkout).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

function git(...args) {
  return execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
}

function commit() {
  const given = process.env.WORKER_REGISTRY_COMMIT?.trim();
  if (given) return given;
  try {
    const head = git("rev-parse", "HEAD");
    return git("status", "--porcelain", "--untracked-files=no") === "" ? head : `${head}-dirty`;
  } catch {
    return "unknown";
  }
}

const out = process.argv[2] ?? join(root, "dist", "build-info.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ version, commit: commit() }, null, 2)}\n`);
