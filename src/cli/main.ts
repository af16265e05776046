#!/usr/bin/env node
import { resumeEvictionCommand, workerCommand, workersCommand } from "./fleet-commands.js";
import { serveCommand, serveUsage } from "./serve-command.js";

const USAGE = `usage: worker-registry <command> [flags]

commands:
  serve            run the registry server (worker-registry serve --help)
  workers          print the fleet dashboard [--json] [--address host:port]...
  worker <id>      print one worker [--json] [--address host:port]...
  resume-eviction  end a pause of eviction now (admin token)

--address defaults to $REGISTRY_ADDRESS, else localhost:50051. Give it several
times (or a comma-separated $REGISTRY_ADDRESS) to list the replicas of one
registry: they are asked in order, the next one when one cannot be reached.
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
    case "worker":
      return workerCommand(rest);
    case "resume-eviction":
      return resumeEvictionCommand(rest);
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`worker-registry: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
