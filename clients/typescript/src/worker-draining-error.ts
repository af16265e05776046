/**
 * `WorkerNode.runTask` refused a task because the worker is draining: the
 * registry asked it to, or `stop()` began. The task did not run and nothing
 * was counted; give it to another worker. `drainDeadline` is when the
 * registry removes the worker whatever it still runs (undefined if the node
 * does not know it).
 */
export class WorkerDrainingError extends Error {
  /** The draining worker. */
  readonly workerId: string;
  /** The registry's drain deadline, if the node knows it. */
  readonly drainDeadline: Date | undefined;

  constructor(workerId: string, drainDeadline: Date | undefined, options?: { cause?: unknown }) {
    const until = drainDeadline === undefined ? "" : ` (removed at the latest at ${drainDeadline.toISOString()})`;
    super(`worker ${workerId} is draining${until}: it takes no new task`, options);
    this.name = "WorkerDrainingError";
    this.workerId = workerId;
    this.drainDeadline = drainDeadline;
  }
}
