import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { createServer } from "node:net";
import { hostname } from "node:os";
import { ConfigError } from "./domain/errors.js";
import type { Logger } from "./domain/logger.js";
import type { RegistryStore } from "./domain/registry-store.js";
import { createReservationIdGenerator, createWorkerIdGenerator } from "./domain/worker-id.js";
import { WorkerRegistry } from "./domain/worker-registry.js";
import { createLogger } from "./log.js";
import { createDashboardRoutes, DASHBOARD_PATH } from "./dashboard/dashboard-routes.js";
import { startMetricsServer } from "./metrics/metrics-server.js";
import { createRegistryMetrics } from "./metrics/registry-metrics.js";
import { Authenticator } from "./security/authenticator.js";
import { dashboardActionGuard, dashboardAuthorizer, loadServerSecurity } from "./security/server-security.js";
import { loadTokenFile } from "./security/token-file.js";
import { compileServeOptions, isPostgresUrl, type ServeOptions } from "./serve-options.js";
import { lockDatabase } from "./store/database-lock.js";
import { openPostgresStore, redact } from "./store/postgres-store.js";
import { openSqliteStore } from "./store/sqlite-store.js";
import { startGrpcServer } from "./transport/grpc-server.js";

export { DEFAULT_TRANSPORT_LIMITS, type ServeOptions } from "./serve-options.js";
export type { SecurityOptions } from "./security/server-security.js";

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
 * What a server holds, in the order it took it; closed in the reverse order,
 * at shutdown or when start-up fails half-way, so nothing stays held or bound.
 */
class Holdings {
  private readonly held: Array<{ readonly name: string; readonly close: () => unknown }> = [];

  constructor(private readonly log: Logger) {}

  add(name: string, close: () => unknown): void {
    this.held.push({ name, close });
  }

  /** Closes everything, last taken first; a failure is logged and the rest still close. */
  async closeAll(): Promise<void> {
    for (const { name, close } of this.held.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        this.log.warn({ err: error, resource: name }, "could not close cleanly");
      }
    }
  }
}

/**
 * The composition root: options, then the database's lock, the store, the
 * registry, the gRPC server and, when `metricsPort` is set, the metrics
 * endpoint with the dashboard. Resolves once the server is bound and serving.
 * @throws ConfigError for settings an operator must change: among them
 *   DatabaseInUseError (another server holds the database, named) and a port
 *   in use; nothing stays held or bound after a failed start.
 */
