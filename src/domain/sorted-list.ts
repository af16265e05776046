/**
 * A list kept in order by `compare`, for sets that change often and are read
 * from the front: insert and delete are O(log n + B) and reading the first k
 * is O(k), with B (the block size) a few hundred. Elements live in blocks of
 * bounded size, so an insertion moves at most one block's worth of pointers,
 * never the whole list as a single sorted array would.
 *
 * `compare` must be a total order that does not change while an element is in
 * the list: to move an element, delete it, change it, insert it again.
 */
export class SortedList<T> {
  private blocks: T[][] = [];
  private count = 0;

  constructor(
    private readonly compare: (a: T, b: T) => number,
    private readonly maxBlock = 512,
  ) {}

  get size(): number {
    return this.count;
  }

  insert(item: T): void {
    const blocks = this.blocks;
    if (blocks.length === 0) {
      blocks.push([item]);
      this.count = 1;
      return;
    }
    const blockIndex = this.blockFor(item);
    const block = blocks[blockIndex]!;
    block.splice(this.position(block, item), 0, item);
    this.count++;
    if (block.length > this.maxBlock) blocks.splice(blockIndex + 1, 0, block.splice(block.length >> 1));
  }

  /** Removes an element equal (by `compare`) to `item`; returns whether one was there. */
  delete(item: T): boolean {
    if (this.blocks.length === 0) return false;
    const blockIndex = this.blockFor(item);
    const block = this.blocks[blockIndex]!;
    const at = this.position(block, item);
    if (at >= block.length || this.compare(block[at]!, item) !== 0) return false;
    block.splice(at, 1);
    this.count--;
    if (block.length === 0) this.blocks.splice(blockIndex, 1);
    return true;
  }

  /** The elements in order, from the first. Do not insert or delete while iterating. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const block of this.blocks) yield* block;
  }

  /** The first block whose last element is not before `item` (or the last block). */
  private blockFor(item: T): number {
    const blocks = this.blocks;
    let low = 0;
    let high = blocks.length - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      const block = blocks[middle]!;
      if (this.compare(block[block.length - 1]!, item) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The index of the first element of `block` that is not before `item`. */
  private position(block: T[], item: T): number {
    let low = 0;
    let high = block.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.compare(block[middle]!, item) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
