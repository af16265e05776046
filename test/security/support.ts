/**
 * Helpers shared by the security tests: a generic gRPC client of
 * WorkerRegistryService that takes any channel credentials and a bearer token
 * per call, stream probes, certificates made with the openssl CLI, tokens
 * files, and log capture.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { Writable } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { WorkerRegistryService } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../src/gen/grpc/health/v1/health_pb.js";
import {
  ServerReflectionRequestSchema as ReflectionV1RequestSchema,
  ServerReflectionResponseSchema as ReflectionV1ResponseSchema,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflectionRequestSchema as ReflectionV1AlphaRequestSchema,
  ServerReflectionResponseSchema as ReflectionV1AlphaResponseSchema,
} from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";

export const { status } = grpc;

/** The service's method definitions by local name (registerWorker, heartbeatStream, ...). */
export const DEFINITION = grpcServiceDefinition(WorkerRegistryService);
const GenericClient = grpc.makeGenericClientConstructor(DEFINITION, "WorkerRegistryService");

/** Every RPC of the contract, by its proto name and local name. */
export const RPCS = WorkerRegistryService.methods.map((m) => ({ name: m.name, local: m.localName, path: DEFINITION[m.localName]!.path }));

/** The name of a status code, for readable failures ("PERMISSION_DENIED"). */
export function codeName(code: number | undefined): string {
  return code === undefined ? "none" : (grpc.status[code] ?? `code ${code}`);
}

/** Metadata carrying `authorization: Bearer <token>`, or none when token is undefined. */
export function bearer(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

/** The outcome of a call: its status code (OK = 0), details and, when OK, the response. */
export interface Outcome<T = any> {
  readonly code: grpc.status;
  readonly details: string;
  readonly response?: T;
}

/** A client of WorkerRegistryService over any credentials; each call may carry its own token. */
export class SecClient {
  readonly raw: grpc.Client;

  constructor(
    address: string,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    options: grpc.ChannelOptions = {},
  ) {
    this.raw = new GenericClient(address, credentials, options);
  }

  /** Calls a unary method by local name; resolves with the outcome, never rejects. */
  outcome<T = any>(method: string, request: object = {}, token?: string, deadlineMs = 10_000): Promise<Outcome<T>> {
    const definition = DEFINITION[method];
    if (definition === undefined || definition.requestStream || definition.responseStream) throw new Error(`${method} is not a unary method`);
    return new Promise((resolve) => {
      this.raw.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        bearer(token),
        { deadline: Date.now() + deadlineMs },
        (error, response) =>
          resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: "", response: response as T }),
      );
    });
  }

  /** Calls a unary method that must succeed; rejects with the status otherwise. */
  async call<T = any>(method: string, request: object = {}, token?: string): Promise<T> {
    const result = await this.outcome<T>(method, request, token);
    if (result.code !== grpc.status.OK) throw new Error(`${method} failed: ${codeName(result.code)}: ${result.details}`);
    return result.response as T;
  }

  /** Opens a HeartbeatStream with the token. */
  heartbeatStream(token?: string): grpc.ClientDuplexStream<object, any> {
    const d = DEFINITION.heartbeatStream!;
    return this.raw.makeBidiStreamRequest(d.path, d.requestSerialize, d.responseDeserialize, bearer(token), {});
  }

  /** Opens a WatchWorkers stream with the token. */
  watch(request: object = {}, token?: string): grpc.ClientReadableStream<any> {
    const d = DEFINITION.watchWorkers!;
    return this.raw.makeServerStreamRequest(d.path, d.requestSerialize, d.responseDeserialize, request, bearer(token), {});
  }

  /** Sends raw bytes as the request of a unary method path (identity serializers). */
  rawUnary(path: string, bytes: Buffer, token?: string, deadlineMs = 5000): Promise<Outcome<Buffer>> {
    return new Promise((resolve) => {
      this.raw.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        bearer(token),
        { deadline: Date.now() + deadlineMs },
        (error, response) =>
          resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: "", response: response as Buffer }),
      );
    });
  }

  /**
   * Sends raw bytes as the one request of a streaming method path, half-closes,
   * and waits for the status; a stream still open after `waitMs` is cancelled
   * (its outcome is then CANCELLED, by us).
   */
  rawStream(path: string, bytes: Buffer, bidi: boolean, waitMs = 100): Promise<Outcome> {
    return new Promise((resolve) => {
      const call = bidi
        ? this.raw.makeBidiStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {})
        : this.raw.makeServerStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, new grpc.Metadata(), {});
      const timer = setTimeout(() => call.cancel(), waitMs);
      call.on("data", () => {});
      call.on("error", () => {});
      call.on("status", (s: grpc.StatusObject) => {
        clearTimeout(timer);
        resolve({ code: s.code, details: s.details });
      });
      if (bidi) {
        const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
        duplex.write(bytes);
        duplex.end();
      }
    });
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * Opens a heartbeat stream for `workerId` with `token`, sends one heartbeat
 * and resolves with OK once the reply arrives (the stream is then half-closed
 * and its end awaited), or with the status the server ended the stream with.
 */
