/**
 * The paced fleet: every worker on its own stream, one heartbeat per second,
 * as a real fleet sends them. The figures are the steady state once the
 * opening burst has drained: missed acks, ack latency, server CPU and RSS.
 */
import type { LoadGenerator, LoadGenerators } from "../load-generator.js";
import type { LoadReply, Target } from "../loadgen-protocol.js";
import { measureWindow } from "../measure-window.js";
import { STREAMS_PER_CONNECTION, type ModeConfig } from "../modes.js";
import { sleep } from "../proc.js";
import { fmt, fx, log, pct } from "../progress.js";
import type { PacedResult } from "../results.js";
import type { ServerProcess } from "../servers.js";
import type { ScenarioContext } from "./scenario-context.js";

/**
 * The fleet against the registry (on `dbPath`, seeded with at least
 * `mode.pacedWorkers` workers), then the ceiling, then etcd if the mode
 * includes it: one target up at a time.
 */
export async function measurePacedFleet(context: ScenarioContext, dbPath: string): Promise<PacedResult[]> {
  const { mode, servers, loadGenerators } = context;
  const targets: (() => Promise<ServerProcess>)[] = [() => servers.registry({ dbPath, label: "paced", profile: "paced" }), () => servers.echo({ profile: "echo-paced" })];
  if (servers.hasEtcd && mode.pacedEtcd) targets.push(() => servers.etcd());
  const results: PacedResult[] = [];
  for (const start of targets) {
    const server = await start();
    results.push(await pacedRun(loadGenerators, server, mode));
    await servers.stop(server);
  }
  return results;
}

async function pacedRun(loadGenerators: LoadGenerators, server: ServerProcess, mode: ModeConfig): Promise<PacedResult> {
  return loadGenerators.use(async (generator) => {
    const { opened, settled, settleSeconds } = await openPacedFleet(generator, { kind: server.kind, address: server.address }, mode.pacedWorkers, mode.pacedWarmupSeconds);
    const window = await measureWindow(generator, server, mode.pacedSeconds * 1000);
    const stopped = await generator.request({ type: "stop", drainMs: 3000 }, "stopped");
    const result: PacedResult = {
      target: server.kind,
      workers: mode.pacedWorkers,
      connections: opened.connections,
      seconds: window.report.seconds,
      opened: stopped.opened,
      served: stopped.served,
      sent: stopped.sent,
      acked: stopped.acked,
      missed: stopped.missed,
      errors: stopped.errors,
      latency: window.report.latency,
      cpu: window.cpu,
      rssPeakMiB: window.rssPeakMiB,
      firstError: stopped.firstError,
      settled,
      settleSeconds: settleSeconds + opened.seconds,
    };
    log(
      `${result.target} paced fleet ${result.workers} × 1/s for ${result.seconds.toFixed(0)} s: ${fmt(window.report.completed / window.report.seconds)} acks/s, ` +
        `missed ${result.missed} of ${result.sent}, p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 3)} cores, ` +
        `client ${fx(result.cpu.client, 2)}, RSS ${result.rssPeakMiB.toFixed(0)} MiB, other ${fx(result.cpu.other, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}; ` +
        `served ${result.served}/${result.opened}; opening burst ${settled ? "drained" : "NOT drained"} after ${fx(result.settleSeconds, 1)} s`,
    );
    return result;
  });
}

/**
 * Opens `streams` paced heartbeat streams (one beat a second each) on `target`, then waits out the
 * opening burst ({@link drainOpeningBurst}). Returns the generator's answer, whether the backlog drained,
 * and how long that took from the streams' opening.
 */
export async function openPacedFleet(
  generator: LoadGenerator,
  target: Target,
  streams: number,
  warmupSeconds: number,
): Promise<{ opened: Extract<LoadReply, { type: "opened" }>; settled: boolean; settleSeconds: number }> {
  const opened = await generator.request(
    { type: "open-streams", client: generator.client, target, count: streams, mode: "paced", intervalMs: 1000, streamsPerConnection: STREAMS_PER_CONNECTION, openTimeoutMs: 10_000 },
    "opened",
  );
  const openedAt = performance.now();
  const settled = await drainOpeningBurst(generator, warmupSeconds, streams);
  return { opened, settled, settleSeconds: (performance.now() - openedAt) / 1000 };
}

/**
 * The opening burst (every worker connecting within a second) leaves a backlog of acks. To measure the
 * steady state, waits the warm-up, then until at most 1% of the fleet (`workers` streams) has a heartbeat
 * unanswered (30 s at most). Returns whether the backlog drained.
 */
async function drainOpeningBurst(generator: LoadGenerator, warmupSeconds: number, workers: number): Promise<boolean> {
  await sleep(warmupSeconds * 1000);
  for (const giveUp = performance.now() + 30_000; performance.now() < giveUp; await sleep(250)) {
    const status = await generator.request({ type: "report" }, "report");
    if (status.outstanding <= Math.max(100, workers / 100)) return true;
  }
  return false;
}
