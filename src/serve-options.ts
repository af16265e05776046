import type { LevelWithSilent } from "pino";
import { readBuildInfo, type BuildInfo } from "./build-info.js";
import { systemClock, type Clock } from "./domain/clock.js";
import type { Logger } from "./domain/logger.js";
import { compileRegistryOptions, type CompiledRegistryOptions, type RegistryOptions } from "./domain/registry-options.js";
import type { RandomBytes } from "./domain/worker-id.js";
import type { SecurityOptions } from "./security/server-security.js";
import { DEFAULT_KEEPALIVE, type KeepaliveOptions, type TransportLimits } from "./transport/grpc-server.js";

export type { SecurityOptions } from "./security/server-security.js";

/** Options of a registry server. Every field is optional; {@link compileServeOptions} fills in the defaults. */
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
  /** Limits on calls and messages. Defaults: {@link DEFAULT_TRANSPORT_LIMITS}. */
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

/** {@link ServeOptions} with every default applied: what the composition root builds from. */
export interface CompiledServeOptions {
  readonly host: string;
  readonly port: number;
  readonly dbPath: string;
  readonly synchronous: "normal" | "full";
  readonly registry: CompiledRegistryOptions;
  readonly logLevel: LevelWithSilent;
  readonly logger: Logger | undefined;
  readonly shutdownGraceMs: number;
  readonly clock: Clock;
  readonly randomBytes: RandomBytes | undefined;
  readonly random: () => number;
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  readonly security: Required<Omit<SecurityOptions, "tlsCertFile" | "tlsKeyFile" | "tlsClientCaFile" | "tokensFile">> &
    Pick<SecurityOptions, "tlsCertFile" | "tlsKeyFile" | "tlsClientCaFile" | "tokensFile">;
  readonly limits: TransportLimits;
  readonly replication: { readonly replicaId: string | undefined; readonly leaseTtlMs: number };
  readonly keepalive: KeepaliveOptions;
  readonly buildInfo: BuildInfo;
}

/**
 * Applies every default once, so nothing downstream writes `?? default` again.
 * @throws ConfigError naming a registry option that breaks a rule.
 */
export function compileServeOptions(options: ServeOptions = {}): CompiledServeOptions {
  const host = options.host ?? "localhost";
  const security = options.security ?? {};
  return {
    host,
    port: options.port ?? 50051,
    dbPath: options.dbPath ?? "data/registry.db",
    synchronous: options.synchronous ?? "normal",
    registry: compileRegistryOptions(options.registry),
    logLevel: options.logLevel ?? "info",
    logger: options.logger,
    shutdownGraceMs: options.shutdownGraceMs ?? 5000,
    clock: options.clock ?? systemClock,
    randomBytes: options.randomBytes,
    random: options.random ?? Math.random,
    metricsPort: options.metricsPort,
    metricsHost: options.metricsHost ?? host,
    security: {
      ...security,
      insecure: security.insecure ?? false,
      authenticateHealth: security.authenticateHealth ?? false,
      authenticateReflection: security.authenticateReflection ?? false,
    },
    limits: { ...DEFAULT_TRANSPORT_LIMITS, ...options.limits },
    replication: { replicaId: options.replication?.replicaId, leaseTtlMs: options.replication?.leaseTtlMs ?? 5000 },
    keepalive: { ...DEFAULT_KEEPALIVE, ...options.keepalive },
    buildInfo: options.buildInfo ?? readBuildInfo(),
  };
}

/** Every default, compiled: what `serve --help` and the README show. */
export const SERVE_DEFAULTS: CompiledServeOptions = compileServeOptions();

/** Whether `--db` names a PostgreSQL database rather than a SQLite file. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//.test(db);
}
