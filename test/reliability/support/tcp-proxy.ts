import net from "node:net";

/**
 * A TCP proxy between clients and the server, for network faults: it can cut
 * every connection abruptly (RST on both sides) or turn into a black hole
 * (sockets stay open, nothing gets through in either direction, not even a
 * close), which is how a half-open connection looks to both ends.
 */
export class TcpProxy {
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private forwarding = true;

  private constructor(
    private readonly server: net.Server,
    /** The port clients connect to. */
    readonly port: number,
  ) {}

  /** Listens on a free port of 127.0.0.1 and forwards each connection to `targetPort`. */
  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = net.createServer((client) => proxy!.accept(client, targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** host:port for clients. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Open client connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Resets every connection on both sides, as a crashed middlebox or a pulled cable with a RST would. New connections are still accepted. */
  cut(): void {
    for (const pair of this.pairs) {
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** From now on nothing is forwarded, in either direction, on open or new connections, and no close gets through either. */
  blackhole(): void {
    this.forwarding = false;
  }

  /** Forwards again (new data only; what was swallowed is gone). */
  restore(): void {
    this.forwarding = true;
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, targetPort: number): void {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    this.pairs.add(pair);
    const link = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk) => {
        if (this.forwarding) to.write(chunk);
      });
      from.on("close", () => {
        // A black hole keeps the other side open: it never learns that this one went away.
        if (!this.forwarding || !this.pairs.has(pair)) return;
        this.pairs.delete(pair);
        to.destroy();
      });
      from.on("error", () => undefined);
    };
    link(client, upstream);
    link(upstream, client);
  }
}
