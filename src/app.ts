import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { LevelWithSilent } from "pino";
import { systemClock, type Clock } from "./domain/clock.js";
import { ConfigError } from "./domain/errors.js";
import type { Logger } from "./domain/logger.js";
import { compileRegistryOptions, type RegistryOptions } from "./domain/registry-options.js";
import { createReservationIdGenerator, createWorkerIdGenerator, type RandomBytes } from "./domain/worker-id.js";
import { WorkerRegistry } from "./domain/worker-registry.js";
import { createLogger } from "./log.js";
import { openSqliteStore } from "./store/sqlite-store.js";
import { createDashboardRoutes, DASHBOARD_PATH } from "./dashboard/dashboard-routes.js";
import { startMetricsServer, type MetricsServer } from "./metrics/metrics-server.js";
import { createRegistryMetrics } from "./metrics/registry-metrics.js";
import { authorize } from "./security/access-policy.js";
import { Authenticator } from "./security/authenticator.js";
import { loadTokenFile } from "./security/token-file.js";
import { DEFAULT_KEEPALIVE, startGrpcServer, type KeepaliveOptions, type TransportLimits } from "./transport/grpc-server.js";

/** Options of a registry server. Every field is optional. */
export interface ServeOptions {
  /** Interface to bind. Default "localhost" (loopback only). */
  host?: string;
  /** Port to bind; 0 picks a free one. Default 50051. */
  port?: number;
  /** SQLite database file; its directory is created. Default "data/registry.db". */
  dbPath?: string;
  /**
   * SQLite durability. "normal" (default): WAL with synchronous=NORMAL, which
   * survives a crash of the process (kill -9). "full" also survives a power loss,
   * at several times the cost per write.
   */
  synchronous?: "normal" | "full";
  /** Thresholds, intervals, scoring and limits. Defaults are the usage guide's. */
  registry?: RegistryOptions;
  /** Log level when no logger is given. Default "info". */
  logLevel?: LevelWithSilent;
  /** A logger to use instead of a new one on stdout. */
  logger?: Logger;
  /** How long shutdown waits for open calls before forcing them closed. Default 5000 ms. */
  shutdownGraceMs?: number;
  /** Time source. Default the system clock. */
  clock?: Clock;
  /** Randomness for worker and reservation ids. Default crypto.randomBytes. */
  randomBytes?: RandomBytes;
  /** Uniform randomness in [0, 1) for AcquireWorker's choice among near-equal workers. Default Math.random. */
  random?: () => number;
  /**
   * Port of the Prometheus endpoint (`GET /metrics` over plain HTTP), which
   * also serves the operator dashboard at `/dashboard/`; 0 picks a free one.
   * Default undefined: no metrics server nor dashboard, and RPCs are not timed.
   */
  metricsPort?: number;
  /** Interface the metrics endpoint binds. Default the same as `host`. */
  metricsHost?: string;
  /** Security: TLS, tokens, and whether plaintext off loopback is allowed. */
  security?: SecurityOptions;
  /** Limits on calls and messages. */
  limits?: Partial<TransportLimits>;
  /** Server keepalive pings, which detect half-open connections. Default every 30 s, 10 s to answer. */
  keepalive?: Partial<KeepaliveOptions>;
}

/** How the server is secured. Every field is optional; the defaults suit local development on loopback. */
export interface SecurityOptions {
  /** PEM certificate chain file: serve TLS (with `tlsKeyFile`). */
  tlsCertFile?: string;
  /** PEM private key file of the certificate. */
  tlsKeyFile?: string;
  /** PEM CA file: require client certificates signed by it (mutual TLS). Needs TLS. */
  tlsClientCaFile?: string;
  /** Tokens file (`ROLE TOKEN` per line): turns authentication on. Reload it with {@link RegistryServer.reloadTokens}. */
  tokensFile?: string;
  /** Allow plaintext without tokens on a non-loopback address. Default false: refused, since anyone who can reach it could steal tasks or evict the fleet. */
  insecure?: boolean;
  /** Require a token for grpc.health.v1. Default false: probes and load balancers rarely carry tokens, and health tells nothing secret. */
  authenticateHealth?: boolean;
  /** Require a token for server reflection. Default false: it shows only the public contract, and operators debug with it. */
  authenticateReflection?: boolean;
}

