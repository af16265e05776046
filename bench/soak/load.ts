/**
 * The soak's load role (`soak.js --role load`): a process of its own that
 * starts the worker nodes, then every actor of load-actors.ts, and answers
 * the driver over IPC: "stats" with its counters, "stop" by ending every
 * loop, stopping the nodes and exiting.
 */
import type * as grpc from "@grpc/grpc-js";
import type { WorkerNode } from "@sentinel/worker-registry-client";
import { sleep, timeout } from "../proc.js";
import { churn, crashWorkers, orchestrate, readFleet, runTasks, startNode, watch, watchWithoutReading, type LoadRun } from "./load-actors.js";
import { createLoadTally } from "./load-tally.js";

/** Runs the load against `address` with `workerCount` worker nodes until the driver says stop. */
export async function runLoad(address: string, workerCount: number): Promise<void> {
  let channelIds = 10_000;
  let running = true;
  const run: LoadRun = {
    address,
    tally: createLoadTally(),
    nodes: new Set<WorkerNode>(),
    openStreams: new Set<grpc.ClientReadableStream<any>>(),
    loops: [],
    clients: [],
    running: () => running,
    nextChannelId: () => channelIds++,
  };
  for (let i = 0; i < workerCount; i++) {
    await startNode(run);
    if (i % 10 === 9) await sleep(50);
  }
  churn(run);
  crashWorkers(run);
  runTasks(run);
  orchestrate(run);
  readFleet(run);
  watch(run);
  watchWithoutReading(run);

  const report = () => ({ ...run.tally.stats, nodes: run.nodes.size });
  process.on("message", (message: { type: string }) => {
    if (message.type === "stats") process.send?.({ type: "stats", stats: report() });
    if (message.type === "stop") {
      running = false;
      void (async () => {
        for (const stream of run.openStreams) stream.cancel();
        await Promise.race([Promise.allSettled(run.loops), timeout(15_000)]);
        await Promise.race([Promise.allSettled([...run.nodes].map((node) => node.stop())), timeout(15_000)]);
        for (const client of run.clients) client.close();
        process.send?.({ type: "stopped", stats: report() }, () => process.exit(0));
      })();
    }
  });
  process.send?.({ type: "ready" });
}
