import pg from "pg";
import type { Logger } from "../domain/logger.js";
import { CHANGES_CHANNEL } from "./postgres-operations.js";

/** How often the listening connection is checked: a connection can die without a word (a dropped route). */
const PING_MS = 5000;
/** Wait before opening a failed listening connection again. */
const RECONNECT_MS = 1000;

/**
 * The LISTEN side of change notifications: one dedicated connection outside
 * the pool (a pooled one would be handed to transactions, and PgBouncer in
 * transaction mode breaks LISTEN). A notification is only a wake-up: the
 * subscribers read the log, and poll it anyway, so a notification lost while
 * this connection was down costs at most a poll interval. The connection is
 * pinged, and reopened when it fails or stops answering.
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private readonly subscribers = new Set<(revision: number) => void>();
  private pinger: NodeJS.Timeout | undefined;
  private reconnecting: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly log: Logger,
  ) {}

  /** Opens the connection; a failure is retried in the background (polling covers the meantime). */
  async start(): Promise<void> {
    await this.connect();
    this.pinger = setInterval(() => void this.ping(), PING_MS);
    this.pinger.unref();
  }

  /** `onChange` gets the revision a transaction committed up to, or 0 when changes may have been missed. */
  subscribe(onChange: (revision: number) => void): () => void {
    this.subscribers.add(onChange);
    return () => this.subscribers.delete(onChange);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pinger);
    clearTimeout(this.reconnecting);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client(this.config);
    client.on("notification", (message) => this.notify(Number(message.payload) || 0));
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.failures > 0) this.log.info({ failures: this.failures }, "change notifications: listening again");
    this.failures = 0;
    this.client = client;
    // Changes may have been committed while nobody listened.
    this.notify(0);
  }

  private async ping(): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no answer to a ping")), PING_MS).unref());
    try {
      await Promise.race([client.query("SELECT 1"), timeout]);
    } catch (error) {
      this.lost(client, error);
    }
  }

  private lost(client: pg.Client, error?: unknown): void {
    if (this.client !== undefined && this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners("notification");
    void client.end().catch(() => undefined);
    if (this.stopped || this.reconnecting !== undefined) return;
    if (this.failures++ === 0) this.log.warn({ err: error }, "change notifications: connection lost; reconnecting, polling meanwhile");
    this.reconnecting = setTimeout(() => {
      this.reconnecting = undefined;
      void this.connect();
    }, RECONNECT_MS);
    this.reconnecting.unref();
  }

  private notify(revision: number): void {
    for (const subscriber of this.subscribers) subscriber(revision);
  }
}
