import type { Delivery } from './message.js';

/** The deliveries of the retained messages one SUBSCRIBE matched, owed from `next` on. */
interface Batch {
  readonly filter: string;
  readonly deliveries: Delivery[];
  next: number;
}

/**
 * Retained messages owed to a client for its recent SUBSCRIBEs, in order, sent as its inflight
 * window and socket take them. They wait here, outside the session's bounded queue, so that a
 * filter matching 100,000 retained topics is owed in full instead of overflowing the queue's
 * bound: Mosquitto, for one, sends such a subscriber `max_queued_messages` of them and drops the
 * rest. What bounds them instead is the retained store itself (see Session.oweRetained).
 */
export class RetainedBacklog {
  private readonly batches: Batch[] = [];
  /** deliveries owed */
  count = 0;
  /** their payload bytes */
  bytes = 0;

  add(filter: string, deliveries: Delivery[]): void {
    if (deliveries.length === 0) return;
    this.batches.push({ filter, deliveries, next: 0 });
    this.count += deliveries.length;
    this.bytes += payloadBytes(deliveries, 0);
  }

  /** The next delivery owed, or undefined. */
  peek(): Delivery | undefined {
    const b = this.batches[0];
    return b === undefined ? undefined : b.deliveries[b.next];
  }

  /** Takes the next delivery owed (it is being sent, or will not be). */
  shift(): Delivery | undefined {
    const b = this.batches[0];
    if (b === undefined) return undefined;
    const d = b.deliveries[b.next] as Delivery;
    // the batch no longer keeps alive a message since replaced in the store
    b.deliveries[b.next] = undefined as unknown as Delivery;
    b.next++;
    this.count--;
    this.bytes -= d.message.payload.length;
    if (b.next === b.deliveries.length) this.batches.shift();
    return d;
  }

  /** Removes what is still owed for `filter` (unsubscribed, or subscribed again) and returns it. */
  remove(filter: string): Delivery[] {
    const removed: Delivery[] = [];
    for (let i = 0; i < this.batches.length; i++) {
      const b = this.batches[i] as Batch;
      if (b.filter !== filter) continue;
      for (let j = b.next; j < b.deliveries.length; j++) removed.push(b.deliveries[j] as Delivery);
      this.count -= b.deliveries.length - b.next;
      this.bytes -= payloadBytes(b.deliveries, b.next);
      this.batches.splice(i--, 1);
    }
    return removed;
  }

  /** Every delivery owed, in order. */
  *[Symbol.iterator](): IterableIterator<Delivery> {
    for (const b of this.batches) for (let j = b.next; j < b.deliveries.length; j++) yield b.deliveries[j] as Delivery;
  }
}

function payloadBytes(deliveries: Delivery[], from: number): number {
  let bytes = 0;
  for (let i = from; i < deliveries.length; i++) bytes += (deliveries[i] as Delivery).message.payload.length;
  return bytes;
}
