/**
 * The load generator as the orchestrator sees it: a process of its own
 * (dist/bench/loadgen.js), forked for one measurement and driven over IPC
 * (loadgen-protocol.ts), so the orchestrator's work never lands in it.
 */
import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import type { LoadCommand, LoadReply } from "./loadgen-protocol.js";
import { ROOT } from "./servers.js";
import type { ClientKind } from "./transport.js";

/** One load-generator process. */
export interface LoadGenerator {
  /** The gRPC client it drives the servers with; every command that opens connections names it. */
  readonly client: ClientKind;
  readonly pid: number;
  /**
   * Sends `command` and waits for the reply. Rejects if the process exits
   * first, answers with an error, or answers with another type than `expect`.
   */
  request<T extends LoadReply["type"]>(command: LoadCommand, expect: T): Promise<Extract<LoadReply, { type: T }>>;
}

/** Starts load generators: a fresh process for every measurement, so one run's connections never carry into the next. */
export interface LoadGenerators {
  readonly client: ClientKind;
  /** Runs `work` with a fresh load generator, and ends its process afterwards (SIGKILL after 5 s), whatever happens. */
  use<T>(work: (generator: LoadGenerator) => Promise<T>): Promise<T>;
}

/** Load generators driving with `client` (`--client`; h2 by default). */
export function createLoadGenerators(client: ClientKind): LoadGenerators {
  return {
    client,
    async use(work) {
      const generator = LoadGeneratorProcess.start(client);
      try {
        return await work(generator);
      } finally {
        await generator.exit();
      }
    },
  };
}

class LoadGeneratorProcess implements LoadGenerator {
  private waiting: ((reply: LoadReply) => void) | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly client: ClientKind,
  ) {
    child.on("message", (reply: LoadReply) => {
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(reply);
    });
  }

  static start(client: ClientKind): LoadGeneratorProcess {
    const child = fork(path.join(ROOT, "dist/bench/loadgen.js"), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // e.g. BENCH_LOADGEN_ARGS="--cpu-prof --cpu-prof-dir=/tmp/lg" to profile the load generator itself.
      execArgv: (process.env.BENCH_LOADGEN_ARGS ?? "").split(" ").filter(Boolean),
    });
    return new LoadGeneratorProcess(child, client);
  }

  get pid(): number {
    return this.child.pid!;
  }

  async request<T extends LoadReply["type"]>(command: LoadCommand, expect: T): Promise<Extract<LoadReply, { type: T }>> {
    const reply = await new Promise<LoadReply>((resolve, reject) => {
      this.waiting = resolve;
      this.child.once("exit", (code) => reject(new Error(`load generator exited (${code})`)));
      this.child.send(command);
    });
    this.child.removeAllListeners("exit");
    if (reply.type === "error") throw new Error(`load generator: ${reply.message}`);
    if (reply.type !== expect) throw new Error(`load generator answered ${reply.type}, expected ${expect}`);
    return reply as Extract<LoadReply, { type: T }>;
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.send({ type: "exit" } satisfies LoadCommand);
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  }
}
