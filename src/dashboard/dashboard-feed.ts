import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { ScoringOptions } from "../domain/scoring.js";
import type { WorkerEvent } from "../domain/worker-events.js";
import type { RegistryStats, WorkerRegistry } from "../domain/worker-registry.js";
import {
  toDashboardEvent,
  toDashboardWorker,
  type DashboardEvent,
  type DashboardStats,
  type DashboardThresholds,
  type DashboardWorker,
  type EventsMessage,
  type SnapshotMessage,
  type TickMessage,
  type TopPerformers,
} from "./dashboard-messages.js";
import type { SseStream } from "./sse-stream.js";

/** What the feed reads from the registry, and nothing more. */
export type DashboardSource = Pick<WorkerRegistry, "watch" | "discoverWorkers" | "getRegistryStats" | "getWorkersForLoadBalancing" | "forEachLastHeartbeat">;

/** Options of {@link DashboardFeed}. Every field is optional. */
export interface DashboardFeedOptions {
  /** How long watch events are gathered into one message. Default 50 ms. */
  eventBatchMs?: number;
  /** How often heartbeat times, the server clock and stats are pushed. Default 1000 ms. */
  tickMs?: number;
  /** Bytes that may wait for a browser that is not reading before it is resynchronised. Default 8 MiB. */
  maxBufferedBytes?: number;
  /**
   * Workers read per DiscoverWorkers page while taking a snapshot; at most the
   * registry's `limits.maxPageSize`. Fewer, larger pages take the snapshot
   * faster (each page walks the fleet). Default 1000.
   */
  snapshotPageSize?: number;
  /** How many of the best workers every message names, best first (see {@link TopPerformers}); 1 to the registry's `limits.maxPageSize`. Default 5. */
  topPerformers?: number;
}

interface CompiledFeedOptions {
  readonly eventBatchMs: number;
  readonly tickMs: number;
  readonly maxBufferedBytes: number;
  readonly snapshotPageSize: number;
  readonly topPerformers: number;
}

const ALL_WORKERS = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 } as const;

/**
 * The dashboard's live data, shared by every open page: one watch on the
 * registry while at least one page is open, whatever their number.
 *
 * A page gets a snapshot when it connects (every worker with its priority,
 * the stats, the revision), then the watch events in batches, each event
 * converted once and each batch serialised once for all pages.
 *
 * Every message names the top performers, read from
 * GetWorkersForLoadBalancing as it is sent (O(count), from the front of the
 * registry's rank index): the ranking rule stays in the domain, and the page
 * shows the list without knowing it.
 *
 * Heartbeats are not watch events. Once per tick the feed walks the fleet's
 * heartbeat times in memory (O(workers), no views, no disk) and sends only
 * the ones that changed since the previous tick, to all pages at once; a page
 * ages them between ticks against the server's clock. So the cost is one walk
 * per tick for the whole server, never a poll per page, and the bytes sent
 * are proportional to the heartbeats received.
 *
 * Ordering: a snapshot is always preceded by the flush of the pending batch
 * to the pages already open, so every event a page receives is newer than
 * its snapshot.
 */
export class DashboardFeed {
  private readonly options: CompiledFeedOptions;
  private readonly streams = new Set<SseStream>();
  /** Pages connected or connecting: the watch runs while there is one. */
  private users = 0;
  private watching: Promise<() => void> | undefined;
  /** Tells a superseded watch's late events apart from the current one's. */
  private generation = 0;
  private pending: DashboardEvent[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  /** Heartbeat time of each worker as of the last tick. */
  private readonly heartbeats = new Map<string, number>();
  private closed = false;

  /** @throws RangeError when `options.topPerformers` is not an integer of at least 1. */
  constructor(
    private readonly source: DashboardSource,
    private readonly scoring: ScoringOptions,
    private readonly thresholds: DashboardThresholds,
    private readonly clock: Clock,
    private readonly log: Logger,
    options: DashboardFeedOptions = {},
  ) {
    this.options = {
      eventBatchMs: options.eventBatchMs ?? 50,
      tickMs: options.tickMs ?? 1000,
      maxBufferedBytes: options.maxBufferedBytes ?? 8 * 1024 * 1024,
      snapshotPageSize: options.snapshotPageSize ?? 1000,
      topPerformers: options.topPerformers ?? 5,
    };
    // 0 would read as "the registry's default limit" (100) on every message.
    if (!Number.isInteger(this.options.topPerformers) || this.options.topPerformers < 1) {
      throw new RangeError(`topPerformers must be an integer of at least 1, got ${this.options.topPerformers}`);
    }
  }

  /** Bytes a stream may buffer before it is resynchronised (for {@link SseStream}). */
  get maxBufferedBytes(): number {
    return this.options.maxBufferedBytes;
  }

  /** Pages open now. */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Adds a page: starts the watch if it is the first, sends the snapshot,
   * then live messages until the stream closes.
   * @throws the registry's error when the watch cannot start (ShuttingDownError); the stream is closed.
   */
  async attach(stream: SseStream): Promise<void> {
    if (this.closed) return stream.close();
    this.users++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.streams.delete(stream);
      if (--this.users === 0) this.stop();
    };
    stream.onClose(release);
    try {
      await this.start();
    } catch (error) {
      stream.close();
      throw error;
    }
    if (stream.closed || this.closed) return stream.close();
    this.sendSnapshot(stream);
    this.streams.add(stream);
    this.log.debug({ pages: this.streams.size }, "dashboard page connected");
  }

