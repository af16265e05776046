import { parseArgs } from "node:util";
import type { LevelWithSilent } from "pino";
import type { RegistryOptions } from "../domain/registry-options.js";
import { startRegistryServer } from "../app.js";
import { SERVE_DEFAULTS, type CompiledServeOptions, type ServeOptions } from "../serve-options.js";
import { LOG_LEVELS } from "../log.js";
import { formatDuration, parseDuration } from "./duration.js";

/** One `serve` setting: its flag, its environment variable, and what it sets. */
interface Setting {
  readonly flag: string;
  readonly description: string;
  /**
   * The default, written as the flag takes it, read from the compiled
   * defaults (never written twice); absent when the default is no value.
   */
  readonly default?: (defaults: CompiledServeOptions) => string;
  /** How the default comes about, or what no value means. */
  readonly note?: string;
  /** A switch takes no value on the command line ("1"/"true" or "0"/"false" in the environment). */
  readonly switch?: true;
  readonly apply: (options: ServeOptions, value: string) => void;
}

const registry = (options: ServeOptions) => (options.registry ??= {});
/** The settings build the options one field at a time. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const registryLimits = (options: ServeOptions) => (registry(options).limits ??= {}) as Mutable<NonNullable<RegistryOptions["limits"]>>;
const security = (options: ServeOptions) => (options.security ??= {});
const limits = (options: ServeOptions) => (options.limits ??= {}) as Mutable<NonNullable<ServeOptions["limits"]>>;
const keepalive = (options: ServeOptions) => (options.keepalive ??= {}) as Mutable<NonNullable<ServeOptions["keepalive"]>>;
const replication = (options: ServeOptions) => (options.replication ??= {});

/** Every `serve` setting. The environment variable is REGISTRY_ + the flag in upper snake case. */
export const SERVE_SETTINGS: readonly Setting[] = [
  { flag: "host", description: "interface to bind", default: (d) => d.host, apply: (o, v) => (o.host = v) },
  { flag: "port", description: "port to bind (0 picks a free one)", default: (d) => String(d.port), apply: (o, v) => (o.port = parsePort(v)) },
  {
    flag: "metrics-port",
    description: "port of the Prometheus endpoint, GET /metrics over HTTP (0 picks a free one)",
    note: "none: no endpoint",
    apply: (o, v) => (o.metricsPort = parsePort(v)),
  },
  {
    flag: "db",
    description: "SQLite database file, or postgres://USER@HOST:PORT/DB shared by replicas",
    default: (d) => d.dbPath,
    apply: (o, v) => (o.dbPath = v),
  },
  {
    flag: "sync",
    description: "durability: normal (survives kill -9) or full (survives power loss)",
    default: (d) => d.synchronous,
    apply: (o, v) => (o.synchronous = oneOf("sync", v, ["normal", "full"] as const)),
  },
  {
    flag: "healthy-threshold",
    description: "heartbeat age until which a worker is healthy",
    default: (d) => formatDuration(d.registry.healthyThresholdMs),
    apply: (o, v) => (registry(o).healthyThresholdMs = parseDuration(v)),
  },
  {
    flag: "degraded-threshold",
    description: "heartbeat age until which a worker is degraded; unhealthy after",
    default: (d) => formatDuration(d.registry.degradedThresholdMs),
    apply: (o, v) => (registry(o).degradedThresholdMs = parseDuration(v)),
  },
  {
    flag: "worker-ttl",
    description: "heartbeat age after which cleanup removes a worker (>= degraded threshold)",
    default: (d) => formatDuration(d.registry.workerTtlMs),
    apply: (o, v) => (registry(o).workerTtlMs = parseDuration(v)),
  },
  { flag: "cleanup-interval", description: "how often cleanup runs", default: (d) => formatDuration(d.registry.cleanupIntervalMs), apply: (o, v) => (registry(o).cleanupIntervalMs = parseDuration(v)) },
  {
    flag: "heartbeat-interval",
    description: "interval suggested to heartbeat streams",
    default: (d) => formatDuration(d.registry.heartbeatIntervalMs), note: "half the healthy threshold",
    apply: (o, v) => (registry(o).heartbeatIntervalMs = parseDuration(v)),
  },
  {
    flag: "reservation-ttl",
    description: "how long an AcquireWorker slot is held before it expires",
    default: (d) => formatDuration(d.registry.reservationTtlMs),
    apply: (o, v) => (registry(o).reservationTtlMs = parseDuration(v)),
  },
  {
    flag: "event-ttl",
    description: "how long the event log keeps events for watchers to resume from",
    default: (d) => formatDuration(d.registry.eventTtlMs),
    apply: (o, v) => (registry(o).eventTtlMs = parseDuration(v)),
  },
  {
    flag: "watch-buffer",
    description: "events queued for a watcher that is not reading before it is dropped",
    default: (d) => String(d.registry.watchBufferEvents),
    apply: (o, v) => (registry(o).watchBufferEvents = parseCount("watch-buffer", v)),
  },
  {
    flag: "max-eviction-share",
    description: "most of the fleet one cleanup pass may remove, in (0, 1]",
    default: (d) => String(d.registry.maxEvictionShare),
    apply: (o, v) => (registry(o).maxEvictionShare = parseShare("max-eviction-share", v)),
  },
  {
    flag: "eviction-collapse-ratio",
    description: "heartbeat intake below this share of its recent level pauses eviction, in (0, 1]",
    default: (d) => String(d.registry.evictionCollapseRatio),
    apply: (o, v) => (registry(o).evictionCollapseRatio = parseShare("eviction-collapse-ratio", v)),
  },
  {
    flag: "stall-threshold",
    description: "a gap this long between the registry's 1s ticks means it was paused: deadlines are extended, eviction holds",
    default: (d) => formatDuration(d.registry.stallThresholdMs),
    apply: (o, v) => (registry(o).stallThresholdMs = parseDuration(v)),
  },
  {
    flag: "eviction-max-pause",
    description: "longest a pause of eviction lasts: silence that outlasts it is believed and eviction resumes",
    default: (d) => formatDuration(d.registry.evictionMaxPauseMs), note: "three worker TTLs",
    apply: (o, v) => (registry(o).evictionMaxPauseMs = parseDuration(v)),
  },
  {
    flag: "replica-id",
    description: "this process's name among the replicas of a PostgreSQL store",
    note: "hostname:pid",
    apply: (o, v) => (replication(o).replicaId = v),
  },
  {
    flag: "lease-ttl",
    description: "how long the leader's lease lasts unless renewed: a dead leader is replaced within about this",
    default: (d) => formatDuration(d.replication.leaseTtlMs),
    apply: (o, v) => (replication(o).leaseTtlMs = parseDuration(v)),
  },
  {
    flag: "keepalive-time",
    description: "ping each connection this often to find half-open ones",
    default: (d) => formatDuration(d.keepalive.timeMs),
    apply: (o, v) => (keepalive(o).timeMs = parseDuration(v)),
  },
  {
    flag: "keepalive-timeout",
    description: "drop a connection whose ping is not answered within this",
    default: (d) => formatDuration(d.keepalive.timeoutMs),
    apply: (o, v) => (keepalive(o).timeoutMs = parseDuration(v)),
  },
  { flag: "tls-cert", description: "PEM certificate chain: serve TLS", note: "none: plaintext", apply: (o, v) => (security(o).tlsCertFile = v) },
  { flag: "tls-key", description: "PEM private key of --tls-cert", note: "none", apply: (o, v) => (security(o).tlsKeyFile = v) },
  {
    flag: "tls-client-ca",
    description: "PEM CA: require client certificates signed by it (mutual TLS)",
    note: "none",
    apply: (o, v) => (security(o).tlsClientCaFile = v),
  },
  {
    flag: "tokens-file",
    description: "bearer tokens, one 'ROLE TOKEN' per line (reloaded on SIGHUP): turns authentication on",
    note: "none: no authentication",
    apply: (o, v) => (security(o).tokensFile = v),
  },
  {
    flag: "insecure",
    description: "allow plaintext without tokens on a non-loopback address",
    default: (d) => onOff(d.security.insecure),
    switch: true,
    apply: (o, v) => (security(o).insecure = parseSwitch("insecure", v)),
  },
  {
    flag: "auth-health",
    description: "require a token for grpc.health.v1",
    default: (d) => onOff(d.security.authenticateHealth), note: "open to probes",
    switch: true,
    apply: (o, v) => (security(o).authenticateHealth = parseSwitch("auth-health", v)),
  },
  {
    flag: "auth-reflection",
    description: "require a token for server reflection",
    default: (d) => onOff(d.security.authenticateReflection), note: "open",
    switch: true,
    apply: (o, v) => (security(o).authenticateReflection = parseSwitch("auth-reflection", v)),
  },
  { flag: "max-workers", description: "most workers registered at once", default: (d) => String(d.registry.limits.maxWorkers), apply: (o, v) => (registryLimits(o).maxWorkers = parseCount("max-workers", v)) },
  {
    flag: "max-streams-per-connection",
    description: "open streams on one connection (heartbeat, watch, health Watch, reflection)",
    default: (d) => String(d.limits.maxStreamsPerConnection),
    apply: (o, v) => (limits(o).maxStreamsPerConnection = parseCount("max-streams-per-connection", v)),
  },
  { flag: "max-streams", description: "open streams in total (heartbeat, watch, health Watch, reflection)", default: (d) => String(d.limits.maxStreams), apply: (o, v) => (limits(o).maxStreams = parseCount("max-streams", v)) },
  {
    flag: "max-stream-share",
    description: "most of --max-streams one principal (token, worker, or peer address without a token) may hold, in (0, 1]",
    default: (d) => String(d.limits.maxStreamShare),
    apply: (o, v) => (limits(o).maxStreamShare = parseShare("max-stream-share", v)),
  },
  {
    flag: "first-heartbeat-timeout",
    description: "end a heartbeat stream that sends no first heartbeat within this",
    default: (d) => formatDuration(d.limits.firstHeartbeatTimeoutMs),
    apply: (o, v) => (limits(o).firstHeartbeatTimeoutMs = parseDuration(v)),
  },
  { flag: "max-watchers", description: "open WatchWorkers streams", default: (d) => String(d.limits.maxWatchers), apply: (o, v) => (limits(o).maxWatchers = parseCount("max-watchers", v)) },
  {
    flag: "max-registrations-per-second",
    description: "RegisterWorker calls per second from one peer address",
    default: (d) => String(d.limits.registrationsPerSecondPerPeer),
    apply: (o, v) => (limits(o).registrationsPerSecondPerPeer = parseCount("max-registrations-per-second", v)),
  },
  {
    flag: "max-message-bytes",
    description: "largest request message",
    default: (d) => String(d.limits.maxMessageBytes),
    apply: (o, v) => (limits(o).maxMessageBytes = parseCount("max-message-bytes", v)),
  },
  {
    flag: "max-capabilities",
    description: "most capabilities per worker",
    default: (d) => String(d.registry.limits.maxCapabilities),
    apply: (o, v) => (registryLimits(o).maxCapabilities = parseCount("max-capabilities", v)),
  },
  {
    flag: "max-capability-length",
    description: "longest capability, in characters",
    default: (d) => String(d.registry.limits.maxCapabilityLength),
    apply: (o, v) => (registryLimits(o).maxCapabilityLength = parseCount("max-capability-length", v)),
  },
  {
    flag: "max-node-id-length",
    description: "longest node_id, in characters",
    default: (d) => String(d.registry.limits.maxNodeIdLength),
    apply: (o, v) => (registryLimits(o).maxNodeIdLength = parseCount("max-node-id-length", v)),
  },
  {
    flag: "log-level",
    description: `log level: ${LOG_LEVELS.join(", ")}`,
    default: (d) => d.logLevel,
    apply: (o, v) => (o.logLevel = oneOf("log-level", v, LOG_LEVELS)),
  },
];

