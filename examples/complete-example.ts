// The usage guide's Complete Example, run against a registry server. Only the
// import and construction lines differ from the guide, the simulated task
// takes EXAMPLE_TASK_MS milliseconds (default the guide's 5000), and
// `workers[0]!` tells the strict compiler what the length check already says.
// Cleanup runs on the server: startCleanup()/stopCleanup() are no-ops here.
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";

const taskMs = Number(process.env.EXAMPLE_TASK_MS ?? 5000);

async function main() {
  // Initialize
  const registry = new WorkerRegistryClient({ address: process.env.REGISTRY_ADDRESS ?? 'localhost:50051' });
  registry.startCleanup();

  // Register workers
  const worker1 = await registry.registerWorker({
    nodeId: 'coder-1',
    capabilities: ['coder', 'tester'],
    maxConcurrentTasks: 5,
  });

  const worker2 = await registry.registerWorker({
    nodeId: 'reviewer-1',
    capabilities: ['reviewer'],
    maxConcurrentTasks: 3,
  });

  // Simulate task assignment and completion
  console.log('Assigning tasks...');

  // Get best worker for coding task
  const workers = await registry.getWorkersForLoadBalancing({
    capabilities: ['coder'],
    healthStatus: ['healthy'],
    minAvailableCapacity: 1,
  });

  if (workers.length > 0) {
    const selectedWorker = workers[0]!;
    console.log(`Selected worker: ${selectedWorker.id}`);

    // Assign task
    await registry.updateTaskCount(selectedWorker.id, 1);

    // Simulate task execution
    await new Promise(resolve => setTimeout(resolve, taskMs));

    // Complete task successfully
    await registry.recordTaskCompletion(selectedWorker.id, true, taskMs);
    console.log('Task completed successfully');
  }

  // Check worker status
  const allWorkers = await registry.discoverWorkers();
  for (const worker of allWorkers) {
    console.log(`
Worker: ${worker.id}
  Node: ${worker.nodeId}
  Capabilities: ${worker.capabilities.join(', ')}
  Health: ${worker.healthStatus}
  Tasks: ${worker.currentTasks}/${worker.maxConcurrentTasks}
  Completed: ${worker.metrics.tasksCompleted}
  Failed: ${worker.metrics.tasksFailedCount}
  Avg Duration: ${worker.metrics.averageTaskDuration}ms
    `);
  }

  // Cleanup
  registry.stopCleanup();
}

main().catch(console.error);