export function heartbeatStreamOutcome(client: SecClient, workerId: string, token?: string, timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = client.heartbeatStream(token);
    let replied: any;
    const timer = setTimeout(() => {
      stream.cancel();
    }, timeoutMs);
    stream.on("data", (reply) => {
      if (replied !== undefined) return;
      replied = reply;
      stream.end();
    });
    stream.on("error", () => {});
    stream.on("status", (s: grpc.StatusObject) => {
      clearTimeout(timer);
      if (replied !== undefined && s.code === grpc.status.OK) resolve({ code: grpc.status.OK, details: "", response: replied });
      else resolve({ code: s.code, details: s.details });
    });
    stream.write({ workerId, sequence: 1 });
  });
}

/**
 * Opens a watch with `token` and resolves with OK once an event arrives
 * (`trigger` is called to cause one; the watch is then cancelled), or with
 * the status the server ended the watch with.
 */
export function watchOutcome(client: SecClient, token: string | undefined, trigger: () => Promise<unknown>, timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = client.watch({}, token);
    let event: any;
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      call.cancel();
      settle({ code: grpc.status.DEADLINE_EXCEEDED, details: "no event and no status within the test's timeout" });
    }, timeoutMs);
    call.on("data", (response) => {
      if (event !== undefined) return;
      event = response;
      settle({ code: grpc.status.OK, details: "", response });
      call.cancel();
    });
    call.on("error", () => {});
    call.on("status", (s: grpc.StatusObject) => {
      if (event === undefined) settle({ code: s.code, details: s.details });
    });
    // Give a refusal (sent at once by the handler) the chance to arrive first.
    setTimeout(() => {
      if (!settled) void trigger();
    }, 50);
  });
}

/** A stream kept open: resolves `opened` if no status arrived within `settleMs`, else with that status. */
export interface HeldStream {
  readonly call: grpc.ClientDuplexStream<object, any> | grpc.ClientReadableStream<any>;
  /** The final status, once it arrives. */
  readonly ended: Promise<grpc.StatusObject>;
  /** Whether the stream has ended. */
  done(): boolean;
}

export function hold(call: grpc.ClientDuplexStream<object, any> | grpc.ClientReadableStream<any>): HeldStream {
  let finished = false;
  call.on("data", () => {});
  call.on("error", () => {});
  const ended = new Promise<grpc.StatusObject>((resolve) =>
    call.on("status", (s: grpc.StatusObject) => {
      finished = true;
      resolve(s);
    }),
  );
  return { call, ended, done: () => finished };
}

/** Resolves with the status if the stream ends within ms, else undefined. */
export async function statusWithin(stream: HeldStream, ms: number): Promise<grpc.StatusObject | undefined> {
  return Promise.race([stream.ended, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms))]);
}

// ---------------------------------------------------------------- health and reflection

