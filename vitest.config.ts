import { defineConfig } from "vitest/config";

export default defineConfig({
  // Tests run the client package from its TypeScript sources (its "source" export), as the type check does.
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
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