/**
 * The default limits. Streams are sized for real fleets: a worker process
 * holds one stream, a host may run hundreds. One principal may hold a quarter
 * of the streams (12,500): a load generator, or a host of workers without
 * tokens, keeps 10,000 streams from one address with room to spare, while a
 * single token cannot lock out everyone else.
 */
export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxStreamsPerConnection: 1000,
  maxStreams: 50_000,
  maxStreamShare: 0.25,
  maxWatchers: 1000,
  registrationsPerSecondPerPeer: 1000,
  maxMessageBytes: 1024 * 1024,
  firstHeartbeatTimeoutMs: 10_000,
};

/** A running registry server. */
export interface RegistryServer {
  /** The bound port. */
  readonly port: number;
  /** host:port to give clients. */
  readonly address: string;
  /** The registry behind the server, for tests and embedding. */
  readonly registry: WorkerRegistry;
  /** The bound port of the metrics endpoint, or undefined when `metricsPort` was not set. */
  readonly metricsPort: number | undefined;
  /**
   * Reads the tokens file again and swaps the role tokens (on SIGHUP), so
   * tokens rotate without a restart; streams opened with a role token that is
   * gone are ended with UNAUTHENTICATED. A file that cannot be read or parsed
   * leaves the current tokens in place and throws.
   */
  reloadTokens(): void;
  /**
   * Graceful shutdown: stops accepting calls, ends heartbeat streams with
   * UNAVAILABLE, waits for calls in flight (up to the grace), writes pending
   * heartbeats and closes the database. Safe to call more than once.
   */
  close(): Promise<void>;
}

/**
 * The composition root: config, then store, registry, gRPC server and, when
 * `metricsPort` is set, the metrics endpoint.
 * Resolves once the server is bound and serving.
 */
