/**
 * A binary heap ordered by `before`: the element for which `before(a, b)`
 * holds against every other is at the top. push and pop are O(log n).
 */
export class BinaryHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  /** The top element, or undefined when empty. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let index = items.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!this.before(item, items[parent]!)) break;
      items[index] = items[parent]!;
      index = parent;
    }
    items[index] = item;
  }

  /** Removes and returns the top element, or undefined when empty. */
  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) this.sinkFromRoot(last);
    return top;
  }

  /** Replaces the top element with `item`: one sift instead of a pop and a push. */
  replaceTop(item: T): void {
    if (this.items.length === 0) this.items.push(item);
    else this.sinkFromRoot(item);
  }

  /** Removes every element and returns them in no particular order. */
  drain(): T[] {
    return this.items.splice(0);
  }

  private sinkFromRoot(item: T): void {
    const items = this.items;
    const length = items.length;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && this.before(items[right]!, items[left]!) ? right : left;
      if (!this.before(items[child]!, item)) break;
      items[index] = items[child]!;
      index = child;
    }
    items[index] = item;
  }
}

/**
 * The k best items by `better`, best first, in O(n log k): a heap of the k
 * best so far whose top is the worst of them, so most candidates cost one
 * comparison. No sort of all candidates.
 */
export function selectTopK<T>(candidates: Iterable<T>, k: number, better: (a: T, b: T) => boolean): T[] {
  if (k <= 0) return [];
  const heap = new BinaryHeap<T>((a, b) => better(b, a));
  for (const candidate of candidates) {
    if (heap.size < k) heap.push(candidate);
    else if (better(candidate, heap.peek()!)) heap.replaceTop(candidate);
  }
  return heap.drain().sort((a, b) => (better(a, b) ? -1 : better(b, a) ? 1 : 0));
}
