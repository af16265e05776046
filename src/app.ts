import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, isIP } from "node:net";
import { hostname } from "node:os";
import type { LevelWithSilent } from "pino";
import { readBuildInfo, type BuildInfo } from "./build-info.js";
import { systemClock, type Clock } from "./domain/clock.js";
import { ConfigError } from "./domain/errors.js";
import type { Logger } from "./domain/logger.js";
import { compileRegistryOptions, type RegistryOptions } from "./domain/registry-options.js";
import { createReservationIdGenerator, createWorkerIdGenerator, type RandomBytes } from "./domain/worker-id.js";
import { WorkerRegistry } from "./domain/worker-registry.js";
import { createLogger } from "./log.js";
import type { RegistryStore } from "./domain/registry-store.js";
import { lockDatabase } from "./store/database-lock.js";
import { openPostgresStore, redact } from "./store/postgres-store.js";
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
  /**
   * Where the registry keeps its state: a SQLite database file (its
   * directory is created), which this server holds alone (a second server on
   * the file is refused while it runs), or a PostgreSQL URL
   * (`postgres://USER@HOST:PORT/DB`, also `postgresql://`) that any number of
   * replicas share. Default "data/registry.db".
   */
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
  /** How this process works among replicas of one PostgreSQL store. */
  replication?: {
    /** This process's name among the replicas. Default `<hostname>:<pid>`. */
    replicaId?: string;
    /** How long a leader's lease lasts unless renewed: a dead leader is replaced within about this. Default 5 s. */
    leaseTtlMs?: number;
  };
  /** Server keepalive pings, which detect half-open connections. Default every 30 s, 10 s to answer. */
  keepalive?: Partial<KeepaliveOptions>;
  /** What is running, for the startup log and `worker_registry_build_info`. Default {@link readBuildInfo}(). */
  buildInfo?: BuildInfo;
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
 * The composition root: config, then the database's lock, store, registry,
 * gRPC server and, when `metricsPort` is set, the metrics endpoint.
 * Resolves once the server is bound and serving.
 * @throws ConfigError for settings an operator must change: among them
 *   DatabaseInUseError (another server holds the database, named) and a port
 *   in use; nothing stays held or bound after a failed start.
 */
export async function startRegistryServer(options: ServeOptions = {}): Promise<RegistryServer> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? createLogger(options.logLevel ?? "info");
  const build = options.buildInfo ?? readBuildInfo();
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
  const port = options.port ?? 50051;
  const shared = isPostgresUrl(dbPath);
  // Before the store: a second server must not even migrate or recover a SQLite file that another one serves.
  const lock = shared || dbPath === ":memory:" ? undefined : lockDatabase(dbPath, { pid: process.pid, host: hostname(), sinceMs: clock.now() });
  if (lock !== undefined && !lock.held) {
    log.warn({ lockFile: lock.file }, "database lock not taken: its file cannot be written (read-only file system?); it is taken once it can");
  }
  let store: RegistryStore;
  try {
    // Before recovering the store, which can take a while on a large fleet, only to fail on a port that is taken.
    await assertPortFree(host, port);
    store = shared
      ? await openPostgresStore({ url: dbPath, log })
      : openSqliteStore({ path: dbPath, synchronous: options.synchronous ?? "normal", ...(lock === undefined ? {} : { lock }) });
  } catch (error) {
    lock?.release();
    throw error;
  }
  let registry: WorkerRegistry;
  let server: Awaited<ReturnType<typeof startGrpcServer>>;
  let authenticator: Authenticator;
  const metricsPort = options.metricsPort;
  // The source reads lazily: nothing can scrape before the registry and the gRPC server exist.
  const metrics =
    metricsPort === undefined
      ? undefined
      : createRegistryMetrics(
          {
            stats: () => registry.getRegistryStats(),
            counters: () => registry.counters,
            openStreams: () => server.openStreams(),
            watchers: () => registry.watcherCount,
          },
          build,
        );
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
      replicaId: options.replication?.replicaId ?? `${hostname()}:${process.pid}`,
      timing: { leaseTtlMs: options.replication?.leaseTtlMs ?? 5000 },
    });
    const live = registry;
    if (metrics !== undefined) registry.onApplied(metrics.applied);
    authenticator = new Authenticator(roleTokens, (workerId) => live.workerTokenHash(workerId));
    server = await startGrpcServer({
      host,
      port,
      registry,
      clock,
      log,
      watchBufferEvents: registryOptions.watchBufferEvents,
      ...(metrics === undefined ? {} : { observer: metrics.transport }),
      security: {
        ...(tls === undefined ? {} : { tls }),
        authenticator,
        authenticateHealth: security.authenticateHealth ?? false,
        authenticateReflection: security.authenticateReflection ?? false,
      },
      limits,
      keepalive: { ...DEFAULT_KEEPALIVE, ...options.keepalive },
    }).catch((error: unknown) => {
      // Another process may have taken the port since the check above.
      throw bindError(error, host, port, "--port") ?? error;
    });
  } catch (error) {
    await store.close().finally(() => lock?.release());
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
      await store.close().finally(() => lock?.release());
      throw bindError(error, metricsHost, metricsPort, "--metrics-port") ?? error;
    }
  }
  log.info(
    {
      address,
      store: store.kind,
      db: isPostgresUrl(dbPath) ? redact(dbPath) : dbPath,
      synchronous: options.synchronous ?? "normal",
      tls: tls === undefined ? "off" : tls.clientCa === undefined ? "on" : "mutual",
      authentication: authenticator.enabled ? `${authenticator.roleTokenCount} role tokens` : "off",
      workers: registry.getRegistryStats().totalWorkers,
      version: build.version,
      commit: build.commit,
      nodeVersion: build.nodeVersion,
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
        await store.close().finally(() => lock?.release());
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

/**
 * Refuses a port that another process listens on, in words an operator
 * understands, before anything is opened. Port 0 is always free.
 * @throws ConfigError naming the port and the host.
 */
async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", (error) => reject(bindError(error, host, port, "--port") ?? error));
    probe.listen({ host: host.replace(/^\[(.*)\]$/, "$1"), port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/** A ConfigError for a bind that failed for a reason the operator can fix (naming `flag`), or undefined. */
function bindError(error: unknown, host: string, port: number, flag: string): ConfigError | undefined {
  // Node's errors carry a code; grpc-js's carry the same codes only in their message.
  const text = `${(error as NodeJS.ErrnoException).code ?? ""} ${error instanceof Error ? error.message : String(error)}`;
  if (text.includes("EADDRINUSE")) return new ConfigError(`port ${port} on ${host} is in use by another process: stop it, or choose another ${flag}`, { cause: error });
  if (text.includes("EACCES")) {
    return new ConfigError(`port ${port} on ${host} needs privileges this process lacks (ports below 1024 do): choose another ${flag}`, { cause: error });
  }
  if (text.includes("EADDRNOTAVAIL")) return new ConfigError(`cannot bind ${host}: it is not an address of this machine; check --host`, { cause: error });
  return undefined;
}

/** Whether an address to bind reaches this machine only. */
function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  return bare === "::1";
}

/** Whether `--db` names a PostgreSQL database rather than a SQLite file. */
function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//.test(db);
}
