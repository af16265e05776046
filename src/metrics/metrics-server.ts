import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../domain/logger.js";

/** More paths served on the metrics port (the dashboard). */
export interface HttpRoutes {
  /** Answers the request and returns true if its path is one of these routes; false leaves it to the server. */
  handle(request: IncomingMessage, response: ServerResponse): boolean;
  /** Ends the routes' long-lived responses (event streams), so that closing the server does not wait for them. */
  close(): void;
}

/** A bound HTTP server exposing Prometheus metrics. */
export interface MetricsServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stops accepting connections and resolves once open requests have finished. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (and HEAD) in Prometheus text format over plain
 * HTTP, and `routes` when given; any other path answers 404 and another
 * method on /metrics 405. Resolves once the port is bound.
 * @param options.port 0 picks a free one.
 * @throws the listen error (EADDRINUSE, EACCES, ...).
 */
export async function startMetricsServer(options: {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly log: Logger;
  /** Other paths on the same port, tried before /metrics. */
  readonly routes?: HttpRoutes;
}): Promise<MetricsServer> {
  const { registry, log, routes } = options;
  const server = createServer((request, response) => {
    if (routes?.handle(request, response)) return;
    void answer(request, response, registry, log);
  });
  // Browsers open connections ahead of need; close() would wait for one that never sends a request until it times out.
  const unused = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    unused.add(socket);
    socket.once("close", () => unused.delete(socket));
  });
  server.on("request", (request: IncomingMessage) => unused.delete(request.socket));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, "metrics serving");

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      routes?.close();
      closing ??= new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      for (const socket of unused) socket.destroy();
      return closing;
    },
  };
}

async function answer(request: IncomingMessage, response: ServerResponse, registry: Registry, log: Logger): Promise<void> {
  // The host is irrelevant here; a base only makes the request target parseable.
  const path = new URL(request.url ?? "/", "http://metrics").pathname;
  if (path !== "/metrics") return reply(response, 404, "not found\n");
  if (request.method !== "GET" && request.method !== "HEAD") return reply(response, 405, "method not allowed\n", { allow: "GET, HEAD" });
  try {
    const body = await registry.metrics();
    response.writeHead(200, { "content-type": registry.contentType });
    response.end(request.method === "HEAD" ? undefined : body);
  } catch (error) {
    log.error({ err: error }, "metrics scrape failed");
    reply(response, 500, "internal error\n");
  }
}

function reply(response: ServerResponse, code: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(code, { "content-type": "text/plain; charset=utf-8", ...headers });
  response.end(body);
}
