import { Deque } from './deque.js';
import type { Clock, Delivery } from './message.js';

/** Deliveries by kind, each with its tag (its place in arrival order) in the matching ring. */
interface Rings {
  readonly lossy: Deque<Delivery>;
  lossyTags: Deque<number>;
  readonly owed: Deque<Delivery>;
  owedTags: Deque<number>;
}

/**
 * Tags are numbered again from 0 once the next would pass this: V8 keeps an integer above 2^30 - 1
 * in an object of its own, so each later push would allocate. A queue that never empties (a
 * subscriber that reads too slowly for good) reaches it after a billion messages.
 */
const TAG_LIMIT = 2 ** 30 - 1;

/**
 * A session's queue: the deliveries waiting for its client, oldest first, with their payload bytes
 * counted. QoS 0 deliveries wait in a ring of their own, apart from QoS 1/2 ones, each tagged with
 * its place in arrival order, so that a full queue knows at once how much dropping QoS 0 messages
 * could free and drops the oldest of them in O(1) wherever it stands. With one ring, every message
 * refused by a queue full of QoS 1 messages (an offline device's, typically) walked the whole queue
 * looking for QoS 0 ones, up to `maxQueuedMessages` steps per message per such session. The rings
 * exist from the first message on: most sessions never queue anything.
 */
export class DeliveryQueue {
  private readonly tagLimit: number;
  private rings: Rings | undefined;
  private nextTag = 0;
  private count = 0;
  /** payload bytes of every queued delivery */
  bytes = 0;
  /** payload bytes of the queued QoS 0 deliveries */
  lossyBytes = 0;
  /** no queued message expires before this (ms); Infinity while none can expire */
  private earliestExpiry = Infinity;

  /** `tagLimit` is for tests: the tag past which tags are numbered again (see TAG_LIMIT) */
  constructor(tagLimit = TAG_LIMIT) {
    this.tagLimit = tagLimit;
  }

  get length(): number {
    return this.count;
  }

  /** queued QoS 0 deliveries, the ones a full queue may drop */
  get lossyLength(): number {
    return this.rings === undefined ? 0 : this.rings.lossy.length;
  }

  push(d: Delivery): void {
    const r = (this.rings ??= { lossy: new Deque(), lossyTags: new Deque(), owed: new Deque(), owedTags: new Deque() });
    const size = d.message.payload.length;
    const expiresAt = d.message.expiresAt;
    if (expiresAt !== undefined && expiresAt < this.earliestExpiry) this.earliestExpiry = expiresAt;
    // a queue holding more than half the limit would be numbered again at every push: its tags grow
    if (this.nextTag >= this.tagLimit && this.count < this.tagLimit / 2) this.renumber(r);
    this.count++;
    this.bytes += size;
    if (d.qos === 0) {
      r.lossy.push(d);
      r.lossyTags.push(this.nextTag++);
      this.lossyBytes += size;
    } else {
      r.owed.push(d);
      r.owedTags.push(this.nextTag++);
    }
  }

  peek(): Delivery | undefined {
    const r = this.rings;
    if (r === undefined) return undefined;
    return lossyFirst(r) ? r.lossy.peek() : r.owed.peek();
  }

  shift(): Delivery | undefined {
    const r = this.rings;
    if (r === undefined) return undefined;
    if (lossyFirst(r)) return this.shiftLossy();
    const d = r.owed.shift();
    if (d === undefined) return undefined;
    r.owedTags.shift();
    this.removed(d.message.payload.length);
    return d;
  }

  /** Removes the oldest QoS 0 delivery, wherever it stands. */
  shiftLossy(): Delivery | undefined {
    const r = this.rings;
    const d = r?.lossy.shift();
    if (d === undefined) return undefined;
    (r as Rings).lossyTags.shift();
    const size = d.message.payload.length;
    this.lossyBytes -= size;
    this.removed(size);
    return d;
  }

  clear(): void {
    this.rings = undefined;
    this.nextTag = 0;
    this.count = 0;
    this.bytes = 0;
    this.lossyBytes = 0;
    this.earliestExpiry = Infinity;
  }

  /**
   * Takes out every delivery whose message has expired and returns them; undefined when nothing
   * could have. The clock is read, and the queue walked, only once the earliest expiry it holds
   * may have passed, so a queue of messages that do not expire costs nothing here.
   */
  removeExpired(clock: Clock): Delivery[] | undefined {
    const r = this.rings;
    if (r === undefined || this.earliestExpiry === Infinity) return undefined;
    const now = clock.now();
    if (now < this.earliestExpiry) return undefined;
    const removed: Delivery[] = [];
    const lossy = this.sweep(r.lossy, r.lossyTags, now, removed);
    const owed = this.sweep(r.owed, r.owedTags, now, removed);
    this.earliestExpiry = Math.min(lossy, owed);
    if (this.count === 0) this.nextTag = 0;
    return removed;
  }

  /** Keeps a ring's live deliveries in order, adding the expired ones to `removed`; returns the earliest expiry among the live. */
  private sweep(ring: Deque<Delivery>, tags: Deque<number>, now: number, removed: Delivery[]): number {
    let earliest = Infinity;
    for (let n = ring.length; n > 0; n--) {
      const d = ring.shift() as Delivery;
      const tag = tags.shift() as number;
      const expiresAt = d.message.expiresAt;
      if (expiresAt === undefined || expiresAt > now) {
        if (expiresAt !== undefined && expiresAt < earliest) earliest = expiresAt;
        ring.push(d);
        tags.push(tag);
        continue;
      }
      const size = d.message.payload.length;
      if (d.qos === 0) this.lossyBytes -= size;
      this.bytes -= size;
      this.count--;
      removed.push(d);
    }
    return earliest;
  }

  /** In queue order; the queue must not change while this runs. */
  *[Symbol.iterator](): IterableIterator<Delivery> {
    const r = this.rings;
    if (r === undefined) return;
    const { lossy, lossyTags, owed, owedTags } = r;
    let i = 0;
    let j = 0;
    while (i < lossy.length || j < owed.length) {
      if (j >= owed.length || (i < lossy.length && (lossyTags.at(i) as number) < (owedTags.at(j) as number))) yield lossy.at(i++) as Delivery;
      else yield owed.at(j++) as Delivery;
    }
  }

  /** Tags the queued deliveries 0, 1, 2... in the order they stand. */
  private renumber(r: Rings): void {
    const lossy = r.lossyTags;
    const owed = r.owedTags;
    const lossyTags = new Deque<number>();
    const owedTags = new Deque<number>();
    let tag = 0;
    for (let i = 0, j = 0; i < lossy.length || j < owed.length; tag++) {
      if (j >= owed.length || (i < lossy.length && (lossy.at(i) as number) < (owed.at(j) as number))) {
        lossyTags.push(tag);
        i++;
      } else {
        owedTags.push(tag);
        j++;
      }
    }
    r.lossyTags = lossyTags;
    r.owedTags = owedTags;
    this.nextTag = tag;
  }

  private removed(size: number): void {
    this.bytes -= size;
    // tags restart once the queue is empty, which keeps them small integers
    if (--this.count === 0) this.nextTag = 0;
  }
}

/** Whether the oldest delivery is QoS 0. */
function lossyFirst(r: Rings): boolean {
  const l = r.lossyTags.peek();
  if (l === undefined) return false;
  const o = r.owedTags.peek();
  return o === undefined || l < o;
}
