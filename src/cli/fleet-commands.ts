import {
  WorkerRegistryClient,
  type RankedWorkerInfo,
  type RegistryStats,
  type ReplicaInfo,
  type WorkerInfo,
} from "@sentinel/worker-registry-client";
import { CONNECTION_FLAGS, outputOf, parseFleetArgs, type FleetCommandIo } from "./fleet-args.js";
import { reportFailure, type CommandAccess } from "./fleet-errors.js";
import { labelled, percent, table } from "./text-table.js";

export type { FleetCommandIo } from "./fleet-args.js";

const TOP_PERFORMERS = 5;

const READ_FLEET: CommandAccess = { operation: "read-fleet", doing: "reading the fleet" };
const READ_WORKER: CommandAccess = { operation: "read-worker", doing: "reading a worker" };
const ADMINISTER: CommandAccess = { operation: "administer", doing: "resuming eviction" };

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
  const parsed = parseFleetArgs(argv, { usage: WORKERS_USAGE, positionals: { min: 0, max: 0 } }, out, io.env ?? process.env);
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
    return reportFailure(error, { addresses: parsed.addresses, address: client.address }, READ_FLEET, out);
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
  const parsed = parseFleetArgs(argv, { usage: WORKER_USAGE, positionals: { min: 1, max: 1 } }, out, io.env ?? process.env);
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
    return reportFailure(error, { addresses: parsed.addresses, address: client.address }, READ_WORKER, out);
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
  const parsed = parseFleetArgs(argv, { usage: RESUME_EVICTION_USAGE, positionals: { min: 0, max: 0 } }, out, io.env ?? process.env);
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
    return reportFailure(error, { addresses: parsed.addresses, address: client.address }, ADMINISTER, out);
  } finally {
    client.close();
  }
}

/** The dashboard as aligned text. */
export function renderDashboard(address: string, stats: RegistryStats, topPerformers: readonly RankedWorkerInfo[]): string {
  const completions = stats.tasksCompleted + stats.tasksFailed;
  const summary = labelled([
    ["Registry", `${address} (server time ${stats.serverTime.toISOString()})`],
    ["Replica", replicaLine(stats.replica)],
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

/**
 * The process that answered among the replicas of its store: its name, who
 * leads, and how far it trails ("replica-b (PostgreSQL; leader replica-a;
 * replication lag 4 ms)"). On SQLite there is one process, and no lag.
 */
export function replicaLine(replica: ReplicaInfo): string {
  if (replica.store === "sqlite") return `${replica.replicaId} (SQLite, one process)`;
  const role = replica.leading ? "leading" : replica.leaderId === "" ? "no leader at the moment" : `leader ${replica.leaderId}`;
  const writable = replica.storeWritable ? "" : "; database unreachable: writes refused";
  return `${replica.replicaId} (PostgreSQL; ${role}; replication lag ${round(replica.replicationLagMs)} ms${writable})`;
}

/** One worker as aligned text. */
export function renderWorker(worker: WorkerInfo): string {
  const { tasksCompleted, tasksFailedCount, averageTaskDuration } = worker.metrics;
  return labelled([
    ["Worker", worker.id],
    ["Node", worker.nodeId],
    ["Version", worker.version === "" ? "(none)" : worker.version],
    ["Labels", formatLabels(worker.labels) || "(none)"],
    ["Capabilities", worker.capabilities.join(", ")],
    ["State", workerState(worker)],
    ["Health", worker.healthStatus],
    ["Tasks", `${worker.currentTasks}/${worker.maxConcurrentTasks} (${worker.availableCapacity} available)`],
    ["Success rate", `${workerSuccess(worker)} (${tasksCompleted} completed, ${tasksFailedCount} failed)`],
    ["Avg duration", tasksCompleted + tasksFailedCount === 0 ? "n/a" : `${round(averageTaskDuration)}ms`],
    ["Registered", worker.registeredAt.toISOString()],
    ["Last heartbeat", worker.lastHeartbeatAt.toISOString()],
  ]);
}

/**
 * Labels sorted by key, written as a selector that matches them:
 * `tier=spot,zone=eu-1` (an empty value as `key=`); "" for none.
 */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((key) => `${key}=${labels[key]}`)
    .join(",");
}

/** The state in words, and for a draining worker when it is removed at the latest. */
function workerState(worker: WorkerInfo): string {
  switch (worker.state) {
    case "active":
      return "active (in rotation)";
    case "cordoned":
      return "cordoned (out of rotation until uncordoned)";
    case "draining":
      return `draining (removed once idle${worker.drainDeadline === undefined ? "" : `, at the latest ${worker.drainDeadline.toISOString()}`})`;
  }
}

/** Before its first completion a worker's rate is the server's prior, not a measurement. */
export function workerSuccess(worker: WorkerInfo): string {
  return worker.metrics.tasksCompleted + worker.metrics.tasksFailedCount === 0 ? "n/a" : percent(worker.successRate);
}

function round(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
