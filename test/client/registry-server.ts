import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
