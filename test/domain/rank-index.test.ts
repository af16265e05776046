import { describe, expect, it } from "vitest";
import { OUT_OF_ROTATION, RankIndex, type RankKey, type Rankable } from "../../src/domain/rank-index.js";
import { seededRandom } from "../support/registry-fixture.js";

interface Item extends Rankable {
  readonly id: string;
  readonly capabilities: readonly string[];
  rankedAs: RankKey | undefined;
}

const item = (id: string, capabilities: readonly string[] = ["coder"]): Item => ({ id, capabilities, rankedAs: undefined });
const key = (tier: number, priority: number, currentTasks = 0): RankKey => ({ tier, priority, currentTasks });
const ids = (items: Iterable<Item>) => [...items].map((i) => i.id);

describe("RankIndex: order", () => {
  it("ranks healthy before degraded before unhealthy, whatever the priority", () => {
    const index = new RankIndex<Item>();
    index.add(item("unhealthy-best"), key(2, 0.99));
    index.add(item("degraded"), key(1, 0.9));
    index.add(item("healthy-worst"), key(0, 0.1));
    expect(ids(index.ranked(undefined))).toEqual(["healthy-worst", "degraded", "unhealthy-best"]);
  });

  it("within a tier: highest priority, then fewest current tasks, then id", () => {
    const index = new RankIndex<Item>();
    index.add(item("c"), key(0, 0.5, 1));
    index.add(item("b"), key(0, 0.5, 1));
    index.add(item("busy"), key(0, 0.5, 3));
    index.add(item("top"), key(0, 0.8, 9));
    index.add(item("a"), key(0, 0.5, 1));
    expect(ids(index.ranked(undefined))).toEqual(["top", "a", "b", "c", "busy"]);
  });

  it("keeps workers out of rotation as members but never ranks them", () => {
    const index = new RankIndex<Item>();
    index.add(item("out"), key(OUT_OF_ROTATION, 1));
    index.add(item("in"), key(0, 0.1));
    expect(ids(index.ranked(undefined))).toEqual(["in"]);
    expect(ids(index.ranked("coder", ["healthy", "degraded", "unhealthy"]))).toEqual(["in"]);
    expect(ids(index.members(undefined)).sort()).toEqual(["in", "out"]);
    expect(index.sizeOf("coder")).toBe(2);
  });

  it("yields only the tiers of the statuses asked for, in tier order whatever the order asked", () => {
    const index = new RankIndex<Item>();
    index.add(item("h"), key(0, 0.5));
    index.add(item("d"), key(1, 0.5));
    index.add(item("u"), key(2, 0.5));
    expect(ids(index.ranked(undefined, ["unhealthy", "healthy"]))).toEqual(["h", "u"]);
    expect(ids(index.ranked(undefined, ["degraded"]))).toEqual(["d"]);
    expect(ids(index.ranked(undefined, []))).toEqual([]);
  });

  it("keeps one ranking per capability, and the whole fleet's under undefined", () => {
    const index = new RankIndex<Item>();
    index.add(item("gpu-coder", ["coder", "gpu"]), key(0, 0.4));
    index.add(item("coder"), key(0, 0.6));
    index.add(item("painter", ["painter"]), key(0, 0.9));
    expect(ids(index.ranked("coder"))).toEqual(["coder", "gpu-coder"]);
    expect(ids(index.ranked("gpu"))).toEqual(["gpu-coder"]);
    expect(ids(index.ranked("sculptor"))).toEqual([]);
    expect(ids(index.ranked(undefined))).toEqual(["painter", "coder", "gpu-coder"]);
    expect([index.sizeOf("coder"), index.sizeOf("gpu"), index.sizeOf("sculptor"), index.sizeOf(undefined)]).toEqual([2, 1, 0, 3]);
  });

  it("reads the best workers lazily: the first is had without walking the rest", () => {
    const index = new RankIndex<Item>();
    for (let i = 0; i < 1_000; i++) index.add(item(`w${i}`), key(0, i / 1_000));
    const ranked = index.ranked("coder")[Symbol.iterator]();
    expect(ranked.next().value?.id).toBe("w999");
    expect(ranked.next().value?.id).toBe("w998");
  });
});

