import { WorkerRegistryClient, type WorkerInfo } from "@sentinel/worker-registry-client";
import { CONNECTION_FLAGS, countFlag, FILTER_FLAGS, FILTER_OPTIONS, outputOf, parseFleetArgs, workerFilter, type FleetCommandIo } from "./fleet-args.js";
import { reportFailure } from "./fleet-errors.js";
import { formatLabels, workerSuccess } from "./fleet-commands.js";
import { table } from "./text-table.js";

/** Workers per DiscoverWorkers page unless --page-size says otherwise: the client's default. */
const DEFAULT_PAGE_SIZE = 1000;

export const LIST_USAGE = `usage: worker-registry list [--capability NAME]... [--health STATE]... [--selector SEL] [--version V]... [--json] [--address host:port]...

Prints every registered worker, whatever its health or state, as a table ordered by id
(that is, by registration time), with a count by health at the end. The list
is read a page at a time (DiscoverWorkers), so it is complete however large
the fleet. Needs an orchestrator or admin token when the registry has tokens.

${FILTER_FLAGS}
  --json             print {"address", "workers": [...]} instead of a table, dates as ISO strings
  --page-size N      workers per page, 1 to 10000 (default ${DEFAULT_PAGE_SIZE})
${CONNECTION_FLAGS}
  (the token, if the registry needs one, is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

/**
 * `worker-registry list`: every worker that matches the filter flags, all
 * health states unless `--health` narrows them. `argv` holds the arguments
 * after the command name.
 *
 * @returns 0 on success (an empty list included), 1 if the registry cannot
 *   be asked (the reason goes to stderr), 2 for a usage error. Never throws.
 */
export async function listCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, { usage: LIST_USAGE, positionals: { min: 0, max: 0 }, options: { ...FILTER_OPTIONS, "page-size": { type: "string" } } }, out, io.env ?? process.env);
  if (typeof parsed === "number") return parsed;
  const filter = workerFilter(parsed.values, LIST_USAGE, out);
  if (typeof filter === "number") return filter;
  const pageSize = countFlag(parsed.values, "page-size", DEFAULT_PAGE_SIZE, 1, 10_000, LIST_USAGE, out);
  if (typeof pageSize !== "number") return pageSize.error;
  const client = new WorkerRegistryClient({ ...parsed.clientOptions, discoverPageSize: pageSize });
  try {
    const workers = await client.discoverWorkers(filter);
    if (parsed.json) out.stdout(JSON.stringify({ address: client.address, workers }, null, 2));
    else out.stdout(renderWorkerList(client.address, workers, (io.now ?? Date.now)()));
    return 0;
  } catch (error) {
    return reportFailure(error, { addresses: parsed.addresses, address: client.address }, { operation: "read-fleet", doing: "reading the fleet" }, out);
  } finally {
    client.close();
  }
}

/** The workers as a table, then how many there are by health and which registry answered. `nowMs` dates the heartbeat ages. */
export function renderWorkerList(address: string, workers: readonly WorkerInfo[], nowMs: number): string {
  const byHealth = { healthy: 0, degraded: 0, unhealthy: 0 };
  for (const worker of workers) byHealth[worker.healthStatus]++;
  const outOfRotation = { cordoned: 0, draining: 0 };
  for (const worker of workers) if (worker.state !== "active") outOfRotation[worker.state]++;
  // Out of rotation only when some are: most of the time every worker is active.
  const states = outOfRotation.cordoned + outOfRotation.draining === 0 ? "" : `; ${outOfRotation.cordoned} cordoned, ${outOfRotation.draining} draining`;
  const summary =
    `${workers.length} worker${workers.length === 1 ? "" : "s"}: ${byHealth.healthy} healthy, ${byHealth.degraded} degraded, ` +
    `${byHealth.unhealthy} unhealthy${states} (from ${address})`;
  if (workers.length === 0) return `no workers match\n\n${summary}`;
  const rows = workers.map((w) => [
    w.nodeId,
    w.id,
    w.version || "-",
    w.state,
    w.healthStatus,
    `${w.currentTasks}/${w.maxConcurrentTasks}`,
    workerSuccess(w),
    ago(nowMs - w.lastHeartbeatAt.getTime()),
    w.capabilities.join(","),
    formatLabels(w.labels) || "-",
  ]);
  const lines = table(
    ["NODE", "WORKER", "VERSION", "STATE", "HEALTH", "TASKS", "SUCCESS", "LAST HEARTBEAT", "CAPABILITIES", "LABELS"],
    ["left", "left", "left", "left", "left", "right", "right", "left", "left", "left"],
    rows,
  );
  return `${lines}\n\n${summary}`;
}

/** An age in the largest two units that matter: "42s ago", "11m 5s ago", "2h 3m ago", "4d 1h ago". */
export function ago(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const units: Array<[string, number]> = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  const first = units.findIndex(([, size]) => seconds >= size);
  if (first < 0) return "0s ago";
  const [unit, size] = units[first]!;
  const rest = units[first + 1];
  const major = `${Math.floor(seconds / size)}${unit}`;
  const minor = rest === undefined ? 0 : Math.floor((seconds % size) / rest[1]);
  return minor === 0 ? `${major} ago` : `${major} ${minor}${rest![0]} ago`;
}
