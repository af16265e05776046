// A worker node, an orchestrator and a watcher against one registry: the
// worker registers, the orchestrator runs tasks on it through acquisition,
// and the watcher prints every change to the coders as it happens.
//
//   npm run build && REGISTRY_ADDRESS=localhost:50051 node examples/acquire-and-watch.mjs
//
// The marked regions are the snippets of the READMEs; a test checks that they
// match, and runs this file from the packed package in an empty project.
import { NoWorkerAvailableError, WorkerNode, WorkerRegistryClient } from "@sentinel/worker-registry-client";

const address = process.env.REGISTRY_ADDRESS ?? "localhost:50051";
const registry = new WorkerRegistryClient({ address });

/** Stands for the real work: here it only says where it ran. */
async function runTask(worker) {
  return `task ran on ${worker.nodeId}`;
}

// #region watch
// Every change to the coders from now on, in revision order, alongside the other work.
const { revision } = await registry.getRegistryStats();
const watching = (async () => {
  for await (const event of registry.watchWorkers({ capabilities: ["coder"] }, { startRevision: revision + 1 })) {
    if (event.type === "resync") {
      console.log(`watch: resync at ${event.revision}, ${event.workers.length} coders`);
      continue;
    }
    const { nodeId, currentTasks, maxConcurrentTasks } = event.worker;
    console.log(`watch: ${event.type} ${nodeId} ${currentTasks}/${maxConcurrentTasks}`);
    if (event.type === "unregistered" && nodeId === "coder-node-1") break; // leaving the loop cancels the watch
  }
})();
// #endregion

// The worker process, normally a program of its own.
const node = new WorkerNode({
  registration: { nodeId: "coder-node-1", capabilities: ["coder"], maxConcurrentTasks: 2 },
  clientOptions: { address },
});
const worker = await node.start();
console.log(`registered ${worker.nodeId}`);

// #region with-worker
// Takes a slot on the best coder, runs the task, and always gives the slot back,
// recording success (the task did not throw) and the task's duration.
const result = await registry.withWorker({ capabilities: ["coder"] }, (worker) => runTask(worker));
console.log(result); // task ran on coder-node-1
// #endregion

// #region acquire
const { worker: coder, reservationId, expiresAt } = await registry.acquireWorker({ capabilities: ["coder"] });
const startedAt = performance.now();
let success = false;
try {
  await runTask(coder);
  success = true;
} finally {
  // 'released', 'already-released' (a repeat) or 'expired' (the slot was freed at expiresAt)
  const outcome = await registry.releaseWorker(reservationId, { success, durationMs: performance.now() - startedAt });
  console.log(`${outcome} ${coder.nodeId}, reserved until ${expiresAt.toISOString()}`);
}
// #endregion

// #region no-worker
try {
  await registry.acquireWorker({ capabilities: ["painter"] });
} catch (error) {
  if (!(error instanceof NoWorkerAvailableError)) throw error;
  console.log(`no painter free: ${error.message}`);
}
// #endregion

const stats = await registry.getRegistryStats();
console.log(`tasks completed: ${stats.tasksCompleted}, reservations held: ${stats.activeReservations}`);

await node.stop(); // drains, then leaves: the watch sees it go and leaves its loop
await watching;
registry.close();
