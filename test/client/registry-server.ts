import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll } from "vitest";
import type { WorkerRegistryClientOptions } from "../../clients/typescript/src/client-options.js";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { startRegistryServer, type RegistryServer, type ServeOptions } from "../../src/app.js";

/**
 * A real registry server on 127.0.0.1 with its own SQLite file, which can be
 * stopped and started again on the same port and database, as a restart in
 * production would.
 */
export class TestRegistry {
  private current: RegistryServer | null = null;
  private boundPort = 0;
  private readonly directory = mkdtempSync(join(tmpdir(), "registry-client-test-"));
  readonly dbPath = join(this.directory, "registry.db");

  private constructor(
    private readonly registryOptions: ServeOptions["registry"],
    private readonly serveOptions: Pick<ServeOptions, "clock">,
  ) {}

  /** Starts a server on an ephemeral port; `serveOptions.clock` replaces the system clock (every restart keeps it). */
  static async start(registryOptions?: ServeOptions["registry"], serveOptions: Pick<ServeOptions, "clock"> = {}): Promise<TestRegistry> {
    const registry = new TestRegistry(registryOptions, serveOptions);
    await registry.start();
    return registry;
  }

  get port(): number {
    return this.boundPort;
  }

  get address(): string {
    return `127.0.0.1:${this.boundPort}`;
  }

  get running(): boolean {
    return this.current !== null;
  }

  /** The running server, for what a test drives directly (a tick, a prune of the event log). */
  get server(): RegistryServer {
    if (this.current === null) throw new Error("test registry is not running");
    return this.current;
  }

  /**
   * Starts the server: on an ephemeral port the first time, on the same port
   * afterwards, or on `port` (the same database moved elsewhere, as a replica
   * of a shared database would serve it).
   */
  async start(port = this.boundPort): Promise<void> {
    if (this.current !== null) throw new Error("test registry already running");
    this.current = await startRegistryServer({
      host: "127.0.0.1",
      port,
      dbPath: this.dbPath,
      logLevel: "silent",
      registry: this.registryOptions,
      ...this.serveOptions,
    });
    this.boundPort = this.current.port;
  }

  /** Graceful shutdown: heartbeat streams end with UNAVAILABLE. */
  async stop(): Promise<void> {
    const server = this.current;
    this.current = null;
    await server?.close();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/**
 * One TestRegistry for a test file, started before its first test and disposed after its last, emptied after
 * each test, with the clients the test opened on it closed. Call at the top level of a test file: it registers
 * the hooks.
 */
export function useTestRegistry(
  registryOptions?: ServeOptions["registry"],
  serveOptions: Pick<ServeOptions, "clock"> = {},
): { readonly registry: TestRegistry; connect(options?: WorkerRegistryClientOptions): WorkerRegistryClient } {
  let registry: TestRegistry | undefined;
  const clients: WorkerRegistryClient[] = [];
  const harness = {
    get registry(): TestRegistry {
      if (registry === undefined) throw new Error("the test registry starts in beforeAll");
      return registry;
    },
    connect(options: WorkerRegistryClientOptions = {}): WorkerRegistryClient {
      const client = new WorkerRegistryClient({ address: harness.registry.address, ...options });
      clients.push(client);
      return client;
    },
  };
  beforeAll(async () => {
    registry = await TestRegistry.start(registryOptions, serveOptions);
  });
  afterAll(async () => {
    await registry?.dispose();
  });
  afterEach(async () => {
    // Each test starts from an empty registry; a worker that left meanwhile (drained, say) is already gone.
    const admin = harness.connect();
    for (const worker of await admin.discoverWorkers()) {
      await admin.unregisterWorker(worker.id).catch((error: unknown) => {
        if (!(error instanceof RegistryClientError && error.code === status.NOT_FOUND)) throw error;
      });
    }
    for (const client of clients.splice(0)) client.close();
  });
  return harness;
}