  /** Sends a fresh snapshot to a stream that fell behind. */
  resync(stream: SseStream): void {
    if (!this.streams.has(stream)) return;
    this.log.debug({}, "dashboard page fell behind; resynchronising");
    this.sendSnapshot(stream);
  }

  /** Ends every page's stream and the watch. Pages opened afterwards are closed at once. */
  close(): void {
    this.closed = true;
    for (const stream of [...this.streams]) stream.close();
    this.stop();
  }

  private start(): Promise<unknown> {
    if (this.watching !== undefined) return this.watching;
    const generation = ++this.generation;
    const watching = this.source.watch(ALL_WORKERS, 0, (event) => {
      if (generation === this.generation) this.receive(event);
    });
    this.watching = watching;
    watching.catch(() => {
      if (this.watching === watching) this.watching = undefined;
    });
    // The baseline for the first tick: what a new page's snapshot already shows.
    this.heartbeats.clear();
    this.source.forEachLastHeartbeat((id, atMs) => this.heartbeats.set(id, atMs));
    this.tickTimer = setInterval(() => this.tick(), this.options.tickMs);
    this.tickTimer.unref();
    return watching;
  }

  private stop(): void {
    const watching = this.watching;
    this.watching = undefined;
    this.generation++;
    watching?.then(
      (unsubscribe) => unsubscribe(),
      () => {},
    );
    clearInterval(this.tickTimer);
    clearTimeout(this.batchTimer);
    this.tickTimer = undefined;
    this.batchTimer = undefined;
    this.pending = [];
    this.heartbeats.clear();
  }

  private receive(event: WorkerEvent): void {
    if (event.type === "unregistered" || event.type === "removed") this.heartbeats.delete(event.worker.id);
    if (this.streams.size === 0) return;
    this.pending.push(toDashboardEvent(event, this.scoring));
    this.batchTimer ??= setTimeout(() => this.flush(), this.options.eventBatchMs);
  }

  private flush(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.pending.length === 0) return;
    const message: EventsMessage = { events: this.pending, stats: this.stats(), topPerformers: this.topPerformers() };
    this.pending = [];
    this.broadcast("events", JSON.stringify(message));
  }

  private tick(): void {
    // Pending events first, so the tick's top performers are all workers the pages know.
    this.flush();
    const heartbeats: [string, number][] = [];
    this.source.forEachLastHeartbeat((id, atMs) => {
      if (this.heartbeats.get(id) === atMs) return;
      this.heartbeats.set(id, atMs);
      heartbeats.push([id, atMs]);
    });
    const message: TickMessage = { serverTimeMs: this.clock.now(), heartbeats, stats: this.stats(), topPerformers: this.topPerformers() };
    this.broadcast("tick", JSON.stringify(message));
  }

  private broadcast(name: string, json: string): void {
    for (const stream of this.streams) stream.send(name, json);
  }

  private sendSnapshot(stream: SseStream): void {
    this.flush();
    const workers: DashboardWorker[] = [];
    let token = "";
    do {
      // Synchronous from the first page to the last, so the snapshot is of one moment.
      const page = this.source.discoverWorkers(ALL_WORKERS, this.options.snapshotPageSize, token);
      for (const view of page.workers) workers.push(toDashboardWorker(view, this.scoring));
      token = page.nextPageToken;
    } while (token !== "");
    const stats = this.stats();
    const message: SnapshotMessage = {
      revision: stats.revision,
      serverTimeMs: this.clock.now(),
      thresholds: this.thresholds,
      stats,
      workers,
      topPerformers: this.topPerformers(),
    };
    stream.send("snapshot", JSON.stringify(message));
  }

  private stats(): DashboardStats {
    return toDashboardStats(this.source.getRegistryStats());
  }

  /** The registry's own order, read from the front of its rank index: the feed does not rank. */
  private topPerformers(): TopPerformers {
    return this.source.getWorkersForLoadBalancing(ALL_WORKERS, this.options.topPerformers).map((ranked) => ranked.worker.id);
  }
}

/** The registry's stats as the dashboard shows them. */
export function toDashboardStats(stats: RegistryStats): DashboardStats {
  const completions = stats.tasksCompleted + stats.tasksFailed;
  return {
    totalWorkers: stats.totalWorkers,
    healthyWorkers: stats.healthyWorkers,
    degradedWorkers: stats.degradedWorkers,
    unhealthyWorkers: stats.unhealthyWorkers,
    totalCapacity: stats.totalCapacity,
    usedCapacity: stats.usedCapacity,
    tasksCompleted: stats.tasksCompleted,
    tasksFailed: stats.tasksFailed,
    successRate: completions === 0 ? null : stats.successRate,
    activeReservations: stats.activeReservations,
    revision: stats.revision,
    evictionPaused: stats.eviction.paused,
    evictionPauseReason: stats.eviction.reason,
    replica: {
      id: stats.leadership.owner,
      store: stats.replication.store,
      leading: stats.leadership.leading,
      leader: stats.leadership.leader,
      lagMs: stats.replication.lagMs,
    },
  };
}