describe("RankIndex: updates and removals", () => {
  it("moves a worker when its key changes, in every capability it has", () => {
    const index = new RankIndex<Item>();
    const a = item("a", ["coder", "gpu"]);
    const b = item("b", ["coder", "gpu"]);
    index.add(a, key(0, 0.9));
    index.add(b, key(0, 0.5));
    index.update(a, key(0, 0.9, 2));
    index.update(a, key(0, 0.1));
    expect(ids(index.ranked("coder"))).toEqual(["b", "a"]);
    expect(ids(index.ranked("gpu"))).toEqual(["b", "a"]);
    index.update(b, key(1, 0.5));
    expect(ids(index.ranked("gpu"))).toEqual(["a", "b"]);
    expect(ids(index.ranked("gpu", ["healthy"]))).toEqual(["a"]);
    expect(a.rankedAs).toEqual(key(0, 0.1));
  });

  it("an update to the same key changes nothing", () => {
    const index = new RankIndex<Item>();
    const a = item("a");
    const filed = key(0, 0.5, 1);
    index.add(a, filed);
    index.update(a, key(0, 0.5, 1));
    expect(a.rankedAs).toBe(filed);
    expect(index.sizeOf("coder")).toBe(1);
  });

  it("an update of a worker out of the index files it", () => {
    const index = new RankIndex<Item>();
    const a = item("a");
    index.update(a, key(0, 0.5));
    expect(ids(index.ranked("coder"))).toEqual(["a"]);
  });

  it("removes a worker from every list it is in, and forgets a capability nobody has any more", () => {
    const index = new RankIndex<Item>();
    const a = item("a", ["coder", "gpu"]);
    index.add(a, key(1, 0.5));
    index.add(item("b"), key(0, 0.5));
    index.remove(a);
    expect(a.rankedAs).toBeUndefined();
    expect(ids(index.members("gpu"))).toEqual([]);
    expect(index.sizeOf("gpu")).toBe(0);
    expect(ids(index.ranked("coder"))).toEqual(["b"]);
    expect(index.sizeOf(undefined)).toBe(1);
    index.remove(a);
    expect(index.sizeOf(undefined)).toBe(1);
    index.add(a, key(0, 0.1));
    expect(ids(index.ranked("gpu"))).toEqual(["a"]);
  });

  it("removes the right worker among ties", () => {
    const index = new RankIndex<Item>();
    const tied = ["a", "b", "c", "d"].map((id) => item(id));
    for (const i of tied) index.add(i, key(0, 0.5, 1));
    index.remove(tied[2]!);
    expect(ids(index.ranked("coder"))).toEqual(["a", "b", "d"]);
  });
});

describe("RankIndex: agrees with a sort after any sequence of changes", () => {
  it("ranked() equals sorting the members by the documented order, per capability and status", () => {
    const random = seededRandom(3);
    const capabilityPool = ["coder", "gpu", "painter"];
    const index = new RankIndex<Item>();
    const live = new Map<string, Item>();
    for (let step = 0; step < 3_000; step++) {
      const id = `w${Math.floor(random() * 60)}`;
      const existing = live.get(id);
      // Few distinct priorities and task counts, so ties are common.
      const next = key(Math.floor(random() * 4), Math.floor(random() * 4) / 4, Math.floor(random() * 3));
      if (existing === undefined) {
        const worker = item(id, capabilityPool.filter(() => random() < 0.6));
        index.add(worker, next);
        live.set(id, worker);
      } else if (random() < 0.2) {
        index.remove(existing);
        live.delete(id);
      } else {
        index.update(existing, next);
      }
    }
    const expected = (capability: string | undefined, tiers: readonly number[]) =>
      [...live.values()]
        .filter((w) => (capability === undefined || w.capabilities.includes(capability)) && tiers.includes(w.rankedAs!.tier))
        .sort((a, b) => {
          const [ka, kb] = [a.rankedAs!, b.rankedAs!];
          return ka.tier - kb.tier || kb.priority - ka.priority || ka.currentTasks - kb.currentTasks || (a.id < b.id ? -1 : 1);
        })
        .map((w) => w.id);
    for (const capability of [undefined, ...capabilityPool]) {
      expect(ids(index.ranked(capability))).toEqual(expected(capability, [0, 1, 2]));
      expect(ids(index.ranked(capability, ["degraded", "unhealthy"]))).toEqual(expected(capability, [1, 2]));
      expect(ids(index.members(capability)).sort()).toEqual(expected(capability, [0, 1, 2, 3]).sort());
      expect(index.sizeOf(capability)).toBe(expected(capability, [0, 1, 2, 3]).length);
    }
  });
});
