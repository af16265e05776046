import { configDefaults, defineConfig } from "vitest/config";

/**
 * The soak judges p99 stability over half a minute: run beside other test
 * files, it judges their load instead, so it runs after them, alone.
 */
const SOAK = "test/reliability/soak.test.ts";

export default defineConfig({
  // Tests run the client package from its TypeScript sources (its "source" export), as the type check does.
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests spawn servers and child processes; two cores are shared.
    maxWorkers: 2,
    reporters: ["default", "./test/support/plain-summary-reporter.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "registry",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, SOAK],
          globalSetup: ["./test/support/postgres-global-setup.ts"],
        },
      },
      { extends: true, test: { name: "soak", include: [SOAK], sequence: { groupOrder: 1 } } },
    ],
  },
});
