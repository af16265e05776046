import { RegistryClientError, WorkerRegistryClient } from "@sentinel/worker-registry-client";
import { CONNECTION_FLAGS, outputOf, parseFleetArgs, type FleetCommandIo } from "./fleet-args.js";
import { describeFailure, type CommandAccess } from "./fleet-errors.js";

const UNREGISTER: CommandAccess = { operation: "unregister", doing: "unregistering workers" };

export const UNREGISTER_USAGE = `usage: worker-registry unregister <id>... [--json] [--address host:port]...

Removes workers from the registry at once, as UnregisterWorker does: each is
gone from discovery and acquisition, its reservations end, and watchers see it
unregistered. A worker process that is still running registers again when its
heartbeat stream is refused. Needs an admin token when the registry has tokens.
The ids are tried in order; a worker that is not found is reported and the
others are still removed.

  --json             print {"address", "unregistered": [...], "failed": [{"id", "error"}]}
${CONNECTION_FLAGS}
  (the token is read from $REGISTRY_TOKEN: never pass it as an argument)
`;

/** Refusals about one worker: the others may still be removed. Anything else (token, role, connection) would refuse them all. */
const ABOUT_THE_WORKER = new Set(["NOT_FOUND", "INVALID_ARGUMENT"]);

/**
 * `worker-registry unregister ID...`: unregisters each worker named (an
 * admin's command). `argv` holds the arguments after the command name.
 *
 * @returns 0 if every worker was unregistered, 1 if any was not (each reason
 *   goes to stderr), 2 for a usage error. Never throws.
 */
export async function unregisterCommand(argv: string[], io: FleetCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const parsed = parseFleetArgs(argv, { usage: UNREGISTER_USAGE, positionals: { min: 1, max: 10_000 } }, out, io.env ?? process.env);
  if (typeof parsed === "number") return parsed;
  const client = new WorkerRegistryClient(parsed.clientOptions);
  const unregistered: string[] = [];
  const failed: Array<{ id: string; error: string }> = [];
  try {
    const ids = [...new Set(parsed.positionals)];
    for (const [i, id] of ids.entries()) {
      try {
        await client.unregisterWorker(id);
        unregistered.push(id);
        if (!parsed.json) out.stdout(`unregistered ${id}`);
      } catch (error) {
        const message = describeFailure(error, { addresses: parsed.addresses, address: client.address }, UNREGISTER);
        failed.push({ id, error: message });
        if (!parsed.json) out.stderr(`worker-registry: ${message}`);
        if (error instanceof RegistryClientError && ABOUT_THE_WORKER.has(error.codeName)) continue;
        const skipped = ids.slice(i + 1);
        if (skipped.length > 0 && !parsed.json) out.stderr(`worker-registry: not tried, for the same reason: ${skipped.join(" ")}`);
        break;
      }
    }
  } finally {
    client.close();
  }
  if (parsed.json) out.stdout(JSON.stringify({ address: client.address, unregistered, failed }, null, 2));
  return failed.length === 0 ? 0 : 1;
}