export async function startRegistryServer(given: ServeOptions = {}): Promise<RegistryServer> {
  const options = compileServeOptions(given);
  const { clock, host, port, dbPath, metricsHost, metricsPort, registry: registryOptions } = options;
  const log = options.logger ?? createLogger(options.logLevel);
  const { tls, roleTokens } = loadServerSecurity(options.security, { host, metricsHost, metricsPort });
  const shared = isPostgresUrl(dbPath);
  const holdings = new Holdings(log);
  try {
    // Before the store: a second server must not even migrate or recover a SQLite file that another one serves.
    const lock = shared || dbPath === ":memory:" ? undefined : lockDatabase(dbPath, { pid: process.pid, host: hostname(), sinceMs: clock.now() });
    if (lock !== undefined) holdings.add("database lock", () => lock.release());
    if (lock !== undefined && !lock.held) {
      log.warn({ lockFile: lock.file }, "database lock not taken: its file cannot be written (read-only file system?); it is taken once it can");
    }
    // Before recovering the store, which can take a while on a large fleet, only to fail on a port that is taken.
    await assertPortFree(host, port);
    const store: RegistryStore = shared
      ? await openPostgresStore({ url: dbPath, log })
      : openSqliteStore({ path: dbPath, synchronous: options.synchronous, ...(lock === undefined ? {} : { lock }) });
    holdings.add("store", () => store.close());

    const randomBytes = options.randomBytes ?? cryptoRandomBytes;
    const registry = await WorkerRegistry.create({
      store,
      clock,
      log,
      options: registryOptions,
      newWorkerId: createWorkerIdGenerator(clock, randomBytes),
      newReservationId: createReservationIdGenerator(clock, randomBytes),
      newWorkerSecret: () => Buffer.from(randomBytes(32)).toString("base64url"),
      random: options.random,
      replicaId: options.replication.replicaId ?? `${hostname()}:${process.pid}`,
      timing: { leaseTtlMs: options.replication.leaseTtlMs },
    });
    holdings.add("registry", () => registry.close());
    const authenticator = new Authenticator(roleTokens, (workerId) => registry.workerTokenHash(workerId), (workerId) => registry.removalReasonOf(workerId));

    const build = options.buildInfo;
    // The source reads lazily: nothing can scrape before the gRPC server exists.
    let streams = () => ({ heartbeat: 0, watch: 0, introspection: 0 });
    const metrics =
      metricsPort === undefined
        ? undefined
        : createRegistryMetrics(
            { stats: () => registry.getRegistryStats(), counters: () => registry.counters, openStreams: () => streams(), watchers: () => registry.watcherCount },
            build,
          );
    if (metrics !== undefined) registry.onApplied(metrics.applied);
    const server = await startGrpcServer({
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
        authenticateHealth: options.security.authenticateHealth,
        authenticateReflection: options.security.authenticateReflection,
      },
      limits: options.limits,
      keepalive: options.keepalive,
    }).catch((error: unknown) => {
      // Another process may have taken the port since the check above.
      throw bindError(error, host, port, "--port") ?? error;
    });
    holdings.add("gRPC server", () => server.shutdown(options.shutdownGraceMs));
    streams = () => server.openStreams();
    // The grace for recovered workers starts now that calls can arrive, not when start-up began.
    registry.beginServing();

    let metricsServerPort: number | undefined;
    if (metrics !== undefined && metricsPort !== undefined) {
      // The dashboard shares the metrics port: one plain-HTTP server for operators.
      const mayReadFleet = dashboardAuthorizer(authenticator);
      const mayAct = dashboardActionGuard(authenticator, (workerId) => registry.registrantOf(workerId));
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
        authorize: (request) => mayReadFleet(request.headers.authorization),
        actions: {
          registry,
          guard: {
            allowed: (request) => mayAct.allowed(request.headers.authorization),
            authorize: (request, action, workerId) => mayAct.authorize(request.headers.authorization, action, workerId),
          },
        },
      });
      const metricsServer = await startMetricsServer({ host: metricsHost, port: metricsPort, registry: metrics.registry, log, routes: dashboard }).catch(
        (error: unknown) => {
          throw bindError(error, metricsHost, metricsPort, "--metrics-port") ?? error;
        },
      );
      holdings.add("metrics server", () => metricsServer.close());
      metricsServerPort = metricsServer.port;
      log.info({ port: metricsServer.port, path: DASHBOARD_PATH }, "dashboard serving");
    }

    const address = `${host.includes(":") ? `[${host}]` : host}:${server.port}`;
    log.info(
      {
        address,
        store: store.kind,
        db: shared ? redact(dbPath) : dbPath,
        synchronous: options.synchronous,
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
      metricsPort: metricsServerPort,
      reloadTokens() {
        const { tokensFile } = options.security;
        if (tokensFile === undefined) throw new ConfigError("no tokens file is configured; nothing to reload");
        const tokens = loadTokenFile(tokensFile);
        authenticator.replaceRoleTokens(tokens);
        // A removed token must not live on in the streams it opened.
        const streamsEnded = server.endRevokedStreams();
        log.info({ roleTokens: tokens.length, streamsEnded }, "tokens reloaded");
      },
      close() {
        closing ??= (async () => {
          log.info({}, "registry shutting down");
          await holdings.closeAll();
          log.info({}, "registry stopped");
        })();
        return closing;
      },
    };
  } catch (error) {
    await holdings.closeAll();
    throw error;
  }
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
