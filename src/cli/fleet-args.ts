import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  parseAddressList,
  WORKER_HEALTH_STATES,
  type WorkerHealth,
  type WorkerQuery,
  type WorkerRegistryClientOptions,
} from "@sentinel/worker-registry-client";

/**
 * Where the fleet commands write and read their settings. Injected so tests
 * can capture output; the defaults are the process's own.
 */
export interface FleetCommandIo {
  /** Receives whole lines of normal output. Default: process.stdout. */
  stdout?: (text: string) => void;
  /** Receives error messages and usage. Default: process.stderr. */
  stderr?: (text: string) => void;
  /** Environment to read REGISTRY_ADDRESS (one address or a comma-separated list), REGISTRY_TLS_CA and REGISTRY_TOKEN from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Ends a command that runs until stopped (`watch`) cleanly. Default: none; the command line aborts it on SIGINT and SIGTERM. */
  signal?: AbortSignal;
  /** Wall-clock milliseconds, for heartbeat ages. Default: Date.now. */
  now?: () => number;
}

/** The output functions of a command, defaults applied. */
export interface Output {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const DEFAULT_ADDRESS = "localhost:50051";

/** The help lines of the flags every fleet command takes. */
export const CONNECTION_FLAGS = `  --address ADDR     registry to ask: host:port or a gRPC target; repeat it (or separate
                     addresses with commas) for several replicas, asked in that order, the
                     next one when one cannot be reached (default: $REGISTRY_ADDRESS, one
                     address or a comma-separated list, or ${DEFAULT_ADDRESS})
  --tls-ca FILE      use TLS, trusting this PEM CA (default: $REGISTRY_TLS_CA, else plaintext)`;

/** The help lines of the worker filter flags (`list`, `watch`, and the selections of `cordon`, `uncordon`, `drain`). */
export const FILTER_FLAGS = `  --capability NAME  only workers with this capability; repeat it for workers with all of them
  --health STATE     only workers in this health state: healthy, degraded or unhealthy; repeat
                     it (or separate states with commas) for any of several
  --selector SEL     only workers whose labels match this selector, as Kubernetes writes them:
                     zone=eu-1, tier!=spot, 'gpu in (a100,h100)', 'gpu notin (t4)', ssd,
                     '!preemptible'; commas mean AND
  --version VERSION  only workers of this version; repeat it for any of several`;

/** Flags of the worker filter, for {@link FleetCommandSpec.options}. A future filter is one more entry here and in {@link workerFilter}. */
export const FILTER_OPTIONS = {
  capability: { type: "string", multiple: true },
  health: { type: "string", multiple: true },
  selector: { type: "string" },
  version: { type: "string", multiple: true },
} as const;

/** The worker filter of {@link FILTER_OPTIONS}: the query `discoverWorkers` and `watchWorkers` take. */
export interface WorkerFilterFlags {
  capabilities?: string[];
  healthStatus?: WorkerHealth[];
  labelSelector?: string;
  versions?: string[];
}

type OptionSpec = { readonly type: "string" | "boolean"; readonly multiple?: boolean };

/** What a fleet command accepts, beyond the flags they all take (--json, --address, --tls-ca, --help). */
export interface FleetCommandSpec {
  readonly usage: string;
  /** How many arguments it takes besides flags. */
  readonly positionals: { readonly min: number; readonly max: number };
  readonly options?: Readonly<Record<string, OptionSpec>>;
}

/** A fleet command's parsed arguments. */
export interface FleetArgs {
  readonly json: boolean;
  /** The registry's addresses, in the order to ask them. */
  readonly addresses: string[];
  readonly positionals: string[];
  /** The command's own flags, as parsed. */
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly clientOptions: WorkerRegistryClientOptions;
}

export function outputOf(io: FleetCommandIo): Output {
  return {
    stdout: io.stdout ?? ((text) => process.stdout.write(`${text}\n`)),
    stderr: io.stderr ?? ((text) => process.stderr.write(`${text}\n`)),
  };
}

/** The parsed flags, or the exit code when there is nothing to run (help: 0, misuse: 2, the reason and the usage on stderr). */
export function parseFleetArgs(argv: readonly string[], spec: FleetCommandSpec, out: Output, env: NodeJS.ProcessEnv): FleetArgs | number {
  const { usage } = spec;
  let values: Record<string, string | boolean | string[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: {
        json: { type: "boolean" },
        address: { type: "string", multiple: true },
        "tls-ca": { type: "string" },
        help: { type: "boolean", short: "h" },
        ...spec.options,
      },
      strict: true,
      allowPositionals: spec.positionals.max > 0,
    }));
  } catch (error) {
    return usageError(`${error instanceof Error ? error.message : String(error)}`, usage, out);
  }
  if (values.help === true) {
    out.stdout(usage);
    return 0;
  }
  const { min, max } = spec.positionals;
  if (positionals.length < min || positionals.length > max || positionals.some((p) => p === "")) {
    const expected = min === max ? `${min} argument${min === 1 ? "" : "s"}` : `at least ${min} argument${min === 1 ? "" : "s"}`;
    return usageError(`expected ${expected}, got ${positionals.length}`, usage, out);
  }
  const given = values.address as string[] | undefined;
  if (given?.some((value) => parseAddressList(value).length === 0)) return usageError("--address must not be empty", usage, out);
  const listed = given?.flatMap(parseAddressList) ?? parseAddressList(env.REGISTRY_ADDRESS || DEFAULT_ADDRESS);
  if (listed.length === 0) return usageError(`REGISTRY_ADDRESS names no registry: ${JSON.stringify(env.REGISTRY_ADDRESS)}`, usage, out);
  // A replica named twice would only be asked twice.
  const addresses = [...new Set(listed)];
  const caFile = (values["tls-ca"] as string | undefined) ?? (env.REGISTRY_TLS_CA || undefined);
  let credentials: grpc.ChannelCredentials | undefined;
  if (caFile !== undefined) {
    try {
      credentials = grpc.credentials.createSsl(readFileSync(caFile));
    } catch (error) {
      return usageError(`--tls-ca: cannot read ${caFile}: ${(error as Error).message}`, usage, out);
    }
  }
  const token = env.REGISTRY_TOKEN || undefined;
  return {
    json: values.json === true,
    addresses,
    positionals,
    values,
    clientOptions: {
      // In the order given: an operator lists the nearest replica first, and the output says which one answered.
      addresses,
      addressOrder: "as-given",
      ...(credentials === undefined ? {} : { credentials }),
      ...(token === undefined ? {} : { token }),
    },
  };
}