/** grpc.health.v1.Health/Check with an optional token. */
export function healthCheck(address: string, token?: string, credentials = grpc.credentials.createInsecure()): Promise<Outcome> {
  const client = new grpc.Client(address, credentials);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (m: object) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m))),
      (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
      { service: "" },
      bearer(token),
      { deadline: Date.now() + 5000 },
      (error, response) => {
        client.close();
        resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: "", response });
      },
    );
  });
}

/**
 * Opens grpc.health.v1.Health/Watch and holds it, on `client` or else on a
 * connection of its own (returned, to be closed).
 */
export function holdHealthWatch(address: string, token?: string, client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 })): { client: grpc.Client; stream: HeldStream } {
  const call = client.makeServerStreamRequest(
    "/grpc.health.v1.Health/Watch",
    (m: object) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m))),
    (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
    { service: "" },
    bearer(token),
    {},
  );
  return { client, stream: hold(call as unknown as grpc.ClientReadableStream<any>) };
}

/** Opens a server reflection (v1) stream and holds it open without sending a request, on `client` or a connection of its own. */
export function holdReflectionStream(address: string, token?: string, client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 })): { client: grpc.Client; stream: HeldStream } {
  const call = client.makeBidiStreamRequest(
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    (m: object) => Buffer.from(toBinary(ReflectionV1RequestSchema, create(ReflectionV1RequestSchema, m))),
    (b: Buffer) => fromBinary(ReflectionV1ResponseSchema, b),
    bearer(token),
    {},
  );
  return { client, stream: hold(call as unknown as grpc.ClientDuplexStream<object, any>) };
}

/** Asks server reflection (v1 or v1alpha) to list services; resolves with the outcome and, when OK, the service names. */
export function reflectionList(address: string, version: "v1" | "v1alpha", token?: string): Promise<Outcome<string[]>> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const [requestSchema, responseSchema] =
    version === "v1" ? [ReflectionV1RequestSchema, ReflectionV1ResponseSchema] : [ReflectionV1AlphaRequestSchema, ReflectionV1AlphaResponseSchema];
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (m: object) => Buffer.from(toBinary(requestSchema as typeof ReflectionV1RequestSchema, create(requestSchema as typeof ReflectionV1RequestSchema, m))),
      (b: Buffer) => fromBinary(responseSchema as typeof ReflectionV1ResponseSchema, b),
      bearer(token),
      { deadline: Date.now() + 5000 },
    );
    let names: string[] | undefined;
    call.on("data", (response: any) => {
      if (response.messageResponse?.case === "listServicesResponse") names = response.messageResponse.value.service.map((s: any) => s.name);
    });
    call.on("error", () => {});
    call.on("status", (s: grpc.StatusObject) => {
      client.close();
      resolve(names !== undefined && s.code === grpc.status.OK ? { code: grpc.status.OK, details: "", response: names } : { code: s.code, details: s.details });
    });
    call.write({ messageRequest: { case: "listServices", value: "" } });
    call.end();
  });
}

// ---------------------------------------------------------------- repeated authorization

/** An HPACK integer with an N-bit prefix (RFC 7541, 5.1), the prefix's other bits zero. */
function hpackInteger(value: number, prefixBits: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [value];
  const bytes = [max];
  for (value -= max; value >= 128; value = Math.floor(value / 128)) bytes.push((value % 128) + 128);
  bytes.push(value);
  return bytes;
}

/** A "literal header field without indexing, new name" (RFC 7541, 6.2.2), without Huffman coding. */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, "latin1");
  const v = Buffer.from(value, "latin1");
  return Buffer.concat([Buffer.from([0x00, ...hpackInteger(n.length, 7)]), n, Buffer.from(hpackInteger(v.length, 7)), v]);
}

/**
 * A TCP proxy in front of a plaintext gRPC server that adds one more
 * `authorization` header, after the client's own, to every request the
 * client sends (each HTTP/2 HEADERS frame that opens a stream): the way a
 * call with two `authorization` values reaches the server. grpc-js clients,
 * and Node's HTTP/2 client, refuse to send one themselves.
 * With `extra` undefined it forwards unchanged (a control).
 */
