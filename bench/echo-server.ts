/**
 * The ceiling: a bare grpc-js server with no logic. It serves the registry's
 * service name and messages (so paths, framing and protobuf-es
 * serialization cost the same), answering every heartbeat at once with an
 * ack built exactly as the registry builds one, and every unary call with a
 * canned answer of the registry's shape.
 *
 * With `--bare` it does not even run protobuf: requests arrive as bytes, and
 * each heartbeat is answered with its own bytes (worker_id and sequence,
 * fields 1 and 2 of both messages) followed by the ack's other fields encoded
 * once at start-up: the same size as the registry's ack, and decodable as
 * one. Unary calls get their canned answers as bytes encoded once. This is
 * the transport alone: what grpc-js costs per message with nothing above it.
 *
 *   node dist/bench/echo-server.js [--port N] [--bare]
 *
 * Prints one JSON line {"msg":"echo serving","port":N} once bound; stops on SIGTERM.
 */
import { toBinary } from "@bufbuild/protobuf";
import { Server, ServerCredentials, type ChannelOptions, type MethodDefinition, type ServerDuplexStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HeartbeatStreamResponseSchema, WorkerRegistryService, type HeartbeatStreamRequest } from "@sentinel/worker-registry-client/contract";
import { grpcServiceDefinition } from "@sentinel/worker-registry-client/contract";
import { cannedResponses, heartbeatAck, unaryMethods, type UnaryMethodName } from "./protocols.js";

/** The registry's server options (src/transport/grpc-server.ts), so keepalive behaves the same. */
const SERVER_OPTIONS: ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};

const portArg = process.argv.indexOf("--port");
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;
const bare = process.argv.includes("--bare");

const canned = cannedResponses();
const answers: { readonly [M in UnaryMethodName]: unknown } = bare
  ? (Object.fromEntries(Object.entries(canned).map(([m, v]) => [m, unaryMethods[m as UnaryMethodName].response.serialize(v as never)])) as never)
  : canned;
const unary = (method: UnaryMethodName) => (_call: unknown, callback: (error: null, response: unknown) => void) => callback(null, answers[method]);

/** An ack's fields after worker_id and sequence (health, server time, interval), encoded once: --bare appends them to the request's bytes. */
const ACK_TAIL = Buffer.from(toBinary(HeartbeatStreamResponseSchema, heartbeatAck("", 0)));

const handlers: UntypedServiceImplementation = {
  heartbeatStream: bare
    ? (call: ServerDuplexStream<Buffer, Buffer>) => {
        call.on("data", (request: Buffer) => call.write(Buffer.concat([request, ACK_TAIL], request.length + ACK_TAIL.length)));
        call.on("end", () => call.end());
        call.on("error", () => {});
      }
    : (call: ServerDuplexStream<HeartbeatStreamRequest, unknown>) => {
        call.on("data", (request: HeartbeatStreamRequest) => call.write(heartbeatAck(request.workerId, request.sequence)));
        call.on("end", () => call.end());
        call.on("error", () => {});
      },
  registerWorker: unary("RegisterWorker"),
  updateTaskCount: unary("UpdateTaskCount"),
  recordTaskCompletion: unary("RecordTaskCompletion"),
  acquireWorker: unary("AcquireWorker"),
  releaseWorker: unary("ReleaseWorker"),
  getWorkersForLoadBalancing: unary("GetWorkersForLoadBalancing"),
};

/** --bare: every message passes as the bytes it is, in both directions. */
function bytesOnly(definition: Record<string, MethodDefinition<unknown, unknown>>): Record<string, MethodDefinition<unknown, unknown>> {
  const identity = (bytes: unknown) => bytes as Buffer;
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [
      name,
      { ...method, requestDeserialize: identity, responseSerialize: identity },
    ]),
  );
}

const server = new Server(SERVER_OPTIONS);
const definition = grpcServiceDefinition(WorkerRegistryService);
server.addService(bare ? bytesOnly(definition) : definition, handlers);
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error, bound) => {
  if (error) {
    console.error(error.message);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: "echo serving", port: bound }));
});
process.on("SIGTERM", () => {
  server.forceShutdown();
  // Exit on the next turn, not at once: `node --cpu-prof` writes its profile on a normal exit.
  setImmediate(() => process.exit(0));
});
