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

  unshift(item: T): void {
    const buf = this.ensureRoom();
    this.head = (this.head - 1) & (buf.length - 1);
    buf[this.head] = item;
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

  /** Removes and returns the first element matching `pred`, keeping the others in order. */
  removeFirst(pred: (item: T) => boolean): T | undefined {
    const buf = this.buf;
    if (buf === undefined) return undefined;
    const mask = buf.length - 1;
    for (let i = 0; i < this.len; i++) {
      const at = (this.head + i) & mask;
      const item = buf[at] as T;
      if (!pred(item)) continue;
      // close the gap from the front: O(i), so dropping the oldest (the usual case) is O(1)
      for (let j = i; j > 0; j--) {
        buf[(this.head + j) & mask] = buf[(this.head + j - 1) & mask];
      }
      buf[this.head] = undefined;
      this.head = (this.head + 1) & mask;
      this.len--;
      return item;
    }
    return undefined;
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