export async function startRegistryServer(options: ServeOptions = {}): Promise<RegistryServer> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? createLogger(options.logLevel ?? "info");
  const registryOptions = compileRegistryOptions(options.registry);
  const host = options.host ?? "localhost";
  const security = options.security ?? {};
  const tls = readTls(security);
  const roleTokens = security.tokensFile === undefined ? undefined : loadTokenFile(security.tokensFile);
  if (!isLoopback(host) && tls === undefined && roleTokens === undefined && !security.insecure) {
    throw new ConfigError(
      `refusing to serve ${host} in plaintext without tokens: anyone who can reach it could register workers, steal tasks ` +
        `or evict the fleet. Configure --tls-cert/--tls-key and/or --tokens-file, or pass --insecure to accept the risk`,
    );
  }
  const metricsHost = options.metricsHost ?? host;
  if (options.metricsPort !== undefined && !isLoopback(metricsHost) && roleTokens === undefined && !security.insecure) {
    throw new ConfigError(
      `refusing to serve the dashboard's fleet feed on ${metricsHost} without tokens: it shows every worker to anyone ` +
        `who can reach it. Configure --tokens-file, bind the metrics port to loopback, or pass --insecure`,
    );
  }
  const limits = { ...DEFAULT_TRANSPORT_LIMITS, ...options.limits };
  const dbPath = options.dbPath ?? "data/registry.db";
  const store = openSqliteStore({ path: dbPath, synchronous: options.synchronous ?? "normal" });
  let registry: WorkerRegistry;
  let server: Awaited<ReturnType<typeof startGrpcServer>>;
  let authenticator: Authenticator;
  const metricsPort = options.metricsPort;
  // The source reads lazily: nothing can scrape before the registry and the gRPC server exist.
  const metrics =
    metricsPort === undefined
      ? undefined
      : createRegistryMetrics({
          stats: () => registry.getRegistryStats(),
          counters: () => registry.counters,
          openStreams: () => ({ heartbeat: server.heartbeatStreams.size, watch: server.watchStreams.size }),
        });
  try {
    registry = await WorkerRegistry.create({
      store,
      clock,
      log,
      options: registryOptions,
      newWorkerId: createWorkerIdGenerator(clock, options.randomBytes ?? cryptoRandomBytes),
      newReservationId: createReservationIdGenerator(clock, options.randomBytes ?? cryptoRandomBytes),
      newWorkerSecret: () => Buffer.from((options.randomBytes ?? cryptoRandomBytes)(32)).toString("base64url"),
      random: options.random ?? Math.random,
    });
    const live = registry;
    authenticator = new Authenticator(roleTokens, (workerId) => live.workerTokenHash(workerId));
    server = await startGrpcServer({
      host,
      port: options.port ?? 50051,
      registry,
      clock,
      log,
      watchBufferEvents: registryOptions.watchBufferEvents,
      observeRpc: metrics?.observeRpc,
      security: {
        ...(tls === undefined ? {} : { tls }),
        authenticator,
        authenticateHealth: security.authenticateHealth ?? false,
        authenticateReflection: security.authenticateReflection ?? false,
      },
      limits,
      keepalive: { ...DEFAULT_KEEPALIVE, ...options.keepalive },
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  // The grace for recovered workers starts now that calls can arrive, not when start-up began.
  registry.beginServing();
  const address = `${host.includes(":") ? `[${host}]` : host}:${server.port}`;
  let metricsServer: MetricsServer | undefined;
  if (metrics !== undefined && metricsPort !== undefined) {
    try {
      // The dashboard shares the metrics port: one plain-HTTP server for operators.
      const dashboard = createDashboardRoutes({
        registry,
        scoring: registryOptions.scoring,
        thresholds: {
          healthyThresholdMs: registryOptions.healthyThresholdMs,
          degradedThresholdMs: registryOptions.degradedThresholdMs,
          heartbeatIntervalMs: registryOptions.heartbeatIntervalMs,
        },
        clock,
        log,
        feed: { snapshotPageSize: registryOptions.limits.maxPageSize },
        // With tokens on, the feed needs a token that may read the fleet, as DiscoverWorkers does.
        authorize: (request) => {
          try {
            const value = request.headers.authorization;
            authorize(authenticator.authenticate(value === undefined ? [] : [value]), "read-fleet");
            return true;
          } catch {
            return false;
          }
        },
      });
      metricsServer = await startMetricsServer({ host: metricsHost, port: metricsPort, registry: metrics.registry, log, routes: dashboard });
      log.info({ port: metricsServer.port, path: DASHBOARD_PATH }, "dashboard serving");
    } catch (error) {
      await server.shutdown(0);
      await registry.close();
      await store.close();
      throw error;
    }
  }
  log.info(
    {
      address,
      dbPath,
      synchronous: options.synchronous ?? "normal",
      tls: tls === undefined ? "off" : tls.clientCa === undefined ? "on" : "mutual",
      authentication: authenticator.enabled ? `${authenticator.roleTokenCount} role tokens` : "off",
      workers: registry.getRegistryStats().totalWorkers,
    },
    "registry serving",
  );

  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    address,
    registry,
    metricsPort: metricsServer?.port,
    reloadTokens() {
      if (security.tokensFile === undefined) throw new ConfigError("no tokens file is configured; nothing to reload");
      const tokens = loadTokenFile(security.tokensFile);
      authenticator.replaceRoleTokens(tokens);
      // A removed token must not live on in the streams it opened.
      const streamsEnded = server.endRevokedStreams();
      log.info({ roleTokens: tokens.length, streamsEnded }, "tokens reloaded");
    },
    close() {
      closing ??= (async () => {
        log.info({}, "registry shutting down");
        await metricsServer?.close();
        await server.shutdown(options.shutdownGraceMs ?? 5000);
        await registry.close();
        await store.close();
        log.info({}, "registry stopped");
      })();
      return closing;
    },
  };
}

function readTls(security: SecurityOptions): { cert: Buffer; key: Buffer; clientCa?: Buffer } | undefined {
  const { tlsCertFile, tlsKeyFile, tlsClientCaFile } = security;
  if (tlsCertFile === undefined && tlsKeyFile === undefined) {
    if (tlsClientCaFile !== undefined) throw new ConfigError("--tls-client-ca needs TLS: give --tls-cert and --tls-key too");
    return undefined;
  }
  if (tlsCertFile === undefined || tlsKeyFile === undefined) throw new ConfigError("TLS needs both --tls-cert and --tls-key");
  const read = (flag: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(`${flag}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  return {
    cert: read("--tls-cert", tlsCertFile),
    key: read("--tls-key", tlsKeyFile),
    ...(tlsClientCaFile === undefined ? {} : { clientCa: read("--tls-client-ca", tlsClientCaFile) }),
  };
}

/** Whether an address to bind reaches this machine only. */
function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  return bare === "::1";
}