/**
 * The worker filter of `--capability`, `--health`, `--selector` and
 * `--version`, or the exit code 2 (the reason and the usage on stderr) for a
 * health state that does not exist or an empty value. The selector's syntax
 * is the registry's to check (INVALID_ARGUMENT, naming the position).
 */
export function workerFilter(values: FleetArgs["values"], usage: string, out: Output): WorkerFilterFlags | number {
  const capabilities = (values.capability as string[] | undefined) ?? [];
  const health = ((values.health as string[] | undefined) ?? []).flatMap((value) => value.split(",")).map((value) => value.trim());
  const selector = (values.selector as string | undefined)?.trim() ?? "";
  const versions = (values.version as string[] | undefined) ?? [];
  const unknown = health.filter((state) => !(WORKER_HEALTH_STATES as readonly string[]).includes(state));
  if (unknown.length > 0) return usageError(`--health ${JSON.stringify(unknown[0])}: must be healthy, degraded or unhealthy`, usage, out);
  if (capabilities.some((c) => c === "")) return usageError("--capability must not be empty", usage, out);
  if (versions.some((v) => v === "")) return usageError("--version must not be empty", usage, out);
  const filter: WorkerQuery = {};
  if (capabilities.length > 0) filter.capabilities = capabilities;
  if (health.length > 0) filter.healthStatus = [...new Set(health)] as WorkerHealth[];
  if (selector !== "") filter.labelSelector = selector;
  if (versions.length > 0) filter.versions = [...new Set(versions)];
  return filter;
}

/** A whole number flag within `min..max`, its default when absent, or the exit code 2. */
export function countFlag(values: FleetArgs["values"], flag: string, fallback: number, min: number, max: number, usage: string, out: Output): number | { error: number } {
  const text = values[flag] as string | undefined;
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) return { error: usageError(`--${flag} ${JSON.stringify(text)}: must be a whole number from ${min} to ${max}`, usage, out) };
  return value;
}

function usageError(reason: string, usage: string, out: Output): number {
  out.stderr(`${reason}\n\n${usage}`);
  return 2;
}
