import type { Reporter, TestModule } from "vitest/node";

/**
 * Ends a run with one plain line, `N passed, N failed, N skipped`, after
 * vitest's own summary, so that tools that read only a closing line (CI) see
 * how many tests ran.
 */
export default class PlainSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const count = (state: "passed" | "failed" | "skipped") =>
      testModules.reduce((sum, module) => sum + [...module.children.allTests(state)].length, 0);
    const failedModules = testModules.filter((module) => module.state() === "failed" && [...module.children.allTests()].length === 0).length;
    process.stdout.write(`\n${count("passed")} passed, ${count("failed") + failedModules} failed, ${count("skipped")} skipped\n`);
  }
}
