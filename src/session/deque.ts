/**
 * A FIFO ring buffer for session queues. No storage until the first push: an idle session costs
 * nothing here. Grows by doubling; shift and push are O(1).
 */
export class Deque<T> {
  private buf: Array<T | undefined> | undefined;
  private head = 0;
  private len = 0;

  get length(): number {
    return this.len;
  }

  push(item: T): void {
    const buf = this.ensureRoom();
    buf[(this.head + this.len) & (buf.length - 1)] = item;
    this.len++;
  }

  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const buf = this.buf as Array<T | undefined>;
    const item = buf[this.head];
    buf[this.head] = undefined;
    this.head = (this.head + 1) & (buf.length - 1);
    this.len--;
    return item;
  }

  peek(): T | undefined {
    return this.len === 0 ? undefined : (this.buf as Array<T | undefined>)[this.head];
  }

  clear(): void {
    this.buf = undefined;
    this.head = 0;
    this.len = 0;
  }

  /** The element `i` places from the front, or undefined. */
  at(i: number): T | undefined {
    const buf = this.buf;
    if (buf === undefined || i < 0 || i >= this.len) return undefined;
    return buf[(this.head + i) & (buf.length - 1)];
  }

  *[Symbol.iterator](): IterableIterator<T> {
    const buf = this.buf;
    if (buf === undefined) return;
    const mask = buf.length - 1;
    for (let i = 0; i < this.len; i++) yield buf[(this.head + i) & mask] as T;
  }

  private ensureRoom(): Array<T | undefined> {
    let buf = this.buf;
    if (buf === undefined) {
      buf = this.buf = new Array<T | undefined>(8);
      this.head = 0;
      return buf;
    }
    if (this.len < buf.length) return buf;
    const bigger = new Array<T | undefined>(buf.length * 2);
    const mask = buf.length - 1;
    for (let i = 0; i < this.len; i++) bigger[i] = buf[(this.head + i) & mask];
    this.buf = bigger;
    this.head = 0;
    return bigger;
  }
}
