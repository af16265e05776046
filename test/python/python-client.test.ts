/**
 * The Python client's own test suite (clients/python/tests), run by Debian's
 * pytest in Debian's Python against real registry servers (dist/, which
 * `npm test` builds first). It runs here rather than chained after vitest in
 * the npm script so that `npm test` keeps one closing summary line that counts
 * it, a TypeScript failure does not hide the Python results, and package.json
 * stays as it is. Its own summary is printed; on failure, its whole output is
 * the failure message.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const PYTHON = "/usr/bin/python3";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTEST_TIMEOUT_MS = 540_000;

interface Run {
  readonly code: number | null;
  readonly output: string;
}

function runPython(args: readonly string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [...args],
      {
        cwd: ROOT,
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        // The servers the tests start run on this very node; no bytecode is written into the tree.
        env: { ...process.env, PYTHONPATH: "", PYTHONDONTWRITEBYTECODE: "1", REGISTRY_NODE: process.execPath },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
        const killed = error !== null && error.killed ? `\n(killed after ${timeoutMs} ms)` : "";
        resolve({ code, output: `${stdout}${stderr}${killed}` });
      },
    );
  });
}

describe("the Python client (clients/python)", () => {
  it(
    "passes its pytest suite against real servers",
    async () => {
      const probe = await runPython(["-c", "import grpc, google.protobuf, pytest"], 30_000);
      if (probe.code !== 0) {
        throw new Error(
          `${PYTHON} cannot import grpc, google.protobuf or pytest: install Debian's python3-grpcio, python3-protobuf and python3-pytest.\n${probe.output}`,
        );
      }
      const run = await runPython(["-m", "pytest", "-c", "clients/python/pytest.ini"], PYTEST_TIMEOUT_MS);
      // pytest's closing lines: what did not pass (with -ra), then the counts.
      const lines = run.output.trimEnd().split("\n");
      const start = lines.findIndex((line) => line.includes("short test summary info"));
      console.log(`pytest clients/python/tests:\n${(start >= 0 ? lines.slice(start) : lines.slice(-1)).join("\n")}`);
      expect(run.code, run.output).toBe(0);
    },
    PYTEST_TIMEOUT_MS + 60_000,
  );
});
