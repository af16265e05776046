import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["./test/support/postgres-global-setup.ts"],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests spawn servers and child processes; two cores are shared.
    maxWorkers: 2,
    reporters: ["default", "./test/support/plain-summary-reporter.ts"],
  },
});
