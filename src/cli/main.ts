#!/usr/bin/env node
import { describeBuild, readBuildInfo } from "../build-info.js";
import { resumeEvictionCommand, workerCommand, workersCommand } from "./fleet-commands.js";
import { lifecycleCommand } from "./lifecycle-commands.js";
import { listCommand } from "./list-command.js";
import { serveCommand, serveUsage } from "./serve-command.js";
import { unregisterCommand } from "./unregister-command.js";
import { watchCommand } from "./watch-command.js";

const USAGE = `usage: worker-registry <command> [flags]

commands:
  serve              run the registry server (worker-registry serve --help)
  workers            print the fleet dashboard: counts, capacity, top performers
  list               print every worker as a table [--capability NAME] [--health STATE] [--json]
  worker <id>        print one worker [--json]
  watch              print changes to the workers live, until Ctrl-C [--capability] [--health] [--json]
  unregister <id>... remove workers at once (admin token)
  cordon <id>...     take workers out of rotation until uncordoned (or a selection: --selector, --version)
  uncordon <id>...   put cordoned workers back in rotation
  drain <id>...      take workers out of rotation for good: each leaves once idle [--grace 5m]
  resume-eviction    end a pause of eviction now (admin token)
  version            print the version, the commit it was built from and the Node.js version (also --version)

Every command but serve and version asks a registry: --address host:port, default
$REGISTRY_ADDRESS, else localhost:50051. Give it several times (or a comma-separated
$REGISTRY_ADDRESS) to list the replicas of one registry: they are asked in order,
the next one when one cannot be reached. With tokens, the token is read from
$REGISTRY_TOKEN. worker-registry <command> --help tells more.
`;

/** The worker-registry command line. Resolves to the process exit code. */
async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      if (rest.includes("--help") || rest.includes("-h")) {
        console.log(serveUsage());
        return 0;
      }
      return serveCommand(rest);
    case "workers":
      return workersCommand(rest);
    case "list":
      return listCommand(rest);
    case "worker":
      return workerCommand(rest);
    case "watch":
      return untilInterrupted((signal) => watchCommand(rest, { signal }));
    case "unregister":
      return unregisterCommand(rest);
    case "cordon":
    case "uncordon":
    case "drain":
      return lifecycleCommand(command, rest);
    case "resume-eviction":
      return resumeEvictionCommand(rest);
    case "version":
    case "--version":
    case "-V":
      console.log(describeBuild(readBuildInfo()));
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

/** Runs a command that lasts until stopped, with a signal that SIGINT (Ctrl-C) and SIGTERM abort: a clean stop, not a kill. */
async function untilInterrupted(run: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const stop = new AbortController();
  const abort = () => stop.abort();
  process.once("SIGINT", abort);
  process.once("SIGTERM", abort);
  try {
    return await run(stop.signal);
  } finally {
    process.off("SIGINT", abort);
    process.off("SIGTERM", abort);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`worker-registry: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
