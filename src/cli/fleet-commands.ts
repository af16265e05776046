import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  parseAddressList,
  RegistryClientError,
  WorkerRegistryClient,
  type RankedWorkerInfo,
  type RegistryStats,
  type WorkerInfo,
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
}

const DEFAULT_ADDRESS = "localhost:50051";
const TOP_PERFORMERS = 5;

/** The help lines of the flags every fleet command takes. */
const CONNECTION_FLAGS = `  --address ADDR     registry to ask: host:port or a gRPC target; repeat it (or separate
                     addresses with commas) for several replicas, asked in that order, the
                     next one when one cannot be reached (default: $REGISTRY_ADDRESS, one
                     address or a comma-separated list, or ${DEFAULT_ADDRESS})
  --tls-ca FILE      use TLS, trusting this PEM CA (default: $REGISTRY_TLS_CA, else plaintext)`;

const WORKERS_USAGE = `usage: worker-registry workers [--json] [--address host:port]...

Prints the fleet dashboard: workers by health, capacity, success rate and the
top ${TOP_PERFORMERS} workers by load-balancing priority, from the replica that answered.

  --json             print JSON instead of a table
${CONNECTION_FLAGS}
  (the token, if the registry needs one, is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

const WORKER_USAGE = `usage: worker-registry worker <id> [--json] [--address host:port]...

Prints one worker.

  --json             print JSON instead of a table
${CONNECTION_FLAGS}
  (the token, if the registry needs one, is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

/**
 * `worker-registry workers`: the monitoring dashboard of the usage guide as a
 * command. `argv` holds the arguments after the command name.
 *
 * Text output lists counts by health, capacity used/total with what is
 * available, the overall success rate ("n/a" before any completion) and a
 * table of the top 5 workers by priority (healthy before degraded, as the
 * registry ranks them). `--json` prints `{ address, stats, topPerformers }`
 * with dates as ISO strings; `address` is the one that answered.
 *
 * @returns 0 on success, 1 if the registry cannot be asked (the reason goes to
 *   stderr), 2 for a usage error. Never throws.
 */
export async function workersCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, 0, WORKERS_USAGE, out, io.env ?? process.env);
  if (typeof parsed === "number") {
    return parsed;
  }
  const client = new WorkerRegistryClient(parsed.clientOptions);
  try {
    const [stats, ranked] = await Promise.all([
      client.getRegistryStats(),
      client.getWorkersForLoadBalancing({}, { limit: TOP_PERFORMERS }),
    ]);
    const topPerformers = ranked.slice(0, TOP_PERFORMERS);
    if (parsed.json) {
      out.stdout(JSON.stringify({ address: client.address, stats, topPerformers }, null, 2));
    } else {
      out.stdout(renderDashboard(client.address, stats, topPerformers));
    }
    return 0;
  } catch (error) {
    return reportFailure(error, parsed.addresses, out);
  } finally {
    client.close();
  }
}

/**
 * `worker-registry worker <id>`: prints one worker. `argv` holds the
 * arguments after the command name. `--json` prints the worker as the client
 * returns it, dates as ISO strings.
 *
 * @returns 0 on success, 1 if the worker is unknown or the registry cannot be
 *   asked (the reason goes to stderr), 2 for a usage error. Never throws.
 */
export async function workerCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, 1, WORKER_USAGE, out, io.env ?? process.env);
  if (typeof parsed === "number") {
    return parsed;
  }
  const workerId = parsed.positionals[0] ?? "";
  const client = new WorkerRegistryClient(parsed.clientOptions);
  try {
    const worker = await client.getWorker(workerId);
    out.stdout(parsed.json ? JSON.stringify(worker, null, 2) : renderWorker(worker));
    return 0;
  } catch (error) {
    return reportFailure(error, parsed.addresses, out);
  } finally {
    client.close();
  }
}

