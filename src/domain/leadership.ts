import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";
import type { Lease, RegistryStore } from "./registry-store.js";

/** Leadership as operators see it. */
export interface LeadershipStatus {
  /** This process's name among the replicas. */
  readonly owner: string;
  readonly leading: boolean;
  /** Who holds the lease, as last seen ("" if nobody does). */
  readonly leader: string;
  /** The lease's epoch while leading, else the last one seen (0: none). */
  readonly epoch: number;
  /** Wall-clock ms since when this process leads, or undefined. */
  readonly leadingSinceMs: number | undefined;
  /** Times this process became leader. */
  readonly terms: number;
}

/**
 * Holds (or waits for) the lease that lets one registry process at a time run
 * the fleet-wide schedules. {@link renew} takes the lease when it is free and
 * keeps it; {@link current} is the lease to fence leader writes with, or
 * undefined when this process must not act: never leading, lost, or not
 * renewed in time (measured on this process's monotonic clock from when the
 * renewal was sent, so a pause past the TTL ends leadership here before the
 * store lets another process take over).
 */
export class Leadership {
  private lease: Lease | undefined;
  /** The lease as the store last showed it, whoever holds it. */
  private seen: Lease | undefined;
  private validUntilMono = 0;
  private leadingSinceMs: number | undefined;
  private terms = 0;
  private lastEpoch = 0;

  constructor(
    private readonly store: Pick<RegistryStore, "lead" | "resign" | "shared">,
    private readonly owner: string,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Called when this process starts or stops leading. */
    private readonly onChange: (leading: boolean) => void,
  ) {}

  /** The lease while this process leads, else undefined. */
  get current(): Lease | undefined {
    if (this.lease !== undefined && this.clock.monotonic() >= this.validUntilMono) this.lose("not renewed in time");
    return this.lease;
  }

  status(): LeadershipStatus {
    const leading = this.current !== undefined;
    const leader = leading ? this.owner : this.seen !== undefined && this.seen.owner !== this.owner ? this.seen.owner : "";
    return { owner: this.owner, leading, leader, epoch: this.lastEpoch, leadingSinceMs: leading ? this.leadingSinceMs : undefined, terms: this.terms };
  }

  /** Takes the lease if it is free, or renews it. A store error ends leadership here (the store may have moved on). */
  async renew(): Promise<void> {
    const sentMono = this.clock.monotonic();
    let lease: Lease;
    try {
      lease = await this.store.lead(this.owner, this.ttlMs);
    } catch (error) {
      if (this.lease !== undefined) this.lose("the store could not be reached", error);
      return;
    }
    this.seen = lease;
    this.lastEpoch = lease.epoch;
    if (lease.owner !== this.owner) {
      if (this.lease !== undefined) this.lose("another process took the lease");
      return;
    }
    const gained = this.lease === undefined || this.lease.epoch !== lease.epoch;
    this.lease = lease;
    // A store held by this process alone: no other process can take the lease, so it never runs out here.
    this.validUntilMono = this.store.shared ? sentMono + this.ttlMs : Number.POSITIVE_INFINITY;
    if (gained) {
      this.terms++;
      this.leadingSinceMs = this.clock.now();
      this.log.info({ owner: this.owner, epoch: lease.epoch }, "leading: this process runs the fleet-wide schedules");
      this.onChange(true);
    }
  }

  /** The store refused a write made with the lease: another process holds it now. */
  lost(): void {
    if (this.lease !== undefined) this.lose("a write was fenced off");
  }

  /** Gives the lease up (at shutdown), so another process may take over at once. */
  async resign(): Promise<void> {
    if (this.lease === undefined) return;
    this.lease = undefined;
    this.onChange(false);
    await this.store.resign(this.owner).catch((error: unknown) => this.log.warn({ err: error }, "could not give the lease up; it expires by itself"));
  }

  private lose(reason: string, error?: unknown): void {
    this.lease = undefined;
    this.leadingSinceMs = undefined;
    this.log.warn({ owner: this.owner, reason, ...(error === undefined ? {} : { err: error }) }, "no longer leading");
    this.onChange(false);
  }
}
