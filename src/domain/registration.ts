import type { ChangeFeed } from "./change-feed.js";
import type { Clock } from "./clock.js";
import { LimitExceededError } from "./errors.js";
import type { EvictionGuard } from "./eviction-guard.js";
import { recordView, type Fleet } from "./fleet.js";
import type { Logger } from "./logger.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import { DuplicateWorkerIdError, type RegistryStore } from "./registry-store.js";
import { validateRegistration, type RegistrationInput } from "./validation.js";
import type { WorkerRecord } from "./worker-record.js";
import { issueWorkerToken } from "./worker-token.js";
import type { WorkerView } from "./worker-view.js";

/** A new worker, with the token it alone receives (the registry keeps only its hash). */
export type RegisteredWorker = WorkerView & { readonly token: string };

/** Tries at a fresh id when the one drawn is taken. */
const ID_ATTEMPTS = 3;

/**
 * How a worker joins and leaves: RegisterWorker (which replaces the node's
 * previous worker, in the store's transaction) and UnregisterWorker. Both are
 * committed before they are answered, and reach the read model as events.
 */
export class Registrations {
  /** Registrations accepted but not yet committed: they count against the worker limit. */
  private inFlight = 0;
  /** The registration in progress for each node_id: those of one node_id run one after another. */
  private readonly byNode = new Map<string, Promise<unknown>>();

  constructor(
    private readonly deps: {
      readonly store: RegistryStore;
      readonly fleet: Fleet;
      readonly feed: ChangeFeed;
      readonly guard: EvictionGuard;
      readonly clock: Clock;
      readonly log: Logger;
      readonly options: CompiledRegistryOptions;
      readonly newWorkerId: () => string;
      readonly newWorkerSecret: () => string;
    },
  ) {}

  /**
   * Registers a worker; durable before it resolves. `registeredBy` is the
   * hash of the role token that registers it (null with authentication off).
   * @throws InvalidArgumentError; LimitExceededError at `limits.maxWorkers`; StoreUnavailableError.
   */
  async register(input: RegistrationInput, registeredBy: string | null): Promise<RegisteredWorker> {
    const { options, fleet } = this.deps;
    validateRegistration(input, options.limits);
    const { maxWorkers } = options.limits;
    // Registrations still being committed count too: concurrent ones must not overshoot the limit together.
    if (fleet.size + this.inFlight >= maxWorkers) {
      throw new LimitExceededError(`the registry holds its limit of ${maxWorkers} workers; unregister some or raise --max-workers`);
    }
    this.inFlight++;
    // One node_id at a time, so that each registration sees (and replaces) the one before it.
    const previous = this.byNode.get(input.nodeId);
    const mine = (previous === undefined ? Promise.resolve() : previous.catch(() => undefined)).then(() => this.insert(input, registeredBy));
    this.byNode.set(input.nodeId, mine);
    try {
      return await mine;
    } finally {
      this.inFlight--;
      if (this.byNode.get(input.nodeId) === mine) this.byNode.delete(input.nodeId);
    }
  }

  /**
   * Removes a worker at once, with its reservations.
   * @throws WorkerNotFoundError; StoreUnavailableError.
   */
  async unregister(workerId: string): Promise<void> {
    const { events } = await this.deps.store.unregisterWorker(workerId, this.deps.clock.now());
    await this.deps.feed.offer(events);
    if (events.length === 0) throw this.deps.fleet.notFound(workerId);
    this.deps.log.info({ workerId }, "worker unregistered");
  }

  private async insert(input: RegistrationInput, registeredBy: string | null): Promise<RegisteredWorker> {
    const { store, feed, fleet, clock, log } = this.deps;
    for (let attempt = 1; ; attempt++) {
      const now = clock.now();
      const id = this.deps.newWorkerId();
      const { token, tokenHash } = issueWorkerToken(id, this.deps.newWorkerSecret());
      const record: WorkerRecord = {
        id,
        nodeId: input.nodeId,
        capabilities: [...input.capabilities],
        maxConcurrentTasks: input.maxConcurrentTasks,
        currentTasks: 0,
        tasksCompleted: 0,
        tasksFailed: 0,
        totalTaskDurationMs: 0,
        registeredAtMs: now,
        lastHeartbeatAtMs: now,
        health: "healthy",
        tokenHash,
        registeredBy,
        labels: { ...input.labels },
        version: input.version ?? "",
        state: "active",
        drainDeadlineMs: null,
      };
      let events;
      try {
        ({ events } = await store.registerWorker(record, now));
      } catch (error) {
        if (error instanceof DuplicateWorkerIdError && attempt < ID_ATTEMPTS) continue;
        throw error;
      }
      await feed.offer(events);
      for (const event of events) {
        if (event.reason === "replaced") log.info({ workerId: event.worker.id, nodeId: input.nodeId, replacedBy: id }, "worker replaced by a new registration of its node");
      }
      const worker = fleet.get(id);
      // Unregistered (or replaced again) before this answer: it was registered all the same.
      if (worker === undefined) return { ...recordView(record), token };
      // A registration is a sign of life for the eviction guard.
      this.deps.guard.recordHeartbeat(worker);
      log.info({ workerId: id, nodeId: record.nodeId, capabilities: record.capabilities }, "worker registered");
      return { ...fleet.view(worker, clock.monotonic()), token };
    }
  }
}
