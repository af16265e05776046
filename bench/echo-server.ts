/**
 * The ceiling: a bare grpc-js server with no logic. It serves the registry's
 * service name and messages (so paths, framing and protobuf-es
 * serialization cost the same), answering every heartbeat at once with an
 * ack built exactly as the registry builds one, and every unary call with a
 * canned answer of the registry's shape.
 *
 *   node dist/bench/echo-server.js [--port N]
 *
 * Prints one JSON line {"msg":"echo serving","port":N} once bound; stops on SIGTERM.
 */
import { Server, ServerCredentials, type ChannelOptions, type ServerDuplexStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { WorkerRegistryService, type HeartbeatStreamRequest } from "@sentinel/worker-registry-client/contract";
import { grpcServiceDefinition } from "@sentinel/worker-registry-client/contract";
import { cannedResponses, heartbeatAck, type UnaryMethodName } from "./protocols.js";

/** The registry's server options (src/transport/grpc-server.ts), so keepalive behaves the same. */
const SERVER_OPTIONS: ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};

const portArg = process.argv.indexOf("--port");
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;

const canned = cannedResponses();
const unary = (method: UnaryMethodName) => (_call: unknown, callback: (error: null, response: unknown) => void) => callback(null, canned[method]);

const handlers: UntypedServiceImplementation = {
  heartbeatStream: (call: ServerDuplexStream<HeartbeatStreamRequest, unknown>) => {
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

const server = new Server(SERVER_OPTIONS);
server.addService(grpcServiceDefinition(WorkerRegistryService), handlers);
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
