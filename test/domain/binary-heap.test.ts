import { describe, expect, it } from "vitest";
import { BinaryHeap, selectTopK } from "../../src/domain/binary-heap.js";

describe("BinaryHeap", () => {
  it("pops in order, whatever the insertion order", () => {
    const heap = new BinaryHeap<number>((a, b) => a < b);
    const values = Array.from({ length: 500 }, (_, i) => (i * 7919) % 503);
    values.forEach((v) => heap.push(v));
    const popped: number[] = [];
    for (let v = heap.pop(); v !== undefined; v = heap.pop()) popped.push(v);
    expect(popped).toEqual([...values].sort((a, b) => a - b));
  });
});

describe("selectTopK", () => {
  it("returns the k best, best first, equal to a full sort", () => {
    const values = Array.from({ length: 1000 }, (_, i) => (i * 104729) % 1009);
    expect(selectTopK(values, 10, (a, b) => a > b)).toEqual([...values].sort((a, b) => b - a).slice(0, 10));
  });

  it("returns everything when k exceeds the candidates, and nothing for k = 0", () => {
    expect(selectTopK([3, 1, 2], 10, (a, b) => a < b)).toEqual([1, 2, 3]);
    expect(selectTopK([3, 1, 2], 0, (a, b) => a < b)).toEqual([]);
  });
});
