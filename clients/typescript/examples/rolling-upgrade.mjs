// A rolling upgrade against one registry: a v1 worker runs a task, a v2
// worker joins, the orchestrator drains every v1 worker by version, and the
// v1 worker finishes its task, refuses new ones and leaves by itself while
// the work goes to v2.
//
//   npm run build && REGISTRY_ADDRESS=localhost:50051 node examples/rolling-upgrade.mjs
//
// The marked regions are snippets of the package README; a test checks that
// they match, and runs this file from the packed package in an empty project.
import { WorkerDrainingError, WorkerNode, WorkerRegistryClient } from "@sentinel/worker-registry-client";

const address = process.env.REGISTRY_ADDRESS ?? "localhost:50051";
const registry = new WorkerRegistryClient({ address });

/** A worker process of the given build, normally a program of its own. */
function coderNode(version) {
  // #region versioned-node
  const node = new WorkerNode({
    registration: { nodeId: `coder-${version}`, capabilities: ["coder"], maxConcurrentTasks: 2, labels: { zone: "eu-1" }, version },
    clientOptions: { address },
    // Caps the registry's heartbeat interval (5 minutes by default), and so how late the node hears of a drain.
    heartbeatIntervalMs: 1000,
  });
  node.on("draining", ({ runningTasks }) => console.log(`coder-${version} draining, ${runningTasks} task running`));
  node.on("drained", ({ reason }) => console.log(`coder-${version} left the registry: ${reason}`));
  // #endregion
  return node;
}

const v1 = coderNode("v1");
await v1.start();
// The v1 worker is busy with a task that runs until the example ends it.
let finishTask;
let task;
await new Promise((started) => {
  task = v1.runTask(() => new Promise((finish) => ((finishTask = finish), started())));
});

const v2 = coderNode("v2");
await v2.start();

// #region drain-by-version
// Every v1 coder out of rotation for good: each finishes what it runs, then leaves.
for (const worker of await registry.discoverWorkers({ capabilities: ["coder"], versions: ["v1"] })) {
  const drained = await registry.drainWorker(worker.id, { graceMs: 10 * 60_000 });
  console.log(`drain ${drained.nodeId} (${drained.version}): ${drained.state}, ${drained.currentTasks} task running`);
}
// #endregion

const left = new Promise((resolve) => v1.once("stopped", resolve));
await new Promise((resolve) => v1.once("draining", resolve));

// #region refused
try {
  await v1.runTask(() => "more work");
} catch (error) {
  if (!(error instanceof WorkerDrainingError)) throw error;
  console.log(`coder-v1 refused a task: ${error.name}`);
}
// #endregion

console.log("coder-v1 finishes its task");
finishTask();
await task;
await left;

// #region select
const ranked = await registry.getWorkersForLoadBalancing({ capabilities: ["coder"], labelSelector: "zone=eu-1" });
console.log(`in rotation: ${ranked.map((worker) => `${worker.nodeId} (${worker.version})`).join(", ")}`);
// #endregion

await v2.stop();
registry.close();
