/**
 * Heartbeat streams in a closed loop: each stream sends its next heartbeat
 * as soon as the last is acked, so the figure is the most acks per second a
 * target sustains at each stream count.
 */
import type { LoadGenerators } from "../load-generator.js";
import { measureWindow } from "../measure-window.js";
import { STREAMS_PER_CONNECTION, type ModeConfig } from "../modes.js";
import { sleep } from "../proc.js";
import { fmt, fx, log, pct } from "../progress.js";
import type { StreamResult } from "../results.js";
import type { ServerProcess } from "../servers.js";
import type { ScenarioContext } from "./scenario-context.js";

/**
 * Every stream count of the mode on the registry (on `dbPath`, seeded with
 * at least as many workers), the ceiling and etcd, round after round; each
 * point is its median round. Every target is up at once (an idle server
 * costs nothing) and each stream count is measured on all of them back to
 * back: a neighbour's burst then hits the ratios less.
 */
export async function measureClosedLoop(context: ScenarioContext, dbPath: string): Promise<StreamResult[]> {
  const { mode, servers, loadGenerators } = context;
  const targets: ServerProcess[] = [
    await servers.registry({ dbPath, label: "closed", profile: "closed-loop" }),
    await servers.echo({ profile: "echo-closed-loop" }),
  ];
  if (servers.hasEtcd) targets.push(await servers.etcd());
  const runs = new Map<string, StreamResult[]>();
  for (let round = 1; round <= mode.rounds; round++) {
    for (const streams of mode.closedLoopStreams) {
      for (const server of targets) {
        const result = await closedLoopPoint(loadGenerators, server, streams, mode);
        const key = `${server.kind}/${streams}`;
        runs.set(key, [...(runs.get(key) ?? []), result]);
      }
    }
  }
  // The median round of each point, whole (its latency and CPU belong to its throughput).
  const points = [...runs.values()].map((series) => [...series].sort((a, b) => a.throughput - b.throughput)[Math.floor((series.length - 1) / 2)]!);
  for (const server of targets) await servers.stop(server);
  return points;
}

async function closedLoopPoint(loadGenerators: LoadGenerators, server: ServerProcess, streams: number, mode: ModeConfig): Promise<StreamResult> {
  return loadGenerators.use(async (generator) => {
    const target = { kind: server.kind, address: server.address };
    const opened = await generator.request(
      { type: "open-streams", client: generator.client, target, count: streams, mode: "closed", intervalMs: 0, streamsPerConnection: STREAMS_PER_CONNECTION, openTimeoutMs: 30_000 },
      "opened",
    );
    // Opening thousands of streams leaves a backlog: give it time to drain (0.1 s per 1,000 streams more).
    await sleep(mode.warmupMs + streams / 10);
    const window = await measureWindow(generator, server, mode.measureMs);
    const stopped = await generator.request({ type: "stop", drainMs: 3000 }, "stopped");
    const result: StreamResult = {
      target: target.kind,
      streams,
      connections: opened.connections,
      served: opened.served,
      throughput: window.report.completed / window.report.seconds,
      latency: window.report.latency,
      cpu: window.cpu,
      errors: stopped.errors,
      firstError: stopped.firstError,
    };
    log(
      `${target.kind} closed loop ${streams} streams on ${opened.connections} connections: ${fmt(result.throughput)} acks/s, ` +
        `p50 ${fx(result.latency.p50Ms, 2)} ms, p99 ${fx(result.latency.p99Ms, 2)} ms, server ${fx(result.cpu.server, 2)} cores, ` +
        `client ${fx(result.cpu.client, 2)}, other ${fx(result.cpu.other, 2)}, server waited for a CPU ${pct(result.cpu.serverWaiting)}; served ${opened.served}/${streams}` +
        (result.firstError ? `; first error: ${result.firstError}` : ""),
    );
    return result;
  });
}
