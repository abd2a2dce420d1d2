import type { Delivery } from './message.js';

/** Where a persistent session's owed QoS 1/2 deliveries are recorded (its SessionJournal). */
interface Journal {
  queued(delivery: Delivery): void;
  unqueued(delivery: Delivery): void;
}

/** The deliveries of the retained messages one SUBSCRIBE matched, owed from `next` on. */
interface Batch {
  readonly filter: string;
  readonly deliveries: Delivery[];
  next: number;
  /** those before this index are in the journal (the QoS 1/2 ones) */
  journaled: number;
}

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
  /** deliveries owed */
  count = 0;
  /** their payload bytes */
  bytes = 0;

  add(filter: string, deliveries: Delivery[]): void {
    if (deliveries.length === 0) return;
    this.batches.push({ filter, deliveries, next: 0, journaled: 0 });
    this.count += deliveries.length;
    this.bytes += payloadBytes(deliveries, 0);
  }

  /** The next delivery owed, or undefined. */
  peek(): Delivery | undefined {
    const b = this.batches[0];
    return b === undefined ? undefined : b.deliveries[b.next];
  }

  /** Takes the next delivery owed (it is being sent, or will not be), out of `journal` too. */
  shift(journal: Journal | undefined): Delivery | undefined {
    const b = this.batches[0];
    if (b === undefined) return undefined;
    const d = b.deliveries[b.next] as Delivery;
    if (journal !== undefined && d.qos > 0 && b.next < b.journaled) journal.unqueued(d);
    // the batch no longer keeps alive a message since replaced in the store
    b.deliveries[b.next] = undefined as unknown as Delivery;
    b.next++;
    this.count--;
    this.bytes -= d.message.payload.length;
    if (b.next === b.deliveries.length) this.batches.shift();
    return d;
  }

  /** Removes what is still owed for `filter` (unsubscribed, or subscribed again), out of `journal` too; returns how many. */
  remove(filter: string, journal: Journal | undefined): number {
    let removed = 0;
    for (let i = 0; i < this.batches.length; i++) {
      const b = this.batches[i] as Batch;
      if (b.filter !== filter) continue;
      if (journal !== undefined) {
        for (let j = b.next; j < b.journaled; j++) if ((b.deliveries[j] as Delivery).qos > 0) journal.unqueued(b.deliveries[j] as Delivery);
      }
      removed += b.deliveries.length - b.next;
      this.count -= b.deliveries.length - b.next;
      this.bytes -= payloadBytes(b.deliveries, b.next);
      this.batches.splice(i--, 1);
    }
    return removed;
  }

  /** Puts up to `max` owed deliveries not yet in `journal` there, oldest first; returns how many it went past. */
  journalAhead(journal: Journal, max: number): number {
    let done = 0;
    for (const b of this.batches) {
      if (b.journaled < b.next) b.journaled = b.next;
      while (b.journaled < b.deliveries.length && done < max) {
        const d = b.deliveries[b.journaled++] as Delivery;
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
    for (const b of this.batches) if (b.journaled < b.deliveries.length) return true;
    return false;
  }
}

function payloadBytes(deliveries: Delivery[], from: number): number {
  let bytes = 0;
  for (let i = from; i < deliveries.length; i++) bytes += (deliveries[i] as Delivery).message.payload.length;
  return bytes;
}
