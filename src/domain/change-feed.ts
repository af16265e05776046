import type { Logger } from "./logger.js";
import type { RegistryStore } from "./registry-store.js";
import type { CommittedEvent } from "./worker-events.js";

/** How many events one read of the log takes. */
const PAGE = 1000;
/** How long to wait before reading the log again after a failed read. */
const RETRY_MS = 100;

/**
 * The one way changes reach the read model: committed events, applied in
 * revision order, whoever wrote them. A write made here hands its events to
 * {@link offer} and waits until they are applied; events that other processes
 * committed in between (a gap before them) are read from the store's log
 * first. {@link catchUp} reads whatever the log holds beyond what was applied
 * (a replica's tail: woken by a notification or a poll).
 *
 * `apply` is called exactly once per revision, in order, with no gap; if
 * this process fell so far behind that the log no longer holds the events it
 * missed, the read model is rebuilt with `reload` instead.
 */
export class ChangeFeed {
  private applied: number;
  /** Events offered or read ahead of the next revision to apply, and whether they came from the log. */
  private readonly pending = new Map<number, { readonly event: CommittedEvent; readonly fromLog: boolean }>();
  private lagMs = 0;
  private readonly waiters: Array<{ readonly revision: number; readonly resolve: () => void }> = [];
  private reading: Promise<void> | undefined;
  private readFailures = 0;

  constructor(
    private readonly store: Pick<RegistryStore, "readEvents" | "headRevision" | "shared">,
    private readonly apply: (event: CommittedEvent) => void,
    /** Rebuilds the read model from a fresh snapshot; resolves to the snapshot's revision. */
    private readonly reload: () => Promise<number>,
    private readonly log: Logger,
    /** Wall-clock ms, for the replication lag. */
    private readonly now: () => number,
    appliedRevision: number,
  ) {
    this.applied = appliedRevision;
  }

  /** The revision of the last event applied. */
  get revision(): number {
    return this.applied;
  }

  /**
   * How long after its commit the last event read from the log (written by
   * another process) was applied here, by the two processes' wall clocks; 0
   * until one was.
   */
  get replicationLagMs(): number {
    return this.lagMs;
  }

  /**
   * Applies committed events, after every event before them. Resolves once
   * they are applied (at once when nothing is missing before them).
   */
  offer(events: readonly CommittedEvent[]): Promise<void> {
    let last = 0;
    for (const event of events) {
      last = Math.max(last, event.revision);
      if (event.revision > this.applied && !this.pending.has(event.revision)) this.pending.set(event.revision, { event, fromLog: false });
    }
    this.drain();
    return this.until(last);
  }

  /** Resolves once every revision up to `revision` is applied. */
  until(revision: number): Promise<void> {
    if (revision <= this.applied) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ revision, resolve });
      this.fillGap();
    });
  }

  /** Reads and applies everything the log holds beyond what was applied. */
  async catchUp(): Promise<void> {
    const head = await this.store.headRevision();
    if (head > this.applied) await this.until(head);
  }

  /**
   * A caller names a worker or a reservation this process has not applied
   * (`known` false): with a shared store it may have been written through
   * another replica a moment ago, so the log is read to its head first and
   * the caller is not told NOT_FOUND during the replication lag. Costs one
   * read of the head, on a miss only.
   */
  async catchUpOnMiss(known: boolean): Promise<void> {
    if (!known && this.store.shared) await this.catchUp();
  }

  /**
   * A notification that events up to `revision` were committed (0: unknown):
   * reads them unless they are applied already. Never rejects.
   */
  wake(revision: number): void {
    if (revision > 0) {
      if (revision > this.applied) void this.until(revision);
    } else {
      this.catchUp().catch((error: unknown) => this.log.warn({ err: error }, "cannot read the log's head; the poll will retry"));
    }
  }

  private drain(): void {
    for (let next = this.pending.get(this.applied + 1); next !== undefined; next = this.pending.get(this.applied + 1)) {
      const { event, fromLog } = next;
      this.pending.delete(event.revision);
      this.applied = event.revision;
      if (fromLog) this.lagMs = Math.max(0, this.now() - event.occurredAtMs);
      this.apply(event);
    }
    if (this.waiters.length > 0) {
      const ready = this.waiters.filter((w) => w.revision <= this.applied);
      if (ready.length > 0) {
        this.waiters.splice(0, this.waiters.length, ...this.waiters.filter((w) => w.revision > this.applied));
        for (const waiter of ready) waiter.resolve();
      }
    }
    this.fillGap();
  }

  /** Someone waits for a revision that has not arrived: read the log from the next one. */
  private fillGap(): void {
    if (this.reading !== undefined || (this.waiters.length === 0 && this.pending.size === 0)) return;
    this.reading = (async () => {
      let progressed = false;
      try {
        const from = this.applied + 1;
        const page = await this.store.readEvents(from, PAGE);
        this.readFailures = 0;
        if (page.length > 0 && page[0]!.revision > from) {
          // The log was pruned past what this process applied: the changes in between are gone, so only a
          // fresh snapshot can bring the read model back.
          this.log.warn({ applied: this.applied, oldestKept: page[0]!.revision }, "fell behind the event log's retention; reloading the read model");
          this.pending.clear();
          this.applied = Math.max(this.applied, await this.reload());
          progressed = true;
        } else {
          for (const event of page) if (event.revision > this.applied && !this.pending.has(event.revision)) this.pending.set(event.revision, { event, fromLog: true });
          progressed = page.length > 0;
        }
      } catch (error) {
        if (this.readFailures++ === 0) this.log.warn({ err: error, applied: this.applied }, "cannot read the event log; retrying");
      }
      if (!progressed) await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      this.reading = undefined;
      this.drain();
    })();
  }
}
