import { randomBytes as cryptoRandomBytes } from "node:crypto";
import type { LevelWithSilent } from "pino";
import { systemClock, type Clock } from "./domain/clock.js";
import type { Logger } from "./domain/logger.js";
import { compileRegistryOptions, type RegistryOptions } from "./domain/registry-options.js";
import { createReservationIdGenerator, createWorkerIdGenerator, type RandomBytes } from "./domain/worker-id.js";
import { WorkerRegistry } from "./domain/worker-registry.js";
import { createLogger } from "./log.js";
import { openSqliteStore } from "./store/sqlite-store.js";
import { startMetricsServer, type MetricsServer } from "./metrics/metrics-server.js";
import { createRegistryMetrics } from "./metrics/registry-metrics.js";
import { startGrpcServer } from "./transport/grpc-server.js";

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
   * Port of the Prometheus endpoint (`GET /metrics` over plain HTTP); 0 picks
   * a free one. Default undefined: no metrics server, and RPCs are not timed.
   */
  metricsPort?: number;
  /** Interface the metrics endpoint binds. Default the same as `host`. */
  metricsHost?: string;
}

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
  const dbPath = options.dbPath ?? "data/registry.db";
  const store = openSqliteStore({ path: dbPath, synchronous: options.synchronous ?? "normal" });
  let registry: WorkerRegistry;
  let server: Awaited<ReturnType<typeof startGrpcServer>>;
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
      random: options.random ?? Math.random,
    });
    server = await startGrpcServer({
      host: options.host ?? "localhost",
      port: options.port ?? 50051,
      registry,
      clock,
      log,
      watchBufferEvents: registryOptions.watchBufferEvents,
      observeRpc: metrics?.observeRpc,
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  // The grace for recovered workers starts now that calls can arrive, not when start-up began.
  registry.beginServing();
  const host = options.host ?? "localhost";
  const address = `${host.includes(":") ? `[${host}]` : host}:${server.port}`;
  let metricsServer: MetricsServer | undefined;
  if (metrics !== undefined && metricsPort !== undefined) {
    try {
      metricsServer = await startMetricsServer({ host: options.metricsHost ?? host, port: metricsPort, registry: metrics.registry, log });
    } catch (error) {
      await server.shutdown(0);
      await registry.close();
      await store.close();
      throw error;
    }
  }
  log.info({ address, dbPath, synchronous: options.synchronous ?? "normal", workers: registry.getRegistryStats().totalWorkers }, "registry serving");

  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    address,
    registry,
    metricsPort: metricsServer?.port,
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
