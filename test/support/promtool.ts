import { spawnSync } from "node:child_process";
import { describe, it } from "vitest";

/** What promtool printed and how it exited. */
export interface PromtoolRun {
  readonly status: number | null;
  /** stdout and stderr together, as an operator would see them. */
  readonly output: string;
}

/** Whether Debian's `promtool` (package `prometheus`) is on the PATH. */
export const promtoolAvailable: boolean = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;

/** Runs promtool with `args`, `stdin` on its standard input. */
export function promtool(args: readonly string[], stdin?: string): PromtoolRun {
  const run = spawnSync("promtool", args, { input: stdin, encoding: "utf8", timeout: 60_000 });
  if (run.error) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/**
 * A describe block whose tests need promtool. Without it they fail in CI
 * (CI=true: `.ci/run` installs Debian's `prometheus` package, so a missing
 * promtool is a broken CI), and are skipped elsewhere with a message saying
 * how to get it.
 */
export function describeWithPromtool(name: string, body: () => void): void {
  if (promtoolAvailable) {
    describe(name, body);
  } else if (process.env.CI === "true") {
    describe(name, () => {
      it("needs promtool", () => {
        throw new Error("promtool is missing: .ci/run installs Debian's prometheus package (apt-get install prometheus)");
      });
    });
  } else {
    console.warn(`skipping "${name}": promtool is not on the PATH (apt-get install prometheus)`);
    describe.skip(name, body);
  }
}
