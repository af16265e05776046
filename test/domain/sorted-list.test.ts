import { describe, expect, it } from "vitest";
import { SortedList } from "../../src/domain/sorted-list.js";

describe("SortedList", () => {
  it("stays sorted through thousands of inserts and deletes across many blocks", () => {
    const list = new SortedList<number>((a, b) => a - b, 8);
    const model: number[] = [];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let i = 0; i < 5000; i++) {
      const value = next() % 1000;
      if (next() % 3 === 0 && model.length > 0) {
        const victim = model[next() % model.length]!;
        expect(list.delete(victim)).toBe(true);
        model.splice(model.indexOf(victim), 1);
      } else {
        list.insert(value);
        model.push(value);
      }
    }
    model.sort((a, b) => a - b);
    expect([...list]).toEqual(model);
    expect(list.size).toBe(model.length);
    expect(list.delete(-1)).toBe(false);
  });
});
