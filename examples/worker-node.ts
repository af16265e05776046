// The usage guide's Worker Node Implementation, run against a registry server.
// Only the import and construction lines differ from the guide (and `any`
// became `unknown` for the strict compiler), plus two corrections in
// executeTask (the task count is raised before the try and lowered in a
// finally: the guide never lowers it), stop() (it drains first: out of
// rotation, the running task finishes, then the worker leaves) and the end of
// the usage section: the worker runs EXAMPLE_TASKS tasks (default none) or
// until SIGTERM or SIGINT, whichever comes first, then stops. For a worker
// that also survives registry restarts and lost records, use the client's own
// WorkerNode.
import { RegistryClientError, WorkerRegistryClient } from "@sentinel/worker-registry-client";

class WorkerNode {
  private registry: WorkerRegistryClient;
  private workerId: string | null = null;
  private heartbeatInterval: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private nodeId: string,
    private capabilities: string[],
    private maxConcurrentTasks: number
  ) {
    this.registry = new WorkerRegistryClient({ address: process.env.REGISTRY_ADDRESS ?? 'localhost:50051' });
  }

  async start(): Promise<void> {
    // Register worker
    const worker = await this.registry.registerWorker({
      nodeId: this.nodeId,
      capabilities: this.capabilities,
      maxConcurrentTasks: this.maxConcurrentTasks,
    });

    this.workerId = worker.id;
    console.log(`Worker ${this.workerId} started`);

    // Start heartbeat
    this.startHeartbeat();
  }

  async stop(): Promise<void> {
    if (this.heartbeatInterval) {
      clearInterval(this.heartbeatInterval);
    }

    if (this.workerId) {
      // Unlike the guide, which unregisters at once whatever runs: drain first, so no new task comes here and the
      // one running finishes and is recorded. The registry removes an idle draining worker by itself.
      await this.registry.drainWorker(this.workerId, { graceMs: 60_000 });
      await this.running.catch(() => undefined);
      await this.registry.unregisterWorker(this.workerId).catch((error: unknown) => {
        if (!(error instanceof RegistryClientError && error.code === 5 /* NOT_FOUND: already removed */)) throw error;
      });
      console.log(`Worker ${this.workerId} stopped`);
    }
  }

  private startHeartbeat(): void {
    this.heartbeatInterval = setInterval(async () => {
      if (this.workerId) {
        await this.registry.heartbeat(this.workerId);
      }
    }, 5 * 60 * 1000); // Every 5 minutes
  }

  async executeTask(task: unknown): Promise<void> {
    if (!this.workerId) {
      throw new Error('Worker not registered');
    }

    const startTime = Date.now();
    let done: () => void = () => undefined;
    this.running = new Promise<void>((resolve) => (done = resolve));

    // Increment task count. Before the try, unlike the guide: a task the
    // registry refuses (the worker is full) never ran and is no failure of it.
    await this.registry.updateTaskCount(this.workerId, 1);

    try {
      // Execute task
      await this.performTask(task);

      // Record success
      const duration = Date.now() - startTime;
      await this.registry.recordTaskCompletion(this.workerId, true, duration);

      console.log(`Task completed in ${duration}ms`);
    } catch (error) {
      // Record failure
      const duration = Date.now() - startTime;
      await this.registry.recordTaskCompletion(this.workerId, false, duration);

      console.error(`Task failed after ${duration}ms:`, error);
      throw error;
    } finally {
      // Decrement task count. The guide omits this: the server holds the
      // count to 0..maxConcurrentTasks, so without it the worker fills up
      // after maxConcurrentTasks tasks and every later one is refused.
      await this.registry.updateTaskCount(this.workerId, -1);
      done();
    }
  }

  private async performTask(task: unknown): Promise<void> {
    // Task execution logic here
    console.log('Executing task:', task);
    // EXAMPLE_TASK_MS (default 0): how long each task takes, to show a stop in the middle of one.
    await new Promise(resolve => setTimeout(resolve, Number(process.env.EXAMPLE_TASK_MS ?? 0)));
  }
}

// Usage
const worker = new WorkerNode('coder-node-1', ['coder', 'tester'], 5);
await worker.start();

// Worker processes tasks: EXAMPLE_TASKS of them (default none), one after
// another, then waits until the process is asked to stop; a SIGTERM or SIGINT
// during a task lets that task finish, and takes no further one.
let stopping = false;
const stopRequested = new Promise<void>(resolve => {
  process.once('SIGTERM', () => resolve());
  process.once('SIGINT', () => resolve());
}).then(() => {
  stopping = true;
});
const tasks = Number(process.env.EXAMPLE_TASKS ?? 0);
for (let i = 1; i <= tasks && !stopping; i++) {
  try {
    await worker.executeTask({ id: i });
  } catch {
    // executeTask has logged the failure; the worker goes on with the next task.
  }
}

await stopRequested;
await worker.stop();
