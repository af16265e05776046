import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { Server } from "@grpc/grpc-js";

/**
 * Makes every `authorization` value of a request reach grpc-js's Metadata.
 *
 * Node's HTTP/2 layer treats `authorization` as a single-value header: of two
 * values it keeps the first in the headers object grpc-js reads, and drops the
 * second without a word. A call with two values would then be judged on the
 * first, while a proxy in front may have judged it on the last. The raw header
 * list Node passes along with each stream still has them all: this puts them
 * back, as an array, before grpc-js builds the call's Metadata, so the
 * Authenticator sees two values and refuses the call.
 *
 * grpc-js has no public hook on its HTTP/2 servers, so this reaches its
 * private `http2Servers` map; call it once the server is bound. It throws if
 * that map is missing or empty (a grpc-js upgrade changed it), so the server
 * fails to start rather than quietly accept the first value again; the
 * security tests exercise the hook itself.
 */
export function keepRepeatedAuthorization(server: Server): void {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    throw new Error("cannot reach grpc-js's HTTP/2 servers to check for repeated authorization headers: has @grpc/grpc-js changed?");
  }
  for (const http2Server of servers.keys() as IterableIterator<Http2Server>) {
    // Prepended, so it runs before grpc-js's own 'stream' listener reads the headers.
    http2Server.prependListener("stream", ((_stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      let values: string[] | undefined;
      for (let i = 0; i < rawHeaders.length; i += 2) {
        if (rawHeaders[i] === "authorization") (values ??= []).push(rawHeaders[i + 1]!);
      }
      // grpc-js adds one metadata entry per element of an array value.
      if (values !== undefined && values.length > 1) (headers as Record<string, unknown>).authorization = values;
    }) as (...args: unknown[]) => void);
  }
}
