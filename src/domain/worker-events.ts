import type { HealthStatus } from "./health.js";
import type { StoredEvent, WorkerEventType } from "./registry-store.js";
import type { WorkerView } from "./worker-view.js";

/** Why a worker left the registry: UnregisterWorker, cleanup past its TTL, or a new registration of its node_id. */
export type RemovalReason = "unregistered" | "expired" | "replaced";

/** One change to a worker, numbered by the registry-wide revision. */
export interface WorkerEvent {
  readonly revision: number;
  readonly type: WorkerEventType;
  /** The worker right after the event. */
  readonly worker: WorkerView;
  /** Wall-clock ms. */
  readonly occurredAtMs: number;
  /** For health_changed: the health before. */
  readonly previousHealth?: HealthStatus;
  /** For unregistered and removed: why the worker left. */
  readonly reason?: RemovalReason;
}

/** What a watcher asks for. Only static or before/after-comparable conditions: see {@link eventMatches}. */
export interface WatchFilter {
  /** The worker must have all of them. */
  readonly capabilities: readonly string[];
  /** The worker's health before or after the event must be one of them; empty matches any. */
  readonly healthStatuses: readonly HealthStatus[];
}

/**
 * Whether a watcher with this filter gets the event. Health is compared
 * before and after, so a watcher of healthy workers also sees the event that
 * makes one degraded.
 */
export function eventMatches(filter: WatchFilter, event: WorkerEvent): boolean {
  if (!filter.capabilities.every((capability) => event.worker.capabilities.includes(capability))) return false;
  if (filter.healthStatuses.length === 0) return true;
  return (
    filter.healthStatuses.includes(event.worker.healthStatus) ||
    (event.previousHealth !== undefined && filter.healthStatuses.includes(event.previousHealth))
  );
}

/** The payload the log stores for an event. */
export function encodeEventPayload(worker: WorkerView, previousHealth: HealthStatus | undefined, reason?: RemovalReason): string {
  return JSON.stringify({ worker, ...(previousHealth === undefined ? {} : { previousHealth }), ...(reason === undefined ? {} : { reason }) });
}

/** An event read back from the log. */
export function decodeStoredEvent(stored: StoredEvent): WorkerEvent {
  const { worker, previousHealth, reason } = JSON.parse(stored.payload) as { worker: WorkerView; previousHealth?: HealthStatus; reason?: RemovalReason };
  return {
    revision: stored.revision,
    type: stored.type,
    worker,
    occurredAtMs: stored.occurredAtMs,
    ...(previousHealth === undefined ? {} : { previousHealth }),
    ...(reason === undefined ? {} : { reason }),
  };
}

/** Receives the live events of one watcher. */
export type WatchListener = (event: WorkerEvent) => void;

/** Fans live events out to watchers. Each listener decides what to do when its watcher falls behind. */
export class WatchHub {
  private readonly watchers = new Map<WatchListener, WatchFilter>();

  /** The number of watchers. */
  get size(): number {
    return this.watchers.size;
  }

  /** Adds a watcher; the returned function removes it. */
  subscribe(filter: WatchFilter, listener: WatchListener): () => void {
    this.watchers.set(listener, filter);
    return () => {
      this.watchers.delete(listener);
    };
  }

  /** Delivers an event to every watcher whose filter matches it. */
  publish(event: WorkerEvent): void {
    for (const [listener, filter] of this.watchers) if (eventMatches(filter, event)) listener(event);
  }
}
