import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * The next value of an iterator, or a rejection naming `what` after
 * `timeoutMs`: tests wait for what happens, never for a fixed time.
 */
export async function nextWithin<T>(iterator: AsyncIterator<T>, what: string, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs}ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([iterator.next(), timeout]);
    if (result.done === true) throw new Error(`the iteration ended while waiting for ${what}`);
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it holds, or rejects naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A `sleep` for `watchWorkers` that the test releases: the watch cannot
 * resume until the test has set the stage (writes while it was away, a
 * pruned event log). `waiting` resolves when the watch has started to wait.
 */
export class Gate {
  readonly delays: number[] = [];
  private opened = false;
  private release: (() => void)[] = [];
  private arrived: (() => void)[] = [];

  readonly sleep = (ms: number): Promise<void> => {
    this.delays.push(ms);
    for (const resolve of this.arrived.splice(0)) resolve();
    return this.opened ? Promise.resolve() : new Promise((resolve) => this.release.push(resolve));
  };

  /** Resolves once the watch is waiting at the gate (now or later). */
  waiting(): Promise<void> {
    return this.release.length > 0 ? Promise.resolve() : new Promise((resolve) => this.arrived.push(resolve));
  }

  /** Lets every waiting and later sleep through at once. */
  open(): void {
    this.opened = true;
    for (const resolve of this.release.splice(0)) resolve();
  }
}

/**
 * A TCP proxy in front of the registry whose connections the test can cut, as
 * a network fault would: the client sees its connection drop while the
 * registry keeps running.
 */
export class CuttableProxy {
  private constructor(
    private readonly server: Server,
    readonly address: string,
    private readonly sockets: Set<Socket>,
  ) {}

  /** Listens on 127.0.0.1 and forwards each connection to 127.0.0.1:`targetPort`. */
  static async start(targetPort: number): Promise<CuttableProxy> {
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = connect(targetPort, "127.0.0.1");
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        // A cut or a refused upstream ends both sides; the errors are the point.
        socket.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new CuttableProxy(server, `127.0.0.1:${(server.address() as AddressInfo).port}`, sockets);
    return proxy;
  }

  /** Destroys every open connection, both ways. */
  cut(): number {
    const count = this.sockets.size;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    return count;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A task that runs until `finish` is called; `running` resolves once it has started. */
export function heldTask<T>(value: T) {
  let finish!: () => void;
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const body = () =>
    new Promise<T>((resolve) => {
      finish = () => resolve(value);
      started();
    });
  return { body, running, finish: () => finish() };
}
