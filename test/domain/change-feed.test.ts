import { afterEach, describe, expect, it, vi } from "vitest";
import { ChangeFeed } from "../../src/domain/change-feed.js";
import { silentLogger, type Logger } from "../../src/domain/logger.js";
import type { RegistryStore } from "../../src/domain/registry-store.js";
import type { CommittedEvent } from "../../src/domain/worker-events.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { workerRecord } from "../support/worker-records.js";

type FeedStore = Pick<RegistryStore, "readEvents" | "headRevision" | "shared">;

const stores: SqliteStore[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function setup(options: { store?: FeedStore; appliedRevision?: number; reload?: () => Promise<number>; log?: Logger } = {}) {
  const clock = new FakeClock();
  const sqlite = openSqliteStore({ path: ":memory:" });
  stores.push(sqlite);
  const applied: number[] = [];
  const reload = vi.fn(options.reload ?? (() => Promise.resolve(0)));
  const feed = new ChangeFeed(options.store ?? sqlite, (e) => applied.push(e.revision), reload, options.log ?? silentLogger, () => clock.now(), options.appliedRevision ?? 0);
  /** A registration committed by any writer: this process offers its events, another's reach it only through the log. */
  const commit = async (id: string): Promise<CommittedEvent[]> => [...(await sqlite.registerWorker(workerRecord({ id, lastHeartbeatAtMs: clock.now() }), clock.now())).events];
  return { clock, sqlite, feed, applied, reload, commit };
}

describe("ChangeFeed: applying in revision order", () => {
  it("applies this process's events at once and resolves when they are applied", async () => {
    const { feed, applied, commit } = setup();
    await feed.offer(await commit("a"));
    await feed.offer(await commit("b"));
    expect(applied).toEqual([1, 2]);
    expect(feed.revision).toBe(2);
  });

  it("reads the events another writer committed in between from the log first", async () => {
    const { feed, applied, commit } = setup();
    await feed.offer(await commit("mine-1"));
    await commit("theirs-2");
    await commit("theirs-3");
    await feed.offer(await commit("mine-4"));
    expect(applied).toEqual([1, 2, 3, 4]);
  });

  it("holds an event offered ahead of a gap until the gap is filled, whatever order they are offered in", async () => {
    const { feed, applied, commit } = setup();
    const first = await commit("a");
    const second = await commit("b");
    const done = feed.offer(second);
    await feed.offer(first);
    await done;
    expect(applied).toEqual([1, 2]);
  });

  it("applies each revision once: re-offered, already applied, or both offered and read from the log", async () => {
    const { feed, applied, commit } = setup();
    const one = await commit("a");
    await feed.offer(one);
    await feed.offer(one);
    const two = await commit("b");
    const three = await commit("c");
    await Promise.all([feed.offer(three), feed.offer(two), feed.offer(three), feed.catchUp()]);
    expect(applied).toEqual([1, 2, 3]);
  });

  it("until() resolves once the revision is applied, and at once for one applied already", async () => {
    const { feed, applied, commit } = setup();
    await commit("theirs");
    await feed.until(1);
    expect(applied).toEqual([1]);
    await feed.until(0);
    await feed.until(1);
    expect(applied).toEqual([1]);
  });

  it("an offer of nothing resolves at once", async () => {
    const { feed, applied } = setup();
    await feed.offer([]);
    expect(applied).toEqual([]);
  });

  it("starts after the revision it was built at: earlier events are never applied again", async () => {
    const { sqlite, clock } = setup();
    for (const id of ["a", "b", "c"]) await sqlite.registerWorker(workerRecord({ id }), clock.now());
    const applied: number[] = [];
    const feed = new ChangeFeed(sqlite, (e) => applied.push(e.revision), () => Promise.resolve(0), silentLogger, () => clock.now(), 2);
    await feed.catchUp();
    expect(applied).toEqual([3]);
  });
});

describe("ChangeFeed: a replica's tail", () => {
  it("catchUp applies whatever the log holds beyond what was applied, and nothing when it holds nothing new", async () => {
    const { feed, applied, commit } = setup();
    await feed.catchUp();
    expect(applied).toEqual([]);
    await commit("a");
    await commit("b");
    await feed.catchUp();
    expect(applied).toEqual([1, 2]);
    await feed.catchUp();
    expect(applied).toEqual([1, 2]);
  });

  it("reads more than one page when far behind", async () => {
    const { sqlite, clock, feed, applied } = setup();
    for (let i = 0; i < 1_205; i++) await sqlite.registerWorker(workerRecord({ id: `w${i}` }), clock.now());
    await feed.catchUp();
    expect(applied).toHaveLength(1_205);
    expect(applied.every((revision, i) => revision === i + 1)).toBe(true);
  });

  it("wake(revision) reads up to it; wake(0) reads to the head", async () => {
    const { feed, commit } = setup();
    await commit("a");
    feed.wake(1);
    await feed.until(1);
    expect(feed.revision).toBe(1);
    await commit("b");
    feed.wake(0);
    await vi.waitFor(() => expect(feed.revision).toBe(2));
  });

  it("measures the replication lag of events read from the log, never of its own", async () => {
    const { clock, feed, commit } = setup();
    await feed.offer(await commit("mine"));
    clock.advance(5_000);
    expect(feed.replicationLagMs).toBe(0);
    await commit("theirs");
    clock.advance(250);
    await feed.catchUp();
    expect(feed.replicationLagMs).toBe(250);
  });

  it("catchUpOnMiss reads the log only for a name it does not know, and only when others may write the store", async () => {
    const { sqlite, commit } = setup();
    const heads = vi.fn(() => sqlite.headRevision());
    const make = (shared: boolean) => {
      const applied: number[] = [];
      const store: FeedStore = { shared, headRevision: heads, readEvents: (from, limit) => sqlite.readEvents(from, limit) };
      return { applied, feed: new ChangeFeed(store, (e) => applied.push(e.revision), () => Promise.resolve(0), silentLogger, Date.now, 0) };
    };
    await commit("written-through-another-replica");
    const alone = make(false);
    await alone.feed.catchUpOnMiss(false);
    expect(alone.applied).toEqual([]);
    expect(heads).not.toHaveBeenCalled();
    const replica = make(true);
    await replica.feed.catchUpOnMiss(true);
    expect(heads).not.toHaveBeenCalled();
    await replica.feed.catchUpOnMiss(false);
    expect(replica.applied).toEqual([1]);
  });
});

describe("ChangeFeed: when the log cannot serve the gap", () => {
  it("reloads the read model when the log was pruned past what was applied, then goes on from the snapshot's revision", async () => {
    const { sqlite, clock, commit } = setup();
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (_fields, message) => warnings.push(message) };
    const applied: number[] = [];
    const reload = vi.fn(() => sqlite.load().then((s) => s.revision));
    const feed = new ChangeFeed(sqlite, (e) => applied.push(e.revision), reload, log, () => clock.now(), 0);
    await commit("a");
    clock.advance(1_000);
    await commit("b");
    clock.advance(1_000);
    await commit("c");
    const lease = await sqlite.lead("leader", 5_000);
    // Only the first event is gone: the smallest gap there is.
    expect(await sqlite.prune(clock.now() - 1_500, 0, 100, lease)).toBe(1);
    await feed.until(3);
    expect(reload).toHaveBeenCalledOnce();
    expect(applied).toEqual([]);
    expect(feed.revision).toBe(3);
    expect(warnings).toEqual(["fell behind the event log's retention; reloading the read model"]);
    await commit("d");
    await feed.catchUp();
    expect(applied).toEqual([4]);
  }, 5_000);

  it("a failed read of the log is logged once and retried until it works", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    const { sqlite, commit } = setup();
    let failures = 2;
    const warnings: string[] = [];
    const store: FeedStore = {
      shared: true,
      headRevision: () => sqlite.headRevision(),
      readEvents: (from, limit) => (failures-- > 0 ? Promise.reject(new Error("connection lost")) : sqlite.readEvents(from, limit)),
    };
    const applied: number[] = [];
    const log: Logger = { ...silentLogger, warn: (_fields, message) => warnings.push(message) };
    const feed = new ChangeFeed(store, (e) => applied.push(e.revision), () => Promise.resolve(0), log, Date.now, 0);
    await commit("a");
    const done = feed.until(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(applied).toEqual([]);
    await vi.advanceTimersByTimeAsync(101);
    await done;
    expect(applied).toEqual([1]);
    expect(warnings).toEqual(["cannot read the event log; retrying"]);
  });
});