const RESUME_EVICTION_USAGE = `usage: worker-registry resume-eviction [--json] [--address host:port]...

Ends a pause of eviction now, so that cleanup removes expired workers again (at
most its per-pass share of the fleet). Use it when the whole fleet really went
away, rather than waiting for --eviction-max-pause. Needs an admin token.

  --json             print JSON instead of text
${CONNECTION_FLAGS}
  (the token is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

/**
 * `worker-registry resume-eviction`: ends a pause of eviction (admin).
 *
 * @returns 0 on success (whether or not eviction was paused), 1 if the
 *   registry refused or cannot be asked, 2 for a usage error. Never throws.
 */
export async function resumeEvictionCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, 0, RESUME_EVICTION_USAGE, out, io.env ?? process.env);
  if (typeof parsed === "number") {
    return parsed;
  }
  const client = new WorkerRegistryClient(parsed.clientOptions);
  try {
    const { wasPaused, eviction } = await client.resumeEviction();
    if (parsed.json) {
      out.stdout(JSON.stringify({ address: client.address, wasPaused, eviction }, null, 2));
    } else {
      out.stdout(wasPaused ? "eviction resumed: cleanup removes expired workers again" : "eviction was not paused; nothing changed");
    }
    return 0;
  } catch (error) {
    return reportFailure(error, parsed.addresses, out);
  } finally {
    client.close();
  }
}

interface FleetArgs {
  json: boolean;
  /** The registry's addresses, in the order to ask them. */
  addresses: string[];
  positionals: string[];
  clientOptions: WorkerRegistryClientOptions;
}

interface Output {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

function outputOf(io: FleetCommandIo): Output {
  return {
    stdout: io.stdout ?? ((text) => process.stdout.write(`${text}\n`)),
    stderr: io.stderr ?? ((text) => process.stderr.write(`${text}\n`)),
  };
}

/** The parsed flags, or the exit code when there is nothing to run (help: 0, misuse: 2). */
function parseFleetArgs(argv: string[], positionalCount: number, usage: string, out: Output, env: NodeJS.ProcessEnv): FleetArgs | number {
  let values: { json?: boolean; address?: string[]; "tls-ca"?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean" },
        address: { type: "string", multiple: true },
        "tls-ca": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: positionalCount > 0,
    }));
  } catch (error) {
    out.stderr(`${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
    return 2;
  }
  if (values.help === true) {
    out.stdout(usage);
    return 0;
  }
  if (positionals.length !== positionalCount || positionals.some((p) => p === "")) {
    out.stderr(`expected ${positionalCount} argument${positionalCount === 1 ? "" : "s"}, got ${positionals.length}\n\n${usage}`);
    return 2;
  }
  if (values.address?.some((value) => parseAddressList(value).length === 0)) {
    out.stderr(`--address must not be empty\n\n${usage}`);
    return 2;
  }
  const listed = values.address?.flatMap(parseAddressList) ?? parseAddressList(env.REGISTRY_ADDRESS || DEFAULT_ADDRESS);
  if (listed.length === 0) {
    out.stderr(`REGISTRY_ADDRESS names no registry: ${JSON.stringify(env.REGISTRY_ADDRESS)}\n\n${usage}`);
    return 2;
  }
  // A replica named twice would only be asked twice.
  const addresses = [...new Set(listed)];
  const caFile = values["tls-ca"] ?? (env.REGISTRY_TLS_CA || undefined);
  let credentials: grpc.ChannelCredentials | undefined;
  if (caFile !== undefined) {
    try {
      credentials = grpc.credentials.createSsl(readFileSync(caFile));
    } catch (error) {
      out.stderr(`--tls-ca: cannot read ${caFile}: ${(error as Error).message}\n\n${usage}`);
      return 2;
    }
  }
  const token = env.REGISTRY_TOKEN || undefined;
  return {
    json: values.json === true,
    addresses,
    positionals,
    clientOptions: {
      // In the order given: an operator lists the nearest replica first, and the output says which one answered.
      addresses,
      addressOrder: "as-given",
      ...(credentials === undefined ? {} : { credentials }),
      ...(token === undefined ? {} : { token }),
    },
  };
}

function reportFailure(error: unknown, addresses: readonly string[], out: Output): number {
  if (error instanceof RegistryClientError && error.codeName === "UNAVAILABLE") {
    out.stderr(`worker-registry: cannot reach the registry at ${addresses.join(", ")}: ${error.message}`);
  } else if (error instanceof RegistryClientError) {
    out.stderr(`worker-registry: ${error.message}`);
  } else {
    out.stderr(`worker-registry: ${error instanceof Error ? error.message : String(error)}`);
  }
  return 1;
}

/** The dashboard as aligned text. */
export function renderDashboard(address: string, stats: RegistryStats, topPerformers: readonly RankedWorkerInfo[]): string {
  const completions = stats.tasksCompleted + stats.tasksFailed;
  const summary = labelled([
    ["Registry", `${address} (server time ${stats.serverTime.toISOString()})`],
    ["Workers", String(stats.totalWorkers)],
    ["  healthy", String(stats.healthyWorkers)],
    ["  degraded", String(stats.degradedWorkers)],
    ["  unhealthy", String(stats.unhealthyWorkers)],
    ["Capacity", `${stats.usedCapacity}/${stats.totalCapacity} used (${stats.availableCapacity} available)`],
    ["Tasks", `${stats.tasksCompleted} completed, ${stats.tasksFailed} failed`],
    ["Success rate", completions === 0 ? "n/a (no completions yet)" : percent(stats.successRate)],
  ]);
  const top =
    topPerformers.length === 0
      ? "  (no healthy or degraded workers)"
      : table(
          ["#", "NODE", "WORKER", "HEALTH", "TASKS", "SUCCESS", "PRIORITY"],
          ["right", "left", "left", "left", "right", "right", "right"],
          topPerformers.map((w, i) => [
            String(i + 1),
            w.nodeId,
            w.id,
            w.healthStatus,
            `${w.currentTasks}/${w.maxConcurrentTasks}`,
            workerSuccess(w),
            w.priority.toFixed(3),
          ]),
        )
          .split("\n")
          .map((line) => `  ${line}`)
          .join("\n");
  return `${summary}\n\nTop performers (by priority)\n${top}`;
}

/** One worker as aligned text. */
export function renderWorker(worker: WorkerInfo): string {
  const { tasksCompleted, tasksFailedCount, averageTaskDuration } = worker.metrics;
  return labelled([
    ["Worker", worker.id],
    ["Node", worker.nodeId],
    ["Capabilities", worker.capabilities.join(", ")],
    ["Health", worker.healthStatus],
    ["Tasks", `${worker.currentTasks}/${worker.maxConcurrentTasks} (${worker.availableCapacity} available)`],
    ["Success rate", `${workerSuccess(worker)} (${tasksCompleted} completed, ${tasksFailedCount} failed)`],
    ["Avg duration", tasksCompleted + tasksFailedCount === 0 ? "n/a" : `${round(averageTaskDuration)}ms`],
    ["Registered", worker.registeredAt.toISOString()],
    ["Last heartbeat", worker.lastHeartbeatAt.toISOString()],
  ]);
}

/** Before its first completion a worker's rate is the server's prior, not a measurement. */
function workerSuccess(worker: WorkerInfo): string {
  return worker.metrics.tasksCompleted + worker.metrics.tasksFailedCount === 0 ? "n/a" : percent(worker.successRate);
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

function round(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function labelled(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n");
}

function table(headers: readonly string[], align: readonly ("left" | "right")[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => {
        const width = widths[column] ?? cell.length;
        return align[column] === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}
