import * as grpc from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { WorkerNode, WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";

/** The role tokens of {@link startServedRegistry}'s tokens file. */
export const TOKENS = {
  admin: "admin-token-for-the-metrics-tests-0123456789",
  orchestrator: "orchestrator-token-for-the-metrics-tests-0123",
  worker: "worker-token-for-the-metrics-tests-0123456789",
} as const;

/** A registry with tokens and a metrics port, after traffic of every kind the metrics count. */
export interface ServedRegistry {
  readonly server: RegistryServer;
  /** The /metrics text after the traffic. */
  scrape(): Promise<string>;
  /** Everything a label must never show: worker ids, node ids, tokens (role and worker), reservation ids. */
  readonly secrets: readonly string[];
  close(): Promise<void>;
}

/**
 * Starts a registry with authentication, health behind tokens and a metrics
 * port, and drives it through every kind of traffic its metrics count:
 * registrations, streamed and unary heartbeats, acquisitions granted and
 * refused, a release, completions of both outcomes, an unregistration and a
 * replacement, a live watch, and calls refused for each reason (no token, the
 * wrong role, a health check without a token, an unknown worker).
 */
export async function startServedRegistry(dir: string): Promise<ServedRegistry> {
  const tokensFile = join(dir, "tokens");
  writeFileSync(tokensFile, Object.entries(TOKENS).map(([role, token]) => `${role} ${token}`).join("\n") + "\n");
  const server = await startRegistryServer({
    host: "127.0.0.1",
    port: 0,
    metricsPort: 0,
    dbPath: join(dir, "registry.db"),
    logLevel: "silent",
    security: { tokensFile, authenticateHealth: true },
  });
  const address = server.address;
  const as = (role: keyof typeof TOKENS) => new WorkerRegistryClient({ address, token: TOKENS[role], retry: false });
  const workers = as("worker");
  const orchestrator = as("orchestrator");
  const admin = as("admin");
  const anonymous = new WorkerRegistryClient({ address, retry: false });
  const secrets: string[] = Object.values(TOKENS);
  const nodes: WorkerNode[] = [];
  try {
    for (const nodeId of ["served-coder-1", "served-coder-2"]) {
      const node = new WorkerNode({ client: workers, registration: { nodeId, capabilities: ["coder"], maxConcurrentTasks: 3 } });
      nodes.push(node);
      const registered = new Promise<void>((resolve) => node.once("heartbeat", () => resolve()));
      await node.start();
      await registered;
    }
    const spare = await workers.registerWorker({ nodeId: "served-spare", capabilities: ["coder"], maxConcurrentTasks: 1 });
    await workers.heartbeat(spare.id);
    // The same node registering again replaces its worker.
    const replacement = await workers.registerWorker({ nodeId: "served-spare", capabilities: ["coder"], maxConcurrentTasks: 1 });
    const scrape = async () => (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    // Only live events are timed, and nothing tells when a new watch is live: change, read the event, until the
    // delivery lag has been observed.
    const changes = orchestrator.watchWorkers({}, {})[Symbol.asyncIterator]();
    for (let i = 0; !/^worker_registry_watch_delivery_lag_seconds_count [1-9]/m.test(await scrape()); i++) {
      if (i === 50) throw new Error("no live watch event was timed");
      const next = changes.next();
      await orchestrator.recordTaskCompletion(replacement.id, i % 2 === 0, 100);
      await next;
    }
    await changes.return?.();
    const { reservationId } = await orchestrator.acquireWorker({ capabilities: ["coder"] });
    await orchestrator.releaseWorker(reservationId, { success: false, durationMs: 250 });
    const kept = await orchestrator.acquireWorker({ capabilities: ["coder"] });
    await orchestrator.acquireWorker({ capabilities: ["painter"] }).catch(() => undefined);
    await orchestrator.unregisterWorker(replacement.id).catch(() => undefined);
    await admin.unregisterWorker(replacement.id);
    await anonymous.getRegistryStats().catch(() => undefined);
    await orchestrator.getWorker("worker-1767268800123-abc123xyz").catch(() => undefined);
    await healthCheckWithoutToken(address);
    secrets.push(spare.id, replacement.id, reservationId, kept.reservationId, "served-coder-1", "served-coder-2", "served-spare");
    for (const node of nodes) {
      const id = node.workerId;
      if (id !== null) secrets.push(id, workers.workerToken(id) ?? "");
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()));
    for (const client of [workers, orchestrator, admin, anonymous]) client.close();
    await server.close();
    throw error;
  }
  return {
    server,
    secrets: secrets.filter((secret) => secret !== ""),
    scrape: async () => (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text(),
    async close() {
      await Promise.all(nodes.map((node) => node.stop()));
      for (const client of [workers, orchestrator, admin, anonymous]) client.close();
      await server.close();
    },
  };
}

/** grpc.health.v1.Health/Check without a token, which `--auth-health` refuses. */
async function healthCheckWithoutToken(address: string): Promise<void> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve) => {
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (request: Buffer) => request,
        (response: Buffer) => response,
        Buffer.alloc(0),
        () => resolve(),
      );
    });
  } finally {
    client.close();
  }
}
