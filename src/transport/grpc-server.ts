import { Server, ServerCredentials, type ChannelOptions } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import { file_grpc_health_v1_health } from "../../clients/typescript/src/gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../clients/typescript/src/gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../clients/typescript/src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import {
  file_sentinel_registry_v1_registry_service,
  WorkerRegistryService,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";
import { HeartbeatStreams } from "./heartbeat-streams.js";
import { addReflection } from "./reflection.js";
import { registryServiceHandlers } from "./registry-service.js";
import { WatchStreams } from "./watch-streams.js";

/** The fully qualified name of the registry service, as grpc.health.v1 reports it. */
export const REGISTRY_SERVICE_NAME = WorkerRegistryService.typeName;

/**
 * Server keepalive: ping idle connections every 30 s and drop those that do
 * not answer within 10 s, so half-open connections (a worker host that
 * vanished) are noticed. Clients may ping as often as every 10 s.
 */
const SERVER_OPTIONS: ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};

/** A bound gRPC server serving the registry, grpc.health.v1 and reflection. */
export interface GrpcServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** The open heartbeat streams. */
  readonly heartbeatStreams: HeartbeatStreams;
  /** The open watch streams. */
  readonly watchStreams: WatchStreams;
  /** Marks the services NOT_SERVING and ends heartbeat and watch streams with UNAVAILABLE, then stops the server. */
  shutdown(graceMs: number): Promise<void>;
}

/**
 * Builds the gRPC server and binds it. Resolves once the port is bound and
 * the services report SERVING.
 */
export async function startGrpcServer(options: {
  readonly host: string;
  readonly port: number;
  readonly registry: WorkerRegistry;
  readonly clock: Clock;
  readonly log: Logger;
  /** Events buffered for a watcher that is not reading before it is dropped. */
  readonly watchBufferEvents: number;
  /** Called once per finished unary call with its method, status name and seconds, e.g. for metrics. Default: none. */
  readonly observeRpc?: (method: string, code: string, seconds: number) => void;
}): Promise<GrpcServer> {
  const { registry, clock, log } = options;
  const server = new Server(SERVER_OPTIONS);
  const heartbeatStreams = new HeartbeatStreams(registry, clock, log);
  const watchStreams = new WatchStreams(registry, log, options.watchBufferEvents);
  server.addService(
    grpcServiceDefinition(WorkerRegistryService),
    registryServiceHandlers(registry, { heartbeats: heartbeatStreams, watches: watchStreams }, clock, log, options.observeRpc),
  );

  const health = new HealthImplementation({ "": "NOT_SERVING", [REGISTRY_SERVICE_NAME]: "NOT_SERVING" });
  health.addToServer(server);
  // Reflection describes itself too, as grpc-go and grpc-java do, so `grpcurl list` shows every service served.
  addReflection(server, [
    file_sentinel_registry_v1_registry_service,
    file_grpc_health_v1_health,
    file_grpc_reflection_v1_reflection,
    file_grpc_reflection_v1alpha_reflection,
  ]);

  const address = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  health.setStatus("", "SERVING");
  health.setStatus(REGISTRY_SERVICE_NAME, "SERVING");

  return {
    port,
    heartbeatStreams,
    watchStreams,
    async shutdown(graceMs: number): Promise<void> {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(REGISTRY_SERVICE_NAME, "NOT_SERVING");
      heartbeatStreams.closeAll();
      watchStreams.closeAll();
      await new Promise<void>((resolve) => {
        // Long-lived calls (health Watch) never end by themselves: after the grace, force them.
        const force = setTimeout(() => {
          log.warn({ graceMs }, "calls still open after the shutdown grace; forcing them closed");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
