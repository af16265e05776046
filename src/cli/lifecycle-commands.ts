import { createInterface } from "node:readline/promises";
import { RegistryClientError, WorkerRegistryClient, type WorkerInfo } from "@sentinel/worker-registry-client";
import { formatDuration, parseDuration } from "./duration.js";
import { CONNECTION_FLAGS, FILTER_FLAGS, FILTER_OPTIONS, outputOf, parseFleetArgs, workerFilter, type FleetCommandIo, type Output, type WorkerFilterFlags } from "./fleet-args.js";
import { describeFailure, reportFailure, type AskedRegistry, type CommandAccess } from "./fleet-errors.js";
import { formatLabels } from "./fleet-commands.js";
import { table } from "./text-table.js";

/** What the lifecycle commands do to a worker: the CordonWorker, UncordonWorker and DrainWorker RPCs. */
export type LifecycleAction = "cordon" | "uncordon" | "drain";

/** Where a lifecycle command writes, reads its settings and asks for confirmation. Every field is optional. */
export interface LifecycleCommandIo extends FleetCommandIo {
  /** Whether a person can answer a question (stdin is a terminal). Default: process.stdin.isTTY. */
  interactive?: boolean;
  /** Asks a yes/no question and resolves to the answer. Default: a prompt on stderr, read from stdin; only "y" or "yes" is yes. */
  confirm?: (question: string) => Promise<boolean>;
}

/** How each action reads in the output, and what the access policy checks it as. */
const ACTIONS: Readonly<Record<LifecycleAction, { readonly done: string; readonly what: string; readonly access: CommandAccess }>> = {
  cordon: {
    done: "cordoned",
    what: "takes workers out of rotation until uncordoned: they keep heartbeating, and their running tasks finish",
    access: { operation: "cordon", doing: "cordoning workers" },
  },
  uncordon: {
    done: "uncordoned",
    what: "puts cordoned workers back in rotation",
    access: { operation: "cordon", doing: "uncordoning workers" },
  },
  drain: {
    done: "draining",
    what: "takes workers out of rotation for good: each is removed once its tasks finish, or at its\ndeadline whatever it still runs; only re-registering undoes it",
    access: { operation: "drain", doing: "draining workers" },
  },
};

const READ_FLEET: CommandAccess = { operation: "read-fleet", doing: "reading the fleet" };

/**
 * Codes that say the registry cannot act on any worker now, whichever it is:
 * after one, the rest are not tried (each would fail the same way, after a
 * deadline).
 */
const STOPS_EVERYTHING: ReadonlySet<string> = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED"]);

function usageOf(action: LifecycleAction): string {
  const grace = action === "drain" ? " [--grace DURATION]" : "";
  const graceFlag =
    action === "drain"
      ? `  --grace DURATION   how long each worker has to finish its tasks before it is removed anyway,
                     like 30s, 5m or 1h; 1s to 7 days (default: the registry's, 10m)\n`
      : "";
  return `usage: worker-registry ${action} ID...${grace} [--address host:port]...
       worker-registry ${action} --selector SEL | --version V | ...${grace} [--yes] [--address host:port]...

${capitalised(action)} ${ACTIONS[action].what}.

Name the workers by id, and each is acted on at once; or select them with the
filter flags, and every worker that matches is listed first, then acted on once
you confirm (on a terminal, or with --yes).

${FILTER_FLAGS}
  --yes, -y          act on the selection without asking (needed when stdin is not a terminal)
${graceFlag}  --json             print {"address", "action", "done": [workers], "failed": [{"id", "error"}]}
                     (a selection's list then goes to stderr)
${CONNECTION_FLAGS}
  (the token, if the registry needs one, is read from $REGISTRY_TOKEN: never pass it as an argument)

Prints one line per worker acted on, then a summary. Exit status: 0 when every
worker was ${ACTIONS[action].done} (or none matched), 1 when one failed (each failure names its
worker and the registry's reason) or the confirmation was declined, 2 for a usage
error, a selector the registry cannot parse, or a selection neither confirmed nor
--yes'd because stdin is not a terminal.
`;
}

interface LifecycleRun {
  readonly action: LifecycleAction;
  readonly ids: readonly string[];
  readonly filter: WorkerFilterFlags;
  readonly yes: boolean;
  readonly json: boolean;
  readonly graceMs: number | undefined;
  readonly addresses: string[];
  readonly client: WorkerRegistryClient;
  readonly out: Output;
}

