import { Metadata, status } from "@grpc/grpc-js";
import { RegistryClientError } from "./registry-client-error.js";

/**
 * `WorkerNode.runTask` refused a task because the worker is draining: the
 * registry asked it to, or `stop()` began. The task did not run and nothing
 * was counted; give it to another worker. `drainDeadline` is when the
 * registry removes the worker whatever it still runs (undefined if the node
 * does not know it).
 *
 * Test for it with `error instanceof WorkerDrainingError`. It is also a
 * {@link RegistryClientError} with `codeName` `'FAILED_PRECONDITION'`, like
 * the refusal of a task at capacity, so code that already sends such a task
 * elsewhere handles a drain the same way.
 */
export class WorkerDrainingError extends RegistryClientError {
  /** The draining worker. */
  readonly workerId: string;
  /** The registry's drain deadline, if the node knows it. */
  readonly drainDeadline: Date | undefined;

  constructor(workerId: string, drainDeadline: Date | undefined, options?: { cause?: unknown }) {
    const until = drainDeadline === undefined ? "" : ` (removed at the latest at ${drainDeadline.toISOString()})`;
    super("runTask", status.FAILED_PRECONDITION, `worker ${workerId} is draining${until}: it takes no new task`, new Metadata(), options);
    this.name = "WorkerDrainingError";
    this.workerId = workerId;
    this.drainDeadline = drainDeadline;
  }
}