/** The default as `serve --help` and the README show it: the compiled default, and how it comes about. */
export function defaultText(setting: Setting): string {
  const value = setting.default?.(SERVE_DEFAULTS);
  if (value === undefined) return setting.note ?? "none";
  return setting.note === undefined ? value : `${value} (${setting.note})`;
}

/** REGISTRY_HEALTHY_THRESHOLD for healthy-threshold. */
export function envName(flag: string): string {
  return `REGISTRY_${flag.replaceAll("-", "_").toUpperCase()}`;
}

/**
 * Builds serve options from environment variables, then flags (a flag wins).
 * @throws Error naming the flag or variable and what is wrong with it.
 */
export function parseServeArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ServeOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: Object.fromEntries(SERVE_SETTINGS.map((s) => [s.flag, { type: s.switch ? ("boolean" as const) : ("string" as const) }])),
    strict: true,
    allowPositionals: false,
  });
  const options: ServeOptions = {};
  for (const setting of SERVE_SETTINGS) {
    const fromEnv = env[envName(setting.flag)];
    const fromFlag = values[setting.flag];
    const [value, source] = fromFlag !== undefined ? [fromFlag, `--${setting.flag}`] : [fromEnv, envName(setting.flag)];
    if (value === undefined || value === "") continue;
    try {
      setting.apply(options, String(value));
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
  return options;
}

/** Help text for `serve`. */
export function serveUsage(): string {
  const rows = SERVE_SETTINGS.map((s) => `  --${s.flag.padEnd(29)} ${envName(s.flag).padEnd(39)} ${s.description} (default ${defaultText(s)})`);
  return ["usage: worker-registry serve [flags]", "", `  ${"flag".padEnd(31)} environment variable`, ...rows].join("\n");
}

/**
 * Runs the server until SIGTERM or SIGINT, then shuts down gracefully:
 * stops accepting calls, ends heartbeat streams with UNAVAILABLE, writes
 * pending heartbeats and closes the database.
 */
export async function serveCommand(argv: readonly string[]): Promise<number> {
  const options = parseServeArgs(argv, process.env);
  // Listening before the server starts: a supervisor's SIGTERM that arrives as the server starts (it logs "registry
  // serving" before this function gets it back) must shut it down gracefully, not kill it half-way.
  let stopRequested = false;
  let requestStop: () => void = () => (stopRequested = true);
  const stop = () => {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    requestStop();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  let server: Awaited<ReturnType<typeof startRegistryServer>>;
  try {
    server = await startRegistryServer(options);
  } catch (error) {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    throw error;
  }
  const reload = () => {
    try {
      server.reloadTokens();
    } catch (error) {
      // The old tokens stay in force: a typo in the file must not lock everyone out.
      console.error(`worker-registry: tokens not reloaded: ${(error as Error).message}`);
    }
  };
  process.on("SIGHUP", reload);
  if (!stopRequested) await new Promise<void>((resolve) => (requestStop = resolve));
  process.off("SIGHUP", reload);
  await server.close();
  return 0;
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new Error(`invalid port ${JSON.stringify(text)}: must be 0 to 65535`);
  return port;
}

function parseShare(name: string, text: string): number {
  const share = Number(text);
  if (!/^\d*\.?\d+$/.test(text) || !(share > 0 && share <= 1)) throw new Error(`invalid ${name} ${JSON.stringify(text)}: must be a number in (0, 1]`);
  return share;
}

function parseCount(name: string, text: string): number {
  const count = Number(text);
  if (!/^\d+$/.test(text) || count < 1) throw new Error(`invalid ${name} ${JSON.stringify(text)}: must be a whole number >= 1`);
  return count;
}

function parseSwitch(name: string, text: string): boolean {
  if (text === "true" || text === "1" || text === "on") return true;
  if (text === "false" || text === "0" || text === "off") return false;
  throw new Error(`invalid ${name} ${JSON.stringify(text)}: must be true, false, on, off, 1 or 0`);
}

function onOff(value: boolean): string {
  return value ? "on" : "off";
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`invalid ${name} ${JSON.stringify(value)}: must be one of ${allowed.join(", ")}`);
  return value as T;
}