/**
 * `worker-registry cordon|uncordon|drain`: changes the state of the workers
 * named by id, or of every worker the filter flags select. `argv` holds the
 * arguments after the command name.
 *
 * Workers named by id are acted on at once. A selection is listed first (id,
 * node, version, state, health, tasks, labels) and acted on only once
 * confirmed: asked on a terminal, or `--yes`; without either it is refused
 * (exit 2) and nothing changes. Workers are acted on one at a time, in the
 * order given or listed, each reported on its own line (failures on stderr,
 * naming the worker and the reason), then a summary. An error that would fail
 * every call (the registry unreachable, the token refused) stops at once.
 *
 * @returns 0 when every worker was acted on (or none matched), 1 when one
 *   failed, the registry cannot be asked or the confirmation was declined, 2
 *   for a usage error, a selector the registry cannot parse, or a selection
 *   without a confirmation. Never throws.
 */
export async function lifecycleCommand(action: LifecycleAction, argv: string[], io: LifecycleCommandIo = {}): Promise<number> {
  const out = outputOf(io);
  const run = parseLifecycleArgs(action, argv, out, io.env ?? process.env);
  if (typeof run === "number") return run;
  try {
    let ids = run.ids;
    if (ids.length === 0) {
      const selected = await select(run);
      if (typeof selected === "number") return selected;
      if (selected.length === 0) {
        if (run.json) out.stdout(JSON.stringify({ address: run.client.address, action, done: [], failed: [] }, null, 2));
        return 0;
      }
      const confirmed = await confirmSelection(run, selected.length, io);
      if (confirmed !== 0) return confirmed;
      ids = selected.map((worker) => worker.id);
    }
    return await act(run, ids);
  } finally {
    run.client.close();
  }
}

function parseLifecycleArgs(action: LifecycleAction, argv: string[], out: Output, env: NodeJS.ProcessEnv): LifecycleRun | number {
  const usage = usageOf(action);
  const options = { ...FILTER_OPTIONS, yes: { type: "boolean", short: "y" }, grace: { type: "string" } } as const;
  const parsed = parseFleetArgs(argv, { usage, positionals: { min: 0, max: Number.MAX_SAFE_INTEGER }, options }, out, env);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const filter = workerFilter(values, usage, out);
  if (typeof filter === "number") return filter;
  const selecting = Object.keys(FILTER_OPTIONS).some((flag) => values[flag] !== undefined);
  const refuse = (reason: string) => {
    out.stderr(`${reason}\n\n${usage}`);
    return 2;
  };
  if (positionals.length === 0 && !selecting) return refuse(`name the workers to ${action} by id, or select them with --selector, --version, --capability or --health`);
  if (positionals.length > 0 && selecting) return refuse("give worker ids or filter flags, not both");
  // An empty filter selects every worker: that must be asked for by a filter that says so, not by an empty variable.
  if (selecting && Object.keys(filter).length === 0) return refuse("--selector is empty: it would select every worker");
  const grace = values.grace as string | undefined;
  if (grace !== undefined && action !== "drain") return refuse("--grace is for drain only");
  let graceMs: number | undefined;
  try {
    graceMs = grace === undefined ? undefined : parseDuration(grace);
  } catch (error) {
    return refuse(`--grace: ${(error as Error).message}`);
  }
  return {
    action,
    // Each worker once, in the order given.
    ids: [...new Set(positionals)],
    filter,
    yes: values.yes === true,
    json: parsed.json,
    graceMs,
    addresses: parsed.addresses,
    client: new WorkerRegistryClient(parsed.clientOptions),
    out,
  };
}

/** The workers the filter selects, listed for the operator; or the exit code when they cannot be listed. */
async function select(run: LifecycleRun): Promise<readonly WorkerInfo[] | number> {
  const { client, out } = run;
  // The list is for the person deciding; with --json, stdout is for the result alone.
  const show = run.json ? out.stderr : out.stdout;
  let workers: WorkerInfo[];
  try {
    workers = await client.discoverWorkers(run.filter);
  } catch (error) {
    if (error instanceof RegistryClientError && error.codeName === "INVALID_ARGUMENT") {
      out.stderr(`worker-registry: ${error.message}`);
      return 2;
    }
    return reportFailure(error, asked(run), READ_FLEET, out);
  }
  const described = describeFilter(run.filter);
  if (workers.length === 0) {
    show(`no worker matches ${described}`);
    return workers;
  }
  show(`${countOf(workers.length)} match${workers.length === 1 ? "es" : ""} ${described}:`);
  show(indent(renderSelection(workers)));
  return workers;
}

/**
 * 0 when the selection may be acted on; else the exit code, with the reason:
 * 2 when nobody can be asked (not a terminal, no --yes), 1 when declined.
 */
