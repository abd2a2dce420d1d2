import type { QoS } from '../codec/packets.js';
import type { Delivery, Message } from './message.js';

/** The broker-wide counts the backlog adds to and takes from as it changes (SessionTotals). */
interface Totals {
  queued: number;
  queuedBytes: number;
}

/** Where a persistent session's owed QoS 1/2 deliveries are recorded (its SessionJournal). */
interface Journal {
  queued(delivery: Delivery): void;
  unqueued(delivery: Delivery): void;
}

/**
 * The retained messages one SUBSCRIBE matched, owed from `next` on. Each waits as the bare message
 * (8 bytes of array) until it is about to be sent or journaled, when it becomes its delivery in
 * place: a Delivery costs some 70 bytes, and a subscriber owed a million would hold 70 MB.
 */
interface Batch {
  readonly filter: string;
  readonly entries: Array<Message | Delivery | undefined>;
  next: number;
  /** entries before this index are in the journal (the QoS 1/2 ones) */
  journaled: number;
  /** its place among every batch owed in this process (see `mark`) */
  readonly seq: number;
  /** the QoS granted to the subscription */
  readonly qos: QoS;
  readonly subscriptionIds: number[] | undefined;
}

/**
 * Batches owed so far, by every backlog: a mark taken from one backlog still means "owed before
 * now" to the one the session holds after it emptied and filled again.
 */
let batchesOwed = 0;

/**
 * Retained messages owed to a client for its recent SUBSCRIBEs, in order, sent as its inflight
 * window and socket take them. They wait here, outside the session's bounded queue, so that a
 * filter matching 100,000 retained topics is owed in full instead of overflowing the queue's
 * bound: Mosquitto, for one, sends such a subscriber `max_queued_messages` of them and drops the
 * rest. What bounds them instead is the retained store itself (see Session.oweRetained).
 *
 * A persistent session's journal gets them a slice at a time (`journalAhead`), oldest first, so
 * that owing 100,000 does not hold the event loop for the 400 ms their store writes take at once.
 */
export class RetainedBacklog {
  private readonly batches: Batch[] = [];
  private readonly totals: Totals;
  /** deliveries owed */
  count = 0;
  /** their payload bytes */
  bytes = 0;
  /** the seq of the latest batch added; 0 before any */
  private added = 0;

  /** `totals` are the broker's: what is owed here counts in them until it leaves. */
  constructor(totals: Totals) {
    this.totals = totals;
  }

  /** Owes `messages` (kept as they are, not copied) at most at `qos`, with RETAIN 1 [MQTT-3.3.1-8]. */
  add(filter: string, messages: Message[], qos: QoS, subscriptionIds: number[] | undefined): void {
    if (messages.length === 0) return;
    this.batches.push({ filter, entries: messages, next: 0, journaled: 0, seq: (this.added = ++batchesOwed), qos, subscriptionIds });
    let bytes = 0;
    for (const m of messages) bytes += m.payload.length;
    this.count += messages.length;
    this.bytes += bytes;
    this.totals.queued += messages.length;
    this.totals.queuedBytes += bytes;
  }

  /** The next delivery owed, or undefined. */
  peek(): Delivery | undefined {
    const b = this.batches[0];
    return b === undefined ? undefined : deliveryAt(b, b.next);
  }

  /** Takes the next delivery owed (it is being sent, or will not be), out of `journal` too. */
  shift(journal: Journal | undefined): Delivery | undefined {
    const b = this.batches[0];
    if (b === undefined) return undefined;
    const d = deliveryAt(b, b.next);
    if (journal !== undefined && d.qos > 0 && b.next < b.journaled) journal.unqueued(d);
    // the batch no longer keeps alive a message since replaced in the store
    b.entries[b.next] = undefined;
    b.next++;
    this.count--;
    this.bytes -= d.message.payload.length;
    this.totals.queued--;
    this.totals.queuedBytes -= d.message.payload.length;
    if (b.next === b.entries.length) this.batches.shift();
    return d;
  }

  /** Removes what is still owed for `filter` (unsubscribed, or subscribed again), out of `journal` too. */
  remove(filter: string, journal: Journal | undefined): void {
    for (let i = 0; i < this.batches.length; i++) {
      const b = this.batches[i] as Batch;
      if (b.filter !== filter) continue;
      let bytes = 0;
      for (let j = b.next; j < b.entries.length; j++) {
        const d = deliveryAt(b, j);
        if (journal !== undefined && j < b.journaled && d.qos > 0) journal.unqueued(d);
        bytes += d.message.payload.length;
      }
      const left = b.entries.length - b.next;
      this.count -= left;
      this.bytes -= bytes;
      this.totals.queued -= left;
      this.totals.queuedBytes -= bytes;
      this.batches.splice(i--, 1);
    }
  }

  /** Owes nothing any more (the session ended; its journal goes as a whole). */
  clear(): void {
    this.totals.queued -= this.count;
    this.totals.queuedBytes -= this.bytes;
    this.batches.length = 0;
    this.count = 0;
    this.bytes = 0;
  }

  /** Puts up to `max` owed deliveries not yet in `journal` there, oldest first; returns how many it went past. */
  journalAhead(journal: Journal, max: number): number {
    let done = 0;
    for (const b of this.batches) {
      if (b.journaled < b.next) b.journaled = b.next;
      while (b.journaled < b.entries.length && done < max) {
        const d = deliveryAt(b, b.journaled++);
        if (d.qos > 0) journal.queued(d);
        done++;
      }
      if (done >= max) break;
    }
    return done;
  }

  /** Counts nothing as journaled: the session has a new journal, which will be given everything. */
  forgetJournal(): void {
    for (const b of this.batches) b.journaled = b.next;
  }

  /** Some owed delivery is not in the journal yet. */
  get unjournaled(): boolean {
    for (const b of this.batches) if (b.journaled < b.entries.length) return true;
    return false;
  }

  /** Where the backlog is now, for `journaledUpTo`: what has been owed so far. */
  get mark(): number {
    return this.added;
  }

  /**
   * Everything owed up to `mark` (what is still owed of it: sent, forgotten or cleared entries
   * are not) is in the journal. Batches are journaled oldest first, so later ones do not hold
   * it back.
   */
  journaledUpTo(mark: number): boolean {
    for (const b of this.batches) {
      if (b.seq > mark) return true;
      // those sent before they were journaled are owed no more
      if (Math.max(b.journaled, b.next) < b.entries.length) return false;
    }
    return true;
  }
}

/** The entry at `i` as its delivery, made in place on first need so that it keeps one identity. */
function deliveryAt(b: Batch, i: number): Delivery {
  const e = b.entries[i] as Message | Delivery;
  if ('message' in e) return e;
  const d: Delivery = { message: e, qos: (e.qos < b.qos ? e.qos : b.qos) as QoS, retain: true, subscriptionIds: b.subscriptionIds, share: undefined };
  b.entries[i] = d;
  return d;
}
