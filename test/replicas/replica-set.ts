import { randomBytes } from "node:crypto";
import pg from "pg";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { PostgresCluster } from "../support/postgres-cluster.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

/** Timing that lets health, leadership and cleanup happen within a test, in seconds rather than minutes. */
export const FAST_ARGS = [
  "--heartbeat-interval",
  "1s",
  "--healthy-threshold",
  "3s",
  "--degraded-threshold",
  "6s",
  "--worker-ttl",
  "8s",
  "--cleanup-interval",
  "1s",
  "--lease-ttl",
  "2s",
  "--log-level",
  "info",
];

/**
 * Several registry server processes (replicas) on one PostgreSQL database,
 * as an operator runs them: `worker-registry serve --db postgres://...`, each
 * on its own port, named replica-0, replica-1, ... A replica can be killed
 * and started again on its port.
 */
export class ReplicaSet {
  private readonly servers: Array<ServerProcess | undefined>;
  private readonly ports: number[] = [];
  private readonly clients: RawRegistryClient[] = [];

  private constructor(
    readonly url: string,
    private readonly args: readonly string[],
    count: number,
    private readonly cluster: PostgresCluster | undefined,
  ) {
    this.servers = new Array(count).fill(undefined);
  }

  /**
   * Starts `count` replicas on a new database: in `cluster` if given (a test
   * that stops PostgreSQL owns its cluster), else in the run's shared one.
   */
  static async start(count: number, options: { readonly sharedUrl?: string; readonly cluster?: PostgresCluster; readonly args?: readonly string[] }): Promise<ReplicaSet> {
    const base = options.cluster?.url() ?? options.sharedUrl;
    if (base === undefined || base === "") throw new Error("no PostgreSQL to run replicas on");
    const name = `replicas_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const set = new ReplicaSet(base.replace(/\/[^/]*$/, `/${name}`), options.args ?? FAST_ARGS, count, options.cluster);
    // Together, as an operator's deployment starts them: the schema is migrated once.
    await Promise.all(Array.from({ length: count }, (_, i) => set.startReplica(i)));
    return set;
  }

  get size(): number {
    return this.servers.length;
  }

  address(i: number): string {
    return `127.0.0.1:${this.ports[i]}`;
  }

  /** Every replica's address, for clients that fail over. */
  get addresses(): string[] {
    return this.ports.map((port) => `127.0.0.1:${port}`);
  }

  server(i: number): ServerProcess {
    const server = this.servers[i];
    if (server === undefined) throw new Error(`replica ${i} is not running`);
    return server;
  }

  /** A raw client of replica i (one per replica, kept open). */
  client(i: number): RawRegistryClient {
    this.clients[i] ??= new RawRegistryClient(this.address(i), { "grpc.channel_id": `replica-set-${i}`, "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 });
    return this.clients[i]!;
  }

  /** Starts replica i (again, on the port it had). */
  async startReplica(i: number): Promise<ServerProcess> {
    const port = this.ports[i];
    const server = await startServerProcess(["--db", this.url, "--replica-id", `replica-${i}`, ...(port === undefined ? [] : ["--port", String(port)]), ...this.args]);
    this.servers[i] = server;
    this.ports[i] = server.port;
    return server;
  }

  /** Stops replica i with `signal` and resolves once it has exited. */
  async stopReplica(i: number, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const server = this.server(i);
    server.child.kill(signal);
    const exit = await server.exited;
    this.servers[i] = undefined;
    return exit;
  }

  /** The replica that reports it leads, by asking each running one. */
  async leader(): Promise<number | undefined> {
    for (let i = 0; i < this.size; i++) {
      if (this.servers[i] === undefined) continue;
      const stats = await this.client(i).call("getRegistryStats").catch(() => undefined);
      if (stats?.replica?.leading === true) return i;
    }
    return undefined;
  }

  /** Stops every replica (and the cluster, if this set owns one). */
  async dispose(): Promise<void> {
    for (const client of this.clients) client?.close();
    try {
      // Every replica gets its SIGKILL even if waiting for one fails, and the cluster goes in any case: a failed
      // test must not leave processes behind for the rest of the run.
      await Promise.allSettled(this.servers.map(async (server, i) => (server === undefined ? undefined : this.stopReplica(i, "SIGKILL"))));
    } finally {
      this.cluster?.destroy();
    }
  }
}

/** Resolves once `check` holds, polling every `everyMs`; rejects after `timeoutMs` naming what it waited for. */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, everyMs = 10): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== undefined && result !== false) return result;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