async function confirmSelection(run: LifecycleRun, count: number, io: LifecycleCommandIo): Promise<number> {
  if (run.yes) return 0;
  const { action, out } = run;
  if (!(io.interactive ?? process.stdin.isTTY === true)) {
    out.stderr(`worker-registry: refusing to ${action} ${countOf(count)} without confirmation: stdin is not a terminal; pass --yes to confirm`);
    return 2;
  }
  const grace = action === "drain" ? ` with a grace of ${run.graceMs === undefined ? "the registry's default" : formatDuration(run.graceMs)}` : "";
  if (await (io.confirm ?? askOnTerminal)(`${capitalised(action)} these ${countOf(count)}${grace}? [y/N] `)) return 0;
  out.stderr("worker-registry: not confirmed; nothing changed");
  return 1;
}

async function askOnTerminal(question: string): Promise<boolean> {
  // The question goes to stderr: stdout may be piped to a file that nobody reads while answering.
  const terminal = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^\s*y(es)?\s*$/i.test(await terminal.question(question));
  } finally {
    terminal.close();
  }
}

/** Acts on each worker in turn, reporting each; returns the exit code. */
async function act(run: LifecycleRun, ids: readonly string[]): Promise<number> {
  const { action, out } = run;
  const done: WorkerInfo[] = [];
  const failed: { id: string; error: string }[] = [];
  for (const [index, id] of ids.entries()) {
    try {
      const worker = await call(run, id);
      done.push(worker);
      const deadline = worker.drainDeadline === undefined ? "" : ` until ${worker.drainDeadline.toISOString()}`;
      if (!run.json) out.stdout(`${ACTIONS[action].done} ${worker.id} (node ${worker.nodeId})${deadline}`);
    } catch (error) {
      const reason = describeFailure(error, asked(run), ACTIONS[action].access);
      failed.push({ id, error: reason });
      out.stderr(`worker-registry: cannot ${action} ${id}: ${reason}`);
      if (error instanceof RegistryClientError && STOPS_EVERYTHING.has(error.codeName)) {
        const rest = ids.slice(index + 1);
        for (const skipped of rest) failed.push({ id: skipped, error: "not tried" });
        if (rest.length > 0) out.stderr(`worker-registry: stopped; ${rest.length} more worker${rest.length === 1 ? "" : "s"} not tried`);
        break;
      }
    }
  }
  if (run.json) {
    out.stdout(JSON.stringify({ address: run.client.address, action, done, failed }, null, 2));
  } else {
    const total = done.length + failed.length;
    out.stdout(`${done.length} of ${countOf(total)} ${ACTIONS[action].done}${failed.length > 0 ? `, ${failed.length} failed` : ""}`);
  }
  return failed.length > 0 ? 1 : 0;
}

function call(run: LifecycleRun, id: string): Promise<WorkerInfo> {
  switch (run.action) {
    case "cordon":
      return run.client.cordonWorker(id);
    case "uncordon":
      return run.client.uncordonWorker(id);
    case "drain":
      return run.client.drainWorker(id, run.graceMs === undefined ? {} : { graceMs: run.graceMs });
  }
}

function asked(run: LifecycleRun): AskedRegistry {
  return { addresses: run.addresses, address: run.client.address };
}

/** The filter in words: `selector "zone=eu-1" and version "v1" or "v2"`. */
function describeFilter(filter: WorkerFilterFlags): string {
  const quoted = (values: readonly string[], joiner: string) => values.map((v) => JSON.stringify(v)).join(joiner);
  const parts: string[] = [];
  if (filter.labelSelector !== undefined) parts.push(`selector ${JSON.stringify(filter.labelSelector)}`);
  if (filter.versions !== undefined) parts.push(`version ${quoted(filter.versions, " or ")}`);
  if (filter.capabilities !== undefined) parts.push(`capabilities ${quoted(filter.capabilities, " and ")}`);
  if (filter.healthStatus !== undefined) parts.push(`health ${filter.healthStatus.join(" or ")}`);
  return parts.join(" and ");
}

/** A selection as a table of what an operator checks before acting on it. */
export function renderSelection(workers: readonly WorkerInfo[]): string {
  return table(
    ["WORKER", "NODE", "VERSION", "STATE", "HEALTH", "TASKS", "LABELS"],
    ["left", "left", "left", "left", "left", "right", "left"],
    workers.map((w) => [w.id, w.nodeId, w.version || "-", w.state, w.healthStatus, `${w.currentTasks}/${w.maxConcurrentTasks}`, formatLabels(w.labels) || "-"]),
  );
}

function countOf(count: number): string {
  return `${count} worker${count === 1 ? "" : "s"}`;
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
}

function capitalised(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