export class RepeatedAuthorizationProxy {
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    /** host:port for clients. */
    readonly address: string,
  ) {}

  static async start(targetPort: number, extra: string | undefined): Promise<RepeatedAuthorizationProxy> {
    let proxy: RepeatedAuthorizationProxy | undefined;
    const server = net.createServer((client) => {
      const upstream = net.connect(targetPort, "127.0.0.1");
      proxy!.sockets.add(client).add(upstream);
      upstream.pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      let pending = Buffer.alloc(0);
      let prefaceSent = false;
      client.on("data", (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        if (!prefaceSent) {
          if (pending.length < 24) return;
          upstream.write(pending.subarray(0, 24));
          pending = pending.subarray(24);
          prefaceSent = true;
        }
        while (pending.length >= 9) {
          const length = pending.readUIntBE(0, 3);
          if (pending.length < 9 + length) break;
          let frame = pending.subarray(0, 9 + length);
          pending = pending.subarray(9 + length);
          const [type, flags] = [frame[3]!, frame[4]!];
          if (type === 0x1 && extra !== undefined) {
            // Appending to the header block is valid only when it is whole (END_HEADERS) and unpadded.
            if ((flags & 0x4) === 0 || (flags & 0x8) !== 0) throw new Error(`cannot extend a HEADERS frame with flags ${flags}`);
            const payload = Buffer.concat([frame.subarray(9), hpackLiteral("authorization", extra)]);
            const header = Buffer.from(frame.subarray(0, 9));
            header.writeUIntBE(payload.length, 0, 3);
            frame = Buffer.concat([header, payload]);
          }
          upstream.write(frame);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    proxy = new RepeatedAuthorizationProxy(server, `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    return proxy;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------- certificates

/** PEM files made by {@link makeCertificates}. */
export interface Certificates {
  readonly dir: string;
  /** The CA that signs the server and the trusted client. */
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** A client certificate signed by the CA. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** Another CA, and a client certificate signed by it (not trusted by the server). */
  readonly otherCaCert: string;
  readonly otherClientCert: string;
  readonly otherClientKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
}

/** A self-signed CA (EC P-256). */
function makeCa(dir: string, name: string): void {
  openssl(dir, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name} test CA`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** A leaf certificate signed by `ca`, with the given extensions. */
function makeLeaf(dir: string, name: string, ca: string, subject: string, extensions: string): void {
  openssl(dir, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    "x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-set_serial", String(Date.now() + Math.floor(Math.random() * 1e6)),
    "-days", "2", "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`,
  ]);
}

/** Makes a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a client certificate from another CA, in `dir`. */
export function makeCertificates(dir: string): Certificates {
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeLeaf(dir, "server", "ca", "/CN=localhost", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
  makeLeaf(dir, "client", "ca", "/CN=worker-client", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  makeLeaf(dir, "other-client", "other-ca", "/CN=intruder", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  const at = (file: string) => join(dir, file);
  return {
    dir,
    caCert: at("ca.crt"),
    serverCert: at("server.crt"),
    serverKey: at("server.key"),
    clientCert: at("client.crt"),
    clientKey: at("client.key"),
    otherCaCert: at("other-ca.crt"),
    otherClientCert: at("other-client.crt"),
    otherClientKey: at("other-client.key"),
  };
}

// ---------------------------------------------------------------- logs

/** A destination for `createLogger` that keeps every line written to it. */
export class LogCapture extends Writable {
  readonly chunks: string[] = [];

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(chunk.toString());
    callback();
  }

  /** Everything logged so far. */
  text(): string {
    return this.chunks.join("");
  }

  /** Every line, parsed. */
  lines(): Array<Record<string, unknown>> {
    return this.text()
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

/** Resolves after ms. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls until `check` returns true, or fails after timeoutMs. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The registration used wherever the content does not matter. */
let registrations = 0;
/** A valid registration. Each read of `nodeId` names a new node: registering a node_id again replaces its worker. */
export const REGISTRATION = {
  get nodeId(): string {
    return `node-${++registrations}`;
  },
  capabilities: ["build"],
  maxConcurrentTasks: 1000,
};

