import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** Where Debian's PostgreSQL 15 keeps its server binaries (not on PATH). */
export const POSTGRES_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

/**
 * A throwaway PostgreSQL cluster for tests: made with initdb in a temporary
 * directory, run by a non-root user (PostgreSQL refuses root; as root the
 * tests run it as `postgres`), listening on a free loopback port only, with
 * trust authentication. Never one someone else started.
 */
export class PostgresCluster {
  private running = false;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly asUser: string | undefined,
  ) {}

  /** Whether this machine has the PostgreSQL server binaries. */
  static available(): boolean {
    return existsSync(join(POSTGRES_BIN, "initdb")) && existsSync(join(POSTGRES_BIN, "pg_ctl"));
  }

  /** Makes and starts a cluster. `settings` are extra `-c name=value` server settings. */
  static async start(settings: Record<string, string> = {}): Promise<PostgresCluster> {
    const dir = mkdtempSync(join(tmpdir(), "registry-pg-"));
    const asUser = process.getuid?.() === 0 ? "postgres" : undefined;
    if (asUser !== undefined) {
      const uid = Number(execFileSync("id", ["-u", asUser], { encoding: "utf8" }).trim());
      const gid = Number(execFileSync("id", ["-g", asUser], { encoding: "utf8" }).trim());
      chownSync(dir, uid, gid);
    }
    chmodSync(dir, 0o700);
    const cluster = new PostgresCluster(dir, await freePort(), asUser);
    cluster.run("initdb", ["-D", join(dir, "data"), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
    await cluster.startServer(settings);
    return cluster;
  }

  /** A connection string for a database of this cluster. */
  url(database = "postgres"): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** Creates a new empty database; resolves to its connection string. */
  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name.replaceAll('"', "")}"`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** Stops the server (fast shutdown: connections are cut) but keeps its data. */
  stop(): void {
    if (!this.running) return;
    this.run("pg_ctl", ["-D", join(this.dir, "data"), "-m", "fast", "-w", "stop"]);
    this.running = false;
  }

  /** Starts a stopped server again on the same port and data. */
  async restart(settings: Record<string, string> = {}): Promise<void> {
    await this.startServer(settings);
  }

  /** Stops the server and deletes everything. */
  destroy(): void {
    try {
      this.stop();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  private async startServer(settings: Record<string, string>): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-k ${this.dir}`,
      "-c listen_addresses=127.0.0.1",
      "-c max_connections=300",
      ...Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`),
    ].join(" ");
    this.run("pg_ctl", ["-D", join(this.dir, "data"), "-o", options, "-l", join(this.dir, "server.log"), "-w", "-t", "30", "start"]);
    this.running = true;
  }

  private run(binary: string, args: string[]): void {
    const command = join(POSTGRES_BIN, binary);
    const result =
      this.asUser === undefined
        ? spawnSync(command, args, { encoding: "utf8" })
        : spawnSync("runuser", ["-u", this.asUser, "--", command, ...args], { encoding: "utf8" });
    if (result.status !== 0) {
      throw new Error(`${binary} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`);
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
