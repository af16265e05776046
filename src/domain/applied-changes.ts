import type { Fleet } from "./fleet.js";
import type { Logger } from "./logger.js";
import type { CommittedEvent } from "./worker-events.js";

/** One committed event as this process applied it to its read model. */
export interface AppliedChange {
  readonly event: CommittedEvent;
  /**
   * Task completions the event added to its worker's metrics, successful and
   * failed (RecordTaskCompletion, ReleaseWorker); 0 and 0 for most events.
   */
  readonly completions: { readonly succeeded: number; readonly failed: number };
}

/** Receives each change this process applies. Must be cheap and must not throw. */
export type AppliedListener = (change: AppliedChange) => void;

const NO_COMPLETIONS: AppliedChange["completions"] = { succeeded: 0, failed: 0 };

/**
 * The observers of the changes a process applies (metrics that count
 * registrations, removals by reason, completions by outcome). Not watchers:
 * no filter, no replay, never dropped.
 */
export class AppliedListeners {
  private readonly listeners = new Set<AppliedListener>();

  constructor(private readonly log: Logger) {}

  /** @returns the function that removes the listener. */
  add(listener: AppliedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Applies `event` with `apply`, then tells every listener, with the
   * completions it added: read from `fleet` before the event is applied,
   * since applying it updates the worker in place. Nothing is read when no
   * one listens. A listener that throws is logged and does not stop the others.
   */
  around(event: CommittedEvent, fleet: Pick<Fleet, "get">, apply: () => void): void {
    if (this.listeners.size === 0) {
      apply();
      return;
    }
    const completions = completionsIn(event, fleet);
    apply();
    for (const listener of this.listeners) {
      try {
        listener({ event, completions });
      } catch (error) {
        this.log.error({ err: error, revision: event.revision }, "an applied-change listener failed");
      }
    }
  }
}

/** The completions `event` adds to its worker, against the read model before it is applied. */
function completionsIn(event: CommittedEvent, fleet: Pick<Fleet, "get">): AppliedChange["completions"] {
  if (event.type !== "updated" && event.type !== "health_changed") return NO_COMPLETIONS;
  const worker = fleet.get(event.worker.id);
  if (worker === undefined) return NO_COMPLETIONS;
  const succeeded = event.worker.tasksCompleted - worker.tasksCompleted;
  const failed = event.worker.tasksFailed - worker.tasksFailed;
  return succeeded <= 0 && failed <= 0 ? NO_COMPLETIONS : { succeeded: Math.max(0, succeeded), failed: Math.max(0, failed) };
}
