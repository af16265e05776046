import {
  ResponderBuilder,
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status,
  type ChannelOptions,
  type MethodDefinition,
  type ServerInterceptor,
} from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import type { Authenticator } from "../security/authenticator.js";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import {
  file_sentinel_registry_v1_registry_service,
  WorkerRegistryService,
} from "@sentinel/worker-registry-client/contract";
import { grpcServiceDefinition } from "@sentinel/worker-registry-client/contract";
import { CallGuard, type CallLimits, type StreamKind } from "./call-guard.js";
import { decodeHeartbeat, serializeHeartbeatAck } from "./heartbeat-codec.js";
import { HeartbeatStreams } from "./heartbeat-streams.js";
import { addReflection } from "./reflection.js";
import { keepRepeatedAuthorization } from "./repeated-authorization.js";
import { registryServiceHandlers } from "./registry-service.js";
import { statusForError } from "./status.js";
import { methodLabel, NO_TRANSPORT_OBSERVER, type TransportObserver } from "./transport-observer.js";
import { serializeWatchResponse } from "./watch-encoding.js";
import { WatchStreams } from "./watch-streams.js";

/** The fully qualified name of the registry service, as grpc.health.v1 reports it. */
export const REGISTRY_SERVICE_NAME = WorkerRegistryService.typeName;

/**
 * Server keepalive: ping each connection every `timeMs` and drop one that
 * does not answer within `timeoutMs`, so half-open connections (a worker host
 * that vanished without closing) are noticed and their streams released.
 */
