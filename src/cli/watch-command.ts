import {
  WorkerRegistryClient,
  type WatchReconnectingEvent,
  type WorkerChangeEvent,
  type WorkerWatchEvent,
} from "@sentinel/worker-registry-client";
import { CONNECTION_FLAGS, countFlag, FILTER_FLAGS, FILTER_OPTIONS, outputOf, parseFleetArgs, type FleetCommandIo, workerFilter } from "./fleet-args.js";
import { describeFailure, reportFailure, type CommandAccess } from "./fleet-errors.js";

const READ_FLEET: CommandAccess = { operation: "read-fleet", doing: "reading the fleet" };

/**
 * Channel settings for a watch that may run for days: keepalive pings notice a
 * connection that died without a word, and grpc-js's reconnect backoff (up to
 * 120 s by default) must not hold a resume back longer than the watch's own.
 */
const WATCH_CHANNEL = { "grpc.keepalive_time_ms": 30_000, "grpc.keepalive_timeout_ms": 10_000, "grpc.max_reconnect_backoff_ms": 5_000 };

export const WATCH_USAGE = `usage: worker-registry watch [--capability NAME]... [--health STATE]... [--selector SEL] [--version V]... [--from REVISION] [--json] [--address host:port]...

Prints each change to the matching workers as it happens, one line per event,
in revision order, until Ctrl-C (or SIGTERM), then exits 0. After a registry
restart or a lost connection it resumes by itself from the revision after the
last one printed (the next replica with several --address), so no change is
printed twice or missed; if the registry no longer keeps that revision, it
prints one "resync" line and goes on. What happens to the connection is told
on stderr. Needs an orchestrator or admin token when the registry has tokens.

${FILTER_FLAGS}
  --from REVISION    start at this revision (e.g. a listing's revision + 1) instead of now
  --json             print one JSON object per event (JSON lines), dates as ISO strings
${CONNECTION_FLAGS}
  (the token, if the registry needs one, is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

/**
 * `worker-registry watch`: follows the registry's event stream and prints it
 * live. `argv` holds the arguments after the command name; `io.signal` ends
 * the watch (the command line aborts it on SIGINT and SIGTERM).
 *
 * @returns 0 when stopped by the signal, 1 for a failure a retry would not
 *   cure (a refused token, a bad filter; the reason goes to stderr), 2 for a
 *   usage error. Never throws.
 */
export async function watchCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, { usage: WATCH_USAGE, positionals: { min: 0, max: 0 }, options: { ...FILTER_OPTIONS, from: { type: "string" } } }, out, io.env ?? process.env);
  if (typeof parsed === "number") return parsed;
  const filter = workerFilter(parsed.values, WATCH_USAGE, out);
  if (typeof filter === "number") return filter;
  const from = countFlag(parsed.values, "from", 0, 1, Number.MAX_SAFE_INTEGER, WATCH_USAGE, out);
  if (typeof from !== "number") return from.error;
  const client = new WorkerRegistryClient({ ...parsed.clientOptions, channelOptions: WATCH_CHANNEL });
  const signal = io.signal ?? new AbortController().signal;
  out.stderr(`watching ${parsed.addresses.join(", ")}${from === 0 ? " from now" : ` from revision ${from}`}; Ctrl-C stops`);
  try {
    const events = client.watchWorkers(filter, {
      signal,
      ...(from === 0 ? {} : { startRevision: from }),
      onReconnecting: (event) => out.stderr(`worker-registry: ${reconnecting(event, parsed.addresses, client.address)}`),
    });
    for await (const event of events) out.stdout(parsed.json ? JSON.stringify(event) : renderEvent(event));
    return 0;
  } catch (error) {
    return reportFailure(error, { addresses: parsed.addresses, address: client.address }, READ_FLEET, out);
  } finally {
    client.close();
  }
}

/**
 * One event as a line: time, revision, type, node, worker, health and tasks,
 * and what changed for health, state and removals. The short columns are padded to
 * a width most values fit, so lines mostly align as they stream by.
 */
export function renderEvent(event: WorkerWatchEvent): string {
  if (event.type === "resync") {
    return `#${event.revision} resync: the registry no longer had the events since the last one printed; ${event.workers.length} matching workers listed again`;
  }
  const { worker } = event;
  return [
    event.occurredAt.toISOString(),
    `#${event.revision}`.padEnd(6),
    event.type.padEnd(18),
    worker.nodeId.padEnd(12),
    worker.id,
    health(event),
    `tasks ${worker.currentTasks}/${worker.maxConcurrentTasks}`,
    ...(event.previousState === undefined ? [] : [`${event.previousState} -> ${worker.state}`]),
    ...(event.removalReason === undefined ? [] : [`(${event.removalReason})`]),
  ].join("  ");
}

function health(event: WorkerChangeEvent): string {
  return event.previousHealth === undefined ? event.worker.healthStatus : `${event.previousHealth} -> ${event.worker.healthStatus}`;
}

/** Why the watch broke off and when it resumes, in words. */
function reconnecting(event: WatchReconnectingEvent, addresses: readonly string[], address: string): string {
  const why = describeFailure(event.error, { addresses, address }, READ_FLEET);
  const from = event.resumeFrom === undefined ? "" : ` from revision ${event.resumeFrom}`;
  return `watch interrupted (${why}); resuming${from} in ${(event.delayMs / 1000).toFixed(1)}s`;
}
