import type { TestProject } from "vitest/node";
import { PostgresCluster } from "./postgres-cluster.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A throwaway cluster's URL (database "postgres") for the tests that need PostgreSQL; "" where none can run. */
    postgresUrl: string;
  }
}

/**
 * One throwaway PostgreSQL cluster for the whole test run, started before the
 * first test file and destroyed after the last; each test creates its own
 * database in it. Tests that stop and start PostgreSQL start a cluster of
 * their own instead. Durability settings are relaxed (fsync off): the tests
 * stop the server cleanly, never the machine under it. In CI a machine
 * without PostgreSQL is an error, not a reason to skip.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  if (!PostgresCluster.available()) {
    if (process.env.CI === "true") throw new Error("PostgreSQL's server binaries are missing: .ci/run installs Debian's postgresql package");
    project.provide("postgresUrl", "");
    return () => undefined;
  }
  const cluster = await PostgresCluster.start({ fsync: "off", full_page_writes: "off" });
  project.provide("postgresUrl", cluster.url());
  return () => cluster.destroy();
}
