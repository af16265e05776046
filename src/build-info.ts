import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** What is running: shown as `worker_registry_build_info`, in the startup log and by `worker-registry --version`. */
export interface BuildInfo {
  /** The package's version, from package.json. */
  readonly version: string;
  /** The git commit the build was made from, with "-dirty" if tracked files differed from it; "unknown" when not known. */
  readonly commit: string;
  /** The Node.js version running it, e.g. "v20.20.0". */
  readonly nodeVersion: string;
}

/**
 * Reads the build's identity: `dist/build-info.json`, which `npm run build`
 * writes (scripts/write-build-info.mjs: the version and the commit, from
 * `git rev-parse HEAD` or $WORKER_REGISTRY_COMMIT), and the running Node.js
 * version. Without that file (code run from source before any build) the
 * version comes from package.json and the commit is "unknown". Never throws.
 * @param from a file inside the package, to find its root from. Default: this module.
 */
export function readBuildInfo(from: string = fileURLToPath(import.meta.url)): BuildInfo {
  const root = packageRoot(dirname(from));
  const built = root === undefined ? undefined : readJson(join(root, "dist", "build-info.json"));
  const packageJson = root === undefined ? undefined : readJson(join(root, "package.json"));
  return {
    version: stringOr(built?.version, stringOr(packageJson?.version, "unknown")),
    commit: stringOr(built?.commit, "unknown"),
    nodeVersion: process.version,
  };
}

/** One line for `--version` and people: `worker-registry 0.1.0 (commit 50b98dd…, node v20.20.0)`. */
export function describeBuild(info: BuildInfo): string {
  return `worker-registry ${info.version} (commit ${info.commit}, node ${info.nodeVersion})`;
}

/** The nearest directory at or above `dir` that holds a package.json: `src/` and `dist/src/` both lead to the root. */
function packageRoot(dir: string): string | undefined {
  for (let current = dir; ; current = dirname(current)) {
    if (existsSync(join(current, "package.json"))) return current;
    if (dirname(current) === current) return undefined;
  }
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === "string" && value !== "" ? value : fallback;
}
