/**
 * The benchmark suite: starts the registry, the ceiling (a bare grpc-js echo
 * server) and etcd each in a process of its own, drives them from a separate
 * load-generator process, and prints a table where every figure stands next
 * to its ratio to the ceiling.
 *
 *   node dist/bench/run.js [--quick | --full] [--only closed,paced,selection,writes,coldstart,replicas,cost,loaded-selection,watch]
 *                          [--no-etcd] [--write-docs] [--profile] [--keep] [--client h2|grpc-js] [--streams 100,1000]
 *   node dist/bench/run.js --report bench/results/latest-quick.json [--write-docs]   (re-render saved results)
 *
 * --quick (default) takes 4-5 minutes on a shared 2-core machine (the replicas
 * alone, under 2); --full about twenty-five.
 * --write-docs rewrites the generated parts of docs/benchmarks.md and the chart
 *   docs/benchmarks-throughput.svg (always done by --full): each part only when
 *   the run measured it, so `--only replicas --write-docs` leaves the others.
 * --profile runs every registry under `node --cpu-prof` and summarises each profile.
 * Results are also saved as bench/results/latest-<mode>.json.
 *
 * This file is the command line only: each scenario is a module of
 * bench/scenarios/, what they measure is bench/results.ts, and the tables
 * and the docs section are bench/report.ts.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { gitCommit } from "./git-commit.js";
import { createLoadGenerators } from "./load-generator.js";
import { MODES, type ModeConfig } from "./modes.js";
import { describeMachine } from "./proc.js";
import type { ProfileSummary } from "./profile-summary.js";
import { createProfiles } from "./profiles.js";
import { log } from "./progress.js";
import { renderConsole, writeDocs } from "./report.js";
import { loadResults, saveResults, type Results } from "./results.js";
import { measureClosedLoop } from "./scenarios/closed-loop.js";
import { measureColdStart } from "./scenarios/cold-start.js";
import { measureHeartbeatCost } from "./scenarios/heartbeat-cost.js";
import { measureLoadedSelection } from "./scenarios/loaded-selection.js";
import { measureWatchFanout } from "./scenarios/watch-fanout.js";
import { measurePacedFleet } from "./scenarios/paced-fleet.js";
import { measureReplicas } from "./scenarios/replicas.js";
import type { ScenarioContext } from "./scenarios/scenario-context.js";
import { measureSelection } from "./scenarios/selection.js";
import { seedStreamFleet } from "./scenarios/stream-fleet.js";
import { measureWrites } from "./scenarios/writes.js";
import { createServerLauncher } from "./server-launcher.js";
import { etcdVersion, findEtcd, killAll, ROOT } from "./servers.js";
import type { ClientKind } from "./transport.js";

/** The scenarios, in the order they run. */
const PHASES = ["closed", "paced", "selection", "coldstart", "writes", "replicas"] as const;
type Phase = (typeof PHASES)[number];
/** Issue 16's scenarios, after those: heartbeat cost against the bare transport (and PostgreSQL against SQLite), selection under a fleet's load, watch fan-out. */
const PERF_PHASES = ["cost", "loaded-selection", "watch"] as const;

interface RunOptions {
  readonly mode: ModeConfig;
  /** As given to --only (validated), or every phase. */
  readonly phases: readonly string[];
  readonly client: ClientKind;
  readonly etcd: boolean;
  readonly writeDocs: boolean;
  readonly profile: boolean;
  readonly keep: boolean;
}

const USAGE = `usage: node dist/bench/run.js [--quick | --full] [--only PHASE,...] [--no-etcd] [--write-docs] [--profile] [--keep]
                                [--client h2|grpc-js] [--streams N,...] [--report FILE]
  (npm run bench = --quick, npm run bench:full = --full; docs/benchmarks.md says what each phase measures)`;

