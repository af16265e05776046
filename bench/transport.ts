import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";

/**
 * How the load generator speaks gRPC. Two clients, same interface:
 *
 * - "h2" (default): gRPC framed by hand over node:http2, a few dozen lines.
 *   The load generator shares a 2-core machine with the server it measures,
 *   and every cycle the client burns is taken from the server; grpc-js's
 *   client spends several times more CPU per message (its call stack of
 *   resolving, retrying and load-balancing layers) than this one.
 * - "grpc-js": @grpc/grpc-js's own client, one channel per connection (a
 *   distinct `grpc.channel_id` gives each its own subchannel, so its own TCP
 *   connection). `--client grpc-js` checks the two agree.
 *
 * Both put each Connection on its own TCP connection and HTTP/2 session.
 */
export type ClientKind = "h2" | "grpc-js";

export interface StreamHandlers {
  /** One response message (without the 5-byte gRPC frame header). */
  readonly onMessage: (bytes: Buffer) => void;
  /** The stream ended: undefined for status OK, else "<code name> <message>". Called once. */
  readonly onEnd: (error: string | undefined) => void;
}

export interface ClientStream {
  write(message: Buffer): void;
  /** Half-closes (the client is done sending). */
  end(): void;
}

export interface Connection {
  stream(path: string, handlers: StreamHandlers): ClientStream;
  unary(path: string, request: Buffer, done: (error: string | undefined, response: Buffer | undefined) => void): void;
  close(): void;
}

export function connect(kind: ClientKind, address: string, index: number): Connection {
  return kind === "h2" ? new H2Connection(address) : new GrpcJsConnection(address, index);
}

// ---------- node:http2 ----------

const STATUS_NAMES = grpc.status as unknown as Record<string, string>;

function statusText(code: string | undefined, message: string | undefined): string {
  return `${STATUS_NAMES[code ?? ""] ?? `status ${code ?? "missing"}`} ${decodeURIComponent(message ?? "")}`.trim();
}

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** Splits a response body into gRPC messages as chunks arrive. */
function deframer(onMessage: (bytes: Buffer) => void): (chunk: Buffer) => void {
  let rest: Buffer | undefined;
  return (chunk) => {
    const data = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
    let offset = 0;
    while (data.length - offset >= 5) {
      const length = data.readUInt32BE(offset + 1);
      if (data.length - offset - 5 < length) break;
      onMessage(data.subarray(offset + 5, offset + 5 + length));
      offset += 5 + length;
    }
    rest = offset < data.length ? data.subarray(offset) : undefined;
  };
}

class H2Connection implements Connection {
  private readonly session: http2.ClientHttp2Session;
  private sessionError: string | undefined;

  constructor(private readonly address: string) {
    this.session = http2.connect(`http://${address}`);
    this.session.on("error", (error) => (this.sessionError = error.message));
    // Keep the process free to exit even if a session lingers.
    this.session.unref();
  }

  private request(path: string, handlers: { onMessage: (bytes: Buffer) => void; onEnd: (error: string | undefined) => void }): http2.ClientHttp2Stream {
    const request = this.session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: string | undefined;
    let message: string | undefined;
    let ended = false;
    const end = (error: string | undefined) => {
      if (ended) return;
      ended = true;
      handlers.onEnd(error);
    };
    request.on("response", (headers) => {
      if (headers[":status"] !== 200) end(`HTTP ${headers[":status"]}`);
      // A trailers-only response carries the status in its headers.
      if (headers["grpc-status"] !== undefined) {
        status = String(headers["grpc-status"]);
        message = headers["grpc-message"] as string | undefined;
      }
    });
    request.on("data", deframer(handlers.onMessage));
    request.on("trailers", (trailers) => {
      status = String(trailers["grpc-status"]);
      message = trailers["grpc-message"] as string | undefined;
    });
    request.on("error", (error: Error) => end(`stream error: ${error.message}${this.sessionError ? ` (session: ${this.sessionError})` : ""}`));
    request.on("close", () => end(status === "0" ? undefined : status === undefined ? `closed without a status (RST code ${request.rstCode})` : statusText(status, message)));
    return request;
  }

  stream(path: string, handlers: StreamHandlers): ClientStream {
    const request = this.request(path, handlers);
    return {
      write: (bytes) => void request.write(frame(bytes)),
      end: () => void request.end(),
    };
  }

  unary(path: string, body: Buffer, done: (error: string | undefined, response: Buffer | undefined) => void): void {
    let response: Buffer | undefined;
    const request = this.request(path, {
      onMessage: (bytes) => (response = Buffer.from(bytes)),
      onEnd: (error) => done(error ?? (response === undefined ? "OK without a response message" : undefined), response),
    });
    request.end(frame(body));
  }

  close(): void {
    this.session.close();
  }

  toString(): string {
    return `h2 ${this.address}`;
  }
}

// ---------- grpc-js ----------

const identity = (bytes: Buffer) => bytes;

class GrpcJsConnection implements Connection {
  private readonly client: grpc.Client;

  constructor(address: string, index: number) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      // A distinct option gives each client its own subchannel, so its own TCP connection.
      "grpc.channel_id": `bench-${process.pid}-${index}`,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
  }

  stream(path: string, handlers: StreamHandlers): ClientStream {
    const call = this.client.makeBidiStreamRequest(path, identity, identity);
    let ended = false;
    const end = (error: string | undefined) => {
      if (ended) return;
      ended = true;
      handlers.onEnd(error);
    };
    call.on("data", handlers.onMessage);
    call.on("error", (error: grpc.ServiceError) => end(`${grpc.status[error.code] ?? error.code} ${error.details}`));
    call.on("status", (status: grpc.StatusObject) => end(status.code === grpc.status.OK ? undefined : `${grpc.status[status.code]} ${status.details}`));
    return { write: (bytes) => void call.write(bytes), end: () => call.end() };
  }

  unary(path: string, body: Buffer, done: (error: string | undefined, response: Buffer | undefined) => void): void {
    this.client.makeUnaryRequest(path, identity, identity, body, (error, response) =>
      done(error ? `${grpc.status[error.code] ?? error.code} ${error.details}` : undefined, response),
    );
  }

  close(): void {
    this.client.close();
  }
}
