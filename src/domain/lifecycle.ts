import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import { InvalidArgumentError, WorkerDrainingError } from "./errors.js";
import { recordView, type Fleet } from "./fleet.js";
import type { Logger } from "./logger.js";
import type { RegistryStore, StateTransition } from "./registry-store.js";
import { validateWorkerId } from "./validation.js";
import type { WorkerView } from "./worker-view.js";

/** A drain's grace when the caller gives none. */
export const DEFAULT_DRAIN_GRACE_MS = 10 * 60_000;
export const MIN_DRAIN_GRACE_MS = 1000;
export const MAX_DRAIN_GRACE_MS = 7 * 24 * 3_600_000;

/**
 * Taking workers out of rotation: cordon (until uncordoned) and drain (for
 * good: removed once idle, or at the deadline). The store applies each
 * transition conditionally, so concurrent calls on any process agree; the
 * rank index drops a worker that is not active, so it is never ranked nor
 * granted, while it keeps heartbeating and keeps its health.
 */
export class FleetLifecycle {
  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly feed: ChangeFeed;
      readonly clock: Clock;
      readonly log: Logger;
    },
  ) {}

  /** @throws WorkerNotFoundError; WorkerDrainingError; InvalidArgumentError; StoreUnavailableError. */
  cordon(workerId: string): Promise<WorkerView> {
    return this.transition(workerId, { to: "cordoned" }, "cordoned");
  }

  /** @throws WorkerNotFoundError; WorkerDrainingError; InvalidArgumentError; StoreUnavailableError. */
  uncordon(workerId: string): Promise<WorkerView> {
    return this.transition(workerId, { to: "active" }, "uncordoned");
  }

  /**
   * Drains a worker: it leaves rotation, its heartbeat replies ask it to
   * finish, and it is removed once its tasks and reservations reach zero, or
   * at now + grace whatever it runs. Draining again keeps the earlier deadline.
   * @throws WorkerNotFoundError; InvalidArgumentError (grace outside 1 s..7 d); StoreUnavailableError.
   */
  drain(workerId: string, graceMs: number = DEFAULT_DRAIN_GRACE_MS): Promise<WorkerView> {
    if (!Number.isFinite(graceMs) || graceMs < MIN_DRAIN_GRACE_MS || graceMs > MAX_DRAIN_GRACE_MS) {
      throw new InvalidArgumentError("grace", `must be between 1s and 168h (7 days), got ${graceMs} ms`);
    }
    return this.transition(workerId, { to: "draining", deadlineMs: Math.ceil(this.deps.clock.now() + graceMs) }, "drained");
  }

  private async transition(workerId: string, transition: StateTransition, action: string): Promise<WorkerView> {
    validateWorkerId(workerId);
    const { store, feed, fleet, clock, log } = this.deps;
    if (fleet.get(workerId) === undefined) throw fleet.notFound(workerId);
    const { events, result } = await store.changeState(workerId, transition, clock.now());
    await feed.offer(events);
    if (result.status === "not-found") throw fleet.notFound(workerId);
    if (result.status === "draining") throw new WorkerDrainingError(workerId, action);
    for (const event of events) {
      if (event.type === "state_changed") log.info({ workerId, from: event.previousState, to: event.worker.state, drainDeadlineMs: event.worker.drainDeadlineMs }, `worker ${action}`);
      else log.info({ workerId, reason: event.reason }, "drained worker removed: it had no task left");
    }
    const worker = fleet.get(workerId);
    if (worker !== undefined) return fleet.view(worker, clock.monotonic());
    // Drained while idle: removed in the same transaction. As its state change left it.
    const changed = events.find((event) => event.type === "state_changed") ?? events.at(-1);
    if (changed === undefined) throw fleet.notFound(workerId);
    return recordView(changed.worker);
  }
}