function parseCommandLine() {
  return parseArgs({
    options: {
      help: { type: "boolean", short: "h", default: false },
      quick: { type: "boolean", default: false },
      full: { type: "boolean", default: false },
      only: { type: "string" },
      "no-etcd": { type: "boolean", default: false },
      "write-docs": { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      client: { type: "string", default: "h2" },
      streams: { type: "string" },
      report: { type: "string" },
    },
  }).values;
}

/** The options of a measuring run; throws on an unknown --client or phase. */
function runOptions(values: ReturnType<typeof parseCommandLine>): RunOptions {
  const base = values.full ? MODES.full : MODES.quick;
  // --streams 100,1000 measures only those closed-loop points (for a quick look while developing).
  const mode: ModeConfig = values.streams ? { ...base, closedLoopStreams: values.streams.split(",").map(Number) } : base;
  if (values.client !== "h2" && values.client !== "grpc-js") throw new Error(`--client must be h2 or grpc-js, not ${values.client}`);
  const phases = values.only ? values.only.split(",").map((p) => p.trim()) : [...PHASES, ...PERF_PHASES];
  const known: readonly string[] = [...PHASES, ...PERF_PHASES];
  for (const phase of phases) if (!known.includes(phase)) throw new Error(`unknown phase ${phase}; phases: ${known.join(", ")}`);
  return { mode, phases, client: values.client, etcd: !values["no-etcd"], writeDocs: values["write-docs"], profile: values.profile, keep: values.keep };
}

async function main(): Promise<void> {
  let values: ReturnType<typeof parseCommandLine>;
  try {
    values = parseCommandLine();
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(`${USAGE}\n  phases: ${[...PHASES, ...PERF_PHASES].join(", ")}`);
    return;
  }
  if (values.report) {
    // Re-render the tables (and, with --write-docs, the doc and chart) from saved results, without measuring.
    const saved = loadResults(values.report);
    console.log(renderConsole(saved));
    if (values["write-docs"]) writeDocs(saved, ROOT);
    return;
  }
  const options = runOptions(values);
  const results = await measure(options);
  const file = saveResults(results, path.join(ROOT, "bench", "results"));
  console.log("\n" + renderConsole(results));
  if (options.writeDocs || options.mode.name === "full") writeDocs(results, ROOT);
  log(`results saved to ${path.relative(ROOT, file)}`);
}

/** Runs the chosen scenarios in a temporary directory (removed afterwards, unless --keep or --profile) and gathers their results. */
async function measure(options: RunOptions): Promise<Results> {
  const etcdBinary = options.etcd ? findEtcd() : undefined;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-bench-"));
  const profiles = createProfiles({ workDir, enabled: options.profile });
  const results = await newResults(options, etcdBinary, profiles.summaries);
  const { machine } = results;
  log(`${options.mode.name} mode; ${machine.cores} cores, ${machine.cpuModel}; load average ${machine.loadAverage.join(" ")}; work dir ${workDir}`);
  log(
    etcdBinary
      ? `etcd ${results.etcd?.version ?? "?"} at ${etcdBinary}`
      : !options.etcd
        ? "etcd: skipped (--no-etcd)"
        : "etcd: not found (apt-get install etcd-server); the etcd column stays empty",
  );
  const context: ScenarioContext = {
    mode: options.mode,
    workDir,
    servers: createServerLauncher({ workDir, etcdBinary, profiles }),
    loadGenerators: createLoadGenerators(options.client),
  };
  try {
    await runScenarios(options.phases, context, results);
    await runPerfScenarios(options.phases, context, results);
  } finally {
    killAll();
    if (!options.keep && !options.profile) fs.rmSync(workDir, { recursive: true, force: true });
  }
  results.finishedAt = new Date().toISOString();
  results.loadAverageAtEnd = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number) as [number, number, number];
  return results;
}

async function newResults(options: RunOptions, etcdBinary: string | undefined, profiles: Record<string, ProfileSummary>): Promise<Results> {
  const machine = describeMachine();
  return {
    mode: options.mode,
    startedAt: new Date().toISOString(),
    finishedAt: "",
    commit: gitCommit(ROOT),
    machine,
    loadAverageAtEnd: undefined,
    etcd: etcdBinary ? { binary: etcdBinary, version: await etcdVersion(etcdBinary) } : undefined,
    phases: options.phases,
    client: options.client,
    closedLoop: [],
    paced: [],
    selection: [],
    inproc: [],
    writes: [],
    coldStart: undefined,
    replicas: [],
    profiles,
  };
}

/** The chosen scenarios, in the order of {@link PHASES}, each filling its part of `results`. */
async function runScenarios(phases: readonly string[], context: ScenarioContext, results: Results): Promise<void> {
  const chosen = (phase: Phase) => phases.includes(phase);
  if (chosen("closed") || chosen("paced")) {
    const streamDb = seedStreamFleet(context);
    if (chosen("closed")) results.closedLoop = await measureClosedLoop(context, streamDb);
    if (chosen("paced")) results.paced = await measurePacedFleet(context, streamDb);
  }
  if (chosen("selection")) ({ selection: results.selection, inproc: results.inproc } = await measureSelection(context));
  if (chosen("coldstart")) results.coldStart = await measureColdStart(context);
  if (chosen("writes")) results.writes = await measureWrites(context);
  if (chosen("replicas")) ({ runs: results.replicas, skipped: results.replicasSkipped } = await measureReplicas(context));
}

/** Issue 16's scenarios that were chosen, each filling its part of `results`. */
async function runPerfScenarios(phases: readonly string[], context: ScenarioContext, results: Results): Promise<void> {
  if (phases.includes("cost")) results.heartbeatCost = await measureHeartbeatCost(context);
  if (phases.includes("loaded-selection")) results.loadedSelection = await measureLoadedSelection(context);
  if (phases.includes("watch")) results.watchFanout = await measureWatchFanout(context);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

main().catch((error: unknown) => {
  killAll();
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
