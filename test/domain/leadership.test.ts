import { afterEach, describe, expect, it } from "vitest";
import { Leadership } from "../../src/domain/leadership.js";
import { silentLogger, type Logger } from "../../src/domain/logger.js";
import type { Lease, RegistryStore } from "../../src/domain/registry-store.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";

const TTL_MS = 5_000;
type LeaseStore = Pick<RegistryStore, "lead" | "resign" | "shared">;

/**
 * A shared store's lease table, as PostgreSQL keeps it: free or expired leases are taken with a new epoch,
 * the holder renews. `latencyMs` is how long a call takes (the clock moves by it before it answers).
 */
class SharedLeases implements LeaseStore {
  readonly shared = true;
  lease: Lease | undefined;
  latencyMs = 0;
  failing: Error | undefined;
  constructor(private readonly clock: FakeClock) {}
  async lead(owner: string, ttlMs: number): Promise<Lease> {
    this.clock.advance(this.latencyMs);
    if (this.failing !== undefined) throw this.failing;
    const now = this.clock.now();
    const held = this.lease !== undefined && this.lease.expiresAtMs > now;
    if (held && this.lease!.owner !== owner) return this.lease!;
    const epoch = held ? this.lease!.epoch : (this.lease?.epoch ?? 0) + 1;
    this.lease = { owner, epoch, expiresAtMs: now + ttlMs };
    return this.lease;
  }
  async resign(owner: string): Promise<void> {
    if (this.failing !== undefined) throw this.failing;
    if (this.lease?.owner === owner) this.lease = undefined;
  }
}

const stores: SqliteStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function setup(store?: (clock: FakeClock) => LeaseStore) {
  const clock = new FakeClock();
  const sqlite = openSqliteStore({ path: ":memory:" });
  stores.push(sqlite);
  const leaseStore = store?.(clock) ?? sqlite;
  const changes: boolean[] = [];
  const warnings: Array<{ fields: object; message: string }> = [];
  const log: Logger = { ...silentLogger, warn: (fields, message) => warnings.push({ fields, message }) };
  const leadership = new Leadership(leaseStore, "me", TTL_MS, clock, log, (leading) => changes.push(leading));
  return { clock, leadership, changes, warnings, store: leaseStore };
}

describe("Leadership: taking and keeping the lease", () => {
  it("does not lead until it has renewed once", () => {
    const { leadership, changes } = setup();
    expect(leadership.current).toBeUndefined();
    expect(leadership.status()).toEqual({ owner: "me", leading: false, leader: "", epoch: 0, leadingSinceMs: undefined, terms: 0 });
    expect(changes).toEqual([]);
  });

  it("takes a free lease, says so once, and keeps it on every renewal", async () => {
    const { clock, leadership, changes } = setup();
    await leadership.renew();
    const since = clock.now();
    expect(leadership.current).toMatchObject({ owner: "me", epoch: 1 });
    clock.advance(1_000);
    await leadership.renew();
    await leadership.renew();
    expect(changes).toEqual([true]);
    expect(leadership.status()).toEqual({ owner: "me", leading: true, leader: "me", epoch: 1, leadingSinceMs: since, terms: 1 });
  });

  it("on a store it holds alone, the lease never runs out between renewals", async () => {
    const { clock, leadership } = setup();
    await leadership.renew();
    clock.advance(60 * 60_000);
    expect(leadership.current).toBeDefined();
  });
});

describe("Leadership: a shared store", () => {
  it("stops leading at the TTL counted from when the renewal was sent, before the store could give it away", async () => {
    const { clock, leadership, changes, store } = setup((c) => new SharedLeases(c));
    (store as SharedLeases).latencyMs = 2_000;
    const sentMono = clock.monotonic();
    await leadership.renew();
    expect(clock.monotonic()).toBe(sentMono + 2_000);
    clock.advance(TTL_MS - 2_000 - 1);
    expect(leadership.current).toBeDefined();
    clock.advance(1);
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([true, false]);
    expect(leadership.status()).toMatchObject({ leading: false, leadingSinceMs: undefined });
  });

  it("waits while another process holds the lease, and names it", async () => {
    const { leadership, changes, store } = setup((c) => new SharedLeases(c));
    await store.lead("other", TTL_MS);
    await leadership.renew();
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([]);
    expect(leadership.status()).toMatchObject({ leading: false, leader: "other", epoch: 1 });
  });

  it("takes over once the other holder's lease has expired, as a new term", async () => {
    const { clock, leadership, changes, store } = setup((c) => new SharedLeases(c));
    await store.lead("other", TTL_MS);
    clock.advance(TTL_MS);
    await leadership.renew();
    expect(leadership.current).toMatchObject({ owner: "me", epoch: 2 });
    expect(changes).toEqual([true]);
  });

  it("gives leadership up when another process took the lease", async () => {
    const { clock, leadership, changes, store, warnings } = setup((c) => new SharedLeases(c));
    await leadership.renew();
    // Paused past the lease: another process took it meanwhile.
    clock.advance(TTL_MS);
    await store.lead("other", TTL_MS);
    await leadership.renew();
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([true, false]);
    expect(warnings.map((w) => w.fields)).toEqual([expect.objectContaining({ reason: "another process took the lease" })]);
    expect(leadership.status()).toMatchObject({ leading: false, leader: "other", epoch: 2 });
  });

  it("a store error ends leadership while leading, and changes nothing otherwise", async () => {
    const { leadership, changes, store, warnings } = setup((c) => new SharedLeases(c));
    (store as SharedLeases).failing = new Error("connection lost");
    await leadership.renew();
    expect(changes).toEqual([]);
    (store as SharedLeases).failing = undefined;
    await leadership.renew();
    (store as SharedLeases).failing = new Error("connection lost");
    await leadership.renew();
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([true, false]);
    expect(warnings).toEqual([{ fields: expect.objectContaining({ owner: "me", reason: "the store could not be reached" }), message: "no longer leading" }]);
  });

  it("leading again after losing the lease counts a new term", async () => {
    const { clock, leadership, changes } = setup((c) => new SharedLeases(c));
    await leadership.renew();
    clock.advance(TTL_MS);
    expect(leadership.current).toBeUndefined();
    await leadership.renew();
    expect(leadership.status()).toMatchObject({ leading: true, terms: 2, epoch: 2 });
    expect(changes).toEqual([true, false, true]);
  });
});

describe("Leadership: losing and resigning", () => {
  it("lost() ends leadership at once, and does nothing when not leading", async () => {
    const { leadership, changes } = setup();
    leadership.lost();
    expect(changes).toEqual([]);
    await leadership.renew();
    leadership.lost();
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([true, false]);
  });

  it("resign gives the lease back so another process may take it at once", async () => {
    const { leadership, changes, store } = setup((c) => new SharedLeases(c));
    await leadership.renew();
    await leadership.resign();
    expect(leadership.current).toBeUndefined();
    expect(changes).toEqual([true, false]);
    expect(await store.lead("other", TTL_MS)).toMatchObject({ owner: "other" });
    await leadership.resign();
    expect(changes).toEqual([true, false]);
  });

  it("a resignation the store refuses is logged, not thrown: the lease expires by itself", async () => {
    const { leadership, store, warnings } = setup((c) => new SharedLeases(c));
    await leadership.renew();
    (store as SharedLeases).failing = new Error("connection lost");
    await expect(leadership.resign()).resolves.toBeUndefined();
    expect(leadership.current).toBeUndefined();
    expect(warnings.map((w) => w.message)).toEqual(["could not give the lease up; it expires by itself"]);
  });
});
