// The usage guide's Monitoring Dashboard Example, run against a registry
// server. The function is the guide's; the import, the construction line and
// the call at the end are what a runnable file adds.
import { WorkerRegistryClient } from "@sentinel/worker-registry-client";

const registry = new WorkerRegistryClient({ address: process.env.REGISTRY_ADDRESS ?? 'localhost:50051' });

async function displayWorkerDashboard() {
  const workers = await registry.discoverWorkers();

  console.log('\n=== Worker Dashboard ===\n');

  // Group by health status
  const byHealth = {
    healthy: workers.filter(w => w.healthStatus === 'healthy'),
    degraded: workers.filter(w => w.healthStatus === 'degraded'),
    unhealthy: workers.filter(w => w.healthStatus === 'unhealthy'),
  };

  console.log(`Healthy: ${byHealth.healthy.length}`);
  console.log(`Degraded: ${byHealth.degraded.length}`);
  console.log(`Unhealthy: ${byHealth.unhealthy.length}`);

  // Total capacity
  const totalCapacity = workers.reduce((sum, w) => sum + w.maxConcurrentTasks, 0);
  const usedCapacity = workers.reduce((sum, w) => sum + w.currentTasks, 0);
  const availableCapacity = totalCapacity - usedCapacity;

  console.log(`\nCapacity: ${usedCapacity}/${totalCapacity} (${availableCapacity} available)`);

  // Overall metrics
  const totalCompleted = workers.reduce((sum, w) => sum + w.metrics.tasksCompleted, 0);
  const totalFailed = workers.reduce((sum, w) => sum + w.metrics.tasksFailedCount, 0);
  const successRate = totalCompleted / (totalCompleted + totalFailed) * 100;

  console.log(`\nTasks: ${totalCompleted} completed, ${totalFailed} failed`);
  console.log(`Success Rate: ${successRate.toFixed(1)}%`);

  // Top performers
  const byPriority = await registry.getWorkersForLoadBalancing();
  console.log('\nTop Performers:');
  byPriority.slice(0, 5).forEach((w, i) => {
    console.log(`  ${i + 1}. ${w.nodeId} (priority: ${w.priority.toFixed(3)})`);
  });
}

displayWorkerDashboard()
  .catch(console.error)
  .finally(() => registry.close());