export interface KeepaliveOptions {
  /** Default 30 s. */
  readonly timeMs: number;
  /** Default 10 s. */
  readonly timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { timeMs: 30_000, timeoutMs: 10_000 };

function serverOptions(keepalive: KeepaliveOptions): ChannelOptions {
  return {
    "grpc.keepalive_time_ms": keepalive.timeMs,
    "grpc.keepalive_timeout_ms": keepalive.timeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
  };
}

/** How the server proves itself and checks its callers. */
export interface TransportSecurity {
  /** PEM files' contents: serve TLS; with `clientCa`, require client certificates signed by it (mutual TLS). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly clientCa?: Buffer };
  /** Checks bearer tokens; with no tokens file every call is allowed. */
  readonly authenticator: Authenticator;
  /** Require a valid token for grpc.health.v1 too (default open: probes rarely carry tokens). */
  readonly authenticateHealth: boolean;
  /** Require a valid token for server reflection too (default open: it shows only the public contract). */
  readonly authenticateReflection: boolean;
}

/** Limits the server enforces on calls, with the largest message it accepts. */
export interface TransportLimits extends CallLimits {
  /** Largest request message, in bytes; larger ones get RESOURCE_EXHAUSTED from grpc-js. */
  readonly maxMessageBytes: number;
  /** How long a HeartbeatStream may stay open without its first heartbeat before it is ended with DEADLINE_EXCEEDED. */
  readonly firstHeartbeatTimeoutMs: number;
}

/** A bound gRPC server serving the registry, grpc.health.v1 and reflection. */
export interface GrpcServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** The open heartbeat streams. */
  readonly heartbeatStreams: HeartbeatStreams;
  /** The open watch streams. */
  readonly watchStreams: WatchStreams;
  /** The streams open now, by kind: heartbeat, watch, and the hosted services' (health Watch, reflection). */
  openStreams(): Readonly<Record<StreamKind, number>>;
  /**
   * Ends, with UNAUTHENTICATED, every open stream whose role token is no
   * longer current: call it after the authenticator's tokens are replaced.
   * @returns how many streams were ended.
   */
  endRevokedStreams(): number;
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
  /** Hears of answered calls, refusals, heartbeats handled and watch deliveries, e.g. for metrics. Default: none. */
  readonly observer?: TransportObserver;
  readonly security: TransportSecurity;
  readonly limits: TransportLimits;
  /** Default {@link DEFAULT_KEEPALIVE}. */
  readonly keepalive?: KeepaliveOptions;
}): Promise<GrpcServer> {
  const { registry, clock, log, security, limits } = options;
  const observer = options.observer ?? NO_TRANSPORT_OBSERVER;
  const guard = new CallGuard(security.authenticator, registry, clock, limits);
  let ready = false;
  const server = new Server({
    ...serverOptions(options.keepalive ?? DEFAULT_KEEPALIVE),
    "grpc.max_receive_message_length": limits.maxMessageBytes,
    interceptors: [callInterceptor({ security, guard, log, observer, ready: () => ready })],
  });
  const heartbeatStreams = new HeartbeatStreams(registry, guard, log, limits.firstHeartbeatTimeoutMs, clock, observer);
  const watchStreams = new WatchStreams(registry, guard, log, options.watchBufferEvents, clock, observer);
  // A drained worker removed by any process: its streams here end now, saying why, so its node stops at once
  // instead of at its next heartbeat (minutes away, and it may be idle). Other removals keep being learnt from
  // the next heartbeat's NOT_FOUND, as the guide's clients expect.
  const stopEndingStreams = registry.onApplied(({ event }) => {
    if (event.type === "unregistered" && (event.reason === "drained" || event.reason === "drain_deadline")) {
      heartbeatStreams.workerRemoved(event.worker.id, event.reason);
    }
  });
  server.addService(
    registryServiceDefinition(),
    registryServiceHandlers(registry, { heartbeats: heartbeatStreams, watches: watchStreams }, guard, clock, log, observer),
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
    server.bindAsync(address, serverCredentials(security), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  try {
    keepRepeatedAuthorization(server);
  } catch (error) {
    server.forceShutdown();
    throw error;
  }
  ready = true;
  // Serving while the store takes writes: a replica whose store is unreachable keeps its streams and answers
  // reads, but a load balancer should send writers elsewhere.
  let shuttingDown = false;
  const reportServing = (writable: boolean) => {
    if (shuttingDown) return;
    health.setStatus("", writable ? "SERVING" : "NOT_SERVING");
    health.setStatus(REGISTRY_SERVICE_NAME, writable ? "SERVING" : "NOT_SERVING");
  };
  reportServing(registry.availability.writable);
  const stopReporting = registry.availability.subscribe(reportServing);

  return {
    port,
    heartbeatStreams,
    watchStreams,
    openStreams: () => guard.openStreams(),
    endRevokedStreams: () => guard.endRevokedStreams(),
    async shutdown(graceMs: number): Promise<void> {
      shuttingDown = true;
      stopReporting();
      stopEndingStreams();
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

/** Every method path the server serves: the registry's, grpc.health.v1's and reflection's (v1 and v1alpha). */
const KNOWN_PATHS: ReadonlySet<string> = new Set(
  [WorkerRegistryService, ...[file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection].flatMap((file) => file.services)].flatMap(
    (service) => service.methods.map((m) => `/${service.typeName}/${m.name}`),
  ),
);
/**
 * The registry service as grpc-js serves it: protobuf-es (de)serializers,
 * except HeartbeatStream's, which are written by hand for its hot path
 * (heartbeat-codec.ts) and read and write the same bytes, and WatchWorkers'
 * response serializer, which sends each event's bytes encoded once for all
 * its watchers (watch-encoding.ts).
 */
function registryServiceDefinition(): Record<string, MethodDefinition<unknown, unknown>> {
  const definition = grpcServiceDefinition(WorkerRegistryService);
  const heartbeatStream = definition.heartbeatStream!;
  return {
    ...definition,
    heartbeatStream: { ...heartbeatStream, requestDeserialize: decodeHeartbeat, responseSerialize: serializeHeartbeatAck as (value: unknown) => Buffer },
    watchWorkers: { ...definition.watchWorkers!, responseSerialize: serializeWatchResponse as (value: unknown) => Buffer },
  };
}

function serverCredentials(security: TransportSecurity): ServerCredentials {
  const { tls } = security;
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}

/**
 * Checks, on every call, what no handler of ours sees: grpc.health.v1 and
 * reflection are served by libraries. Their calls are authenticated when
 * configured to, and their streams (health Watch, reflection) take stream
 * slots like the registry's own, released however the call ends (a status
 * sent or the call cancelled, which grpc-js reports for every ended call).
 * The registry's own calls pass through: its handlers authenticate,
 * authorise and count them. Until `ready()`, every call is refused with
 * UNAVAILABLE: the server is not done starting. The observer hears of every
 * call refused here.
 */
function callInterceptor(options: {
  readonly security: TransportSecurity;
  readonly guard: CallGuard;
  readonly log: Logger;
  readonly observer: TransportObserver;
  readonly ready: () => boolean;
}): ServerInterceptor {
  const { security, guard, log, observer, ready } = options;
  const registryPaths = `/${REGISTRY_SERVICE_NAME}/`;
  const refused = (path: string, code: status) => observer.callRefused(methodLabel(path, REGISTRY_SERVICE_NAME, KNOWN_PATHS), status[code]);
  return (method, call) => {
    if (!ready()) {
      const refuse = new ServerListenerBuilder()
        .withOnReceiveMetadata(() => {
          refused(method.path, status.UNAVAILABLE);
          call.sendStatus({ code: status.UNAVAILABLE, details: "registry is starting; retry shortly" });
        })
        .build();
      return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(refuse)).build());
    }
    // A call this interceptor leaves alone is handed back as it came: grpc-js chains interceptors by what each
    // returns, so no layer is added, and a heartbeat pays nothing per message here (the declared return type
    // is the class, but grpc-js only ever uses the interface).
    if (method.path.startsWith(registryPaths)) return call as ServerInterceptingCall;
    const authenticated =
      (security.authenticateHealth && method.path.startsWith("/grpc.health.v1.")) ||
      (security.authenticateReflection && method.path.startsWith("/grpc.reflection."));
    const streaming = method.requestStream || method.responseStream;
    if (!authenticated && !streaming) return call as ServerInterceptingCall;
    let ended = false;
    let releaseSlot: (() => void) | undefined;
    const end = () => {
      ended = true;
      releaseSlot?.();
    };
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (ended) return;
        try {
          const principal = authenticated ? guard.principal(metadata) : undefined;
          if (streaming) {
            releaseSlot = guard.openStream(call.getPeer(), principal, "introspection", (details) => call.sendStatus({ code: status.UNAUTHENTICATED, details }));
          }
          next(metadata);
        } catch (error) {
          const refusal = statusForError(error, log, method.path);
          refused(method.path, refusal.code);
          call.sendStatus(refusal);
        }
      })
      .withOnCancel(end)
      .build();
    const responder = new ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((statusObject, next) => {
        end();
        next(statusObject);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
