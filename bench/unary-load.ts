/** One unary workload against one server, measured in a window: the building block of the selection and writes scenarios. */
import type { LoadGenerators } from "./load-generator.js";
import type { UnaryOp } from "./loadgen-protocol.js";
import { measureWindow } from "./measure-window.js";
import type { UnaryLoadShape } from "./modes.js";
import { sleep } from "./proc.js";
import { fmt, fx, log, pct } from "./progress.js";
import type { UnaryResult } from "./results.js";
import { serverSideLatency } from "./server-side-latency.js";
import type { ServerProcess } from "./servers.js";

export interface UnaryLoad {
  readonly op: UnaryOp;
  /** Seeded workers in the server's database, which the calls may name. */
  readonly workers: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly load: UnaryLoadShape;
}

/**
 * Keeps `load.concurrency` calls of `op` in flight against `server` from a
 * fresh load generator, and measures a window after a warm-up of at most
 * 1 s. Against a registry with a metrics port, adds the server-side latency
 * of each method the op calls.
 */
export async function measureUnaryLoad(loadGenerators: LoadGenerators, server: ServerProcess, unary: UnaryLoad): Promise<UnaryResult> {
  const { op, workers, load } = unary;
  return loadGenerators.use(async (generator) => {
    await generator.request(
      {
        type: "start-unary",
        client: generator.client,
        target: { kind: server.kind, address: server.address },
        op,
        concurrency: load.concurrency,
        connections: load.connections,
        workerCount: workers,
      },
      "started",
    );
    await sleep(Math.min(unary.warmupMs, 1000));
    const window = await measureWindow(generator, server, unary.measureMs);
    // Slow calls may still be queued at the server: let them finish, so they do not spill into the next window.
    const stopped = await generator.request({ type: "stop", drainMs: 15_000 }, "stopped");
    const methods = op === "AcquireRelease" ? ["AcquireWorker", "ReleaseWorker"] : [op];
    const serverSide = methods.map((m) => serverSideLatency(window.metricsBefore, window.metricsAfter, m)).filter((x) => x !== undefined);
    const result: UnaryResult = {
      target: server.kind,
      op,
      workers: server.kind === "registry" ? workers : undefined,
      throughput: window.report.completed / window.report.seconds,
      latency: window.report.latency,
      cpu: window.cpu,
      errors: stopped.errors,
      firstError: stopped.firstError,
      serverSide,
    };
    log(
      `${server.kind} ${op}${result.workers !== undefined ? ` (${fmt(workers)} workers)` : ""}: ${fmt(result.throughput)} calls/s, ` +
        `client p50 ${fx(result.latency.p50Ms, 2)} ms p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 2)} cores, client ${fx(result.cpu.client, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}` +
        serverSide.map((s) => `; ${s.method} server-side p99 ${fx(s.p99Ms, 3)} ms (${(s.shareWithin1ms * 100).toFixed(2)}% ≤ 1 ms)`).join("") +
        (result.errors > 0 ? `; ${result.errors} errors, first: ${result.firstError}` : ""),
    );
    return result;
  });
}
