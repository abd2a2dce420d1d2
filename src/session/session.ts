import type { QoS } from '../codec/packets.js';
import { DeliveryQueue } from './delivery-queue.js';
import { PacketIdMap } from './packet-id-map.js';
import { LazyMap } from '../collections/lazy-map.js';
import { expiresOnArrival, ownBytesInPlace, type Clock, type Delivery, type Message, type ShareRef } from './message.js';
import { PacketIdAllocator } from './packet-ids.js';
import { RetainedBacklog } from './retained-backlog.js';

/** One subscription of a session, as granted. */
export interface Subscription {
  readonly filter: string;
  /** the filter without its `$share/{group}/` prefix */
  readonly topicFilter: string;
  readonly shareGroup: string | undefined;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** An outgoing QoS 1/2 message not yet fully acknowledged by the client. */
export interface InflightEntry {
  readonly delivery: Delivery;
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent, waiting for PUBCOMP */
  state: 'publish' | 'pubrel';
}

/** The live connection a session is attached to (implemented by the protocol channel). */
export interface DeliverySink {
  deliver(message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, share: ShareRef | undefined): void;
  /** true while the client can take another message at once (free inflight slot, nothing queued) */
  readonly hasCapacity: boolean;
  /** the broker ends this connection (session taken over, shutdown, administrative action) */
  disconnect(reasonCode: number): void;
  /** a fault of the broker's own met serving this connection (delivering to it, say): reported, and the connection is let go */
  handleInternalError(err: unknown): void;
}

/**
 * Where a persistent session records its changes (the durable store); sessions that end with their
 * connection have none. QoS 0 deliveries are never recorded: they are not kept across restarts.
 */
export interface SessionJournal {
  queued(delivery: Delivery): void;
  unqueued(delivery: Delivery): void;
  inflight(packetId: number, entry: InflightEntry): void;
  inflightDone(packetId: number): void;
  incomingQos2(packetId: number, pending: boolean): void;
  /** The session owes retained messages not journaled yet: have `journalOwed` called in later turns. */
  journalLater(session: Session): void;
  /**
   * Resolves once the retained messages the session owed at `mark` (its backlog's) are journaled
   * and the journal is on disk, or are owed no more; rejects when they cannot be stored.
   */
  owedStored(session: Session, mark: number): Promise<void>;
}

/** Owed retained messages journaled in one go; the rest follow in later turns. */
export const OWED_JOURNAL_SLICE = 1000;

/**
 * What the sessions of one broker hold between them, kept up to date by each session as it changes,
 * so that stats, metrics and $SYS read them without walking every session (20 ms with a
 * million of them, every $SYS interval and every scrape).
 */
export interface SessionTotals {
  queued: number;
  queuedBytes: number;
  inflight: number;
}

/** The bounds of a session's queue. */
export interface QueueLimits {
  readonly maxQueuedMessages: number;
  /** 0 = no byte bound */
  readonly maxQueuedBytes: number;
  /** 'new': a full queue drops the new message and keeps its QoS 0 ones */
  readonly queueFullDrop: 'oldest' | 'new';
}

/** Where a session's queue counts what it drops, by reason. */
export interface QueueDrops {
  queueFull: number;
  expired: number;
}

/**
 * The state MQTT keeps per client identifier, independent of any network connection:
 * subscriptions, the outgoing inflight window, the bounded queue, and QoS 2 receiver state.
 */
export class Session {
  readonly clientId: string;
  readonly subscriptions = new LazyMap<string, Subscription>();
  /** UTF-8 bytes of the filters in subscriptions, kept by the router (which alone changes them) for maxSubscriptionBytes */
  subscriptionBytes = 0;
  /** read freely; changed only through the methods below, which keep the journal and the totals */
  readonly inflight = new PacketIdMap<InflightEntry>();
  /** payload bytes of the messages in `inflight` (see maxInflightBytes) */
  inflightBytes = 0;
  /** read freely; changed only through the methods below, which keep the journal and the totals */
  readonly queue = new DeliveryQueue();
  /**
   * Retained messages owed for recent SUBSCRIBEs, sent before anything queued after them;
   * undefined while none are. Changed only through the methods below.
   */
  retained: RetainedBacklog | undefined;
  private readonly totals: SessionTotals;
  private readonly packetIds = new PacketIdAllocator(this.inflight);
  /** incoming QoS 2 packet ids answered with PUBREC and waiting for PUBREL */
  readonly incomingQos2 = new PacketIdMap<true>();
  /** seconds; 0 = ends with the connection, 0xFFFFFFFF = never expires */
  expiryInterval: number;
  sink: DeliverySink | undefined;
  /** messages dropped because the queue was full or the client could not take them */
  dropped = 0;
  /** set while the session is offline and due to expire (absolute ms) */
  expiresAt: number | undefined;
  /** its place in the broker's expiry schedule while it waits to expire; -1 when not there */
  expirySlot = -1;
  /** set for persistent sessions when the broker has a durable store */
  journal: SessionJournal | undefined;
  /** the user name of the client that last opened the session (for access checks while offline) */
  username: string | undefined;

  // Scratch fields used by the router to merge overlapping subscriptions of one publish
  // without allocating a map per message.
  routeSeq = 0;
  routeQos: QoS = 0;
  routeRetainAsPublished = false;
  routeSubIds: number[] | undefined;

  /** `totals` is the broker's; a session on its own counts only itself. */
  constructor(clientId: string, expiryInterval: number, totals: SessionTotals = { queued: 0, queuedBytes: 0, inflight: 0 }) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
    this.totals = totals;
  }

  get online(): boolean {
    return this.sink !== undefined;
  }

  /**
   * Queues a delivery, bounded by `maxQueuedMessages` and `maxQueuedBytes` (0 = no byte bound; an
   * empty queue takes one message of any size), and counts in `drops` what did not stay. When
   * full, expired messages go first ([MQTT-3.3.2-5]: they are deleted, so they hold no room), then
   * the oldest QoS 0 messages if dropping them is enough; otherwise the new message is dropped and
   * they stay. With `queueFullDrop` 'new', the new message is dropped once the expired are gone.
   */
  enqueue(
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: number[] | undefined,
    share: ShareRef | undefined,
    limits: QueueLimits,
    clock: Clock,
    drops: QueueDrops,
  ): void {
    // its lifetime ended as it arrived: only a delivery that starts at once is made of it
    if (expiresOnArrival(message)) {
      drops.expired++;
      return;
    }
    const queue = this.queue;
    const size = message.payload.length;
    const max = limits.maxQueuedMessages;
    const maxBytes = limits.maxQueuedBytes;
    let dropped: Delivery | undefined;
    if (full(queue.length, queue.bytes, size, max, maxBytes)) {
      const count = queue.length;
      const bytes = queue.bytes;
      const expired = queue.removeExpired(clock);
      if (expired !== undefined) {
        drops.expired += expired.length;
        for (const d of expired) if (d.qos > 0) this.journal?.unqueued(d);
      }
      const dropNew = limits.queueFullDrop === 'new';
      if (dropNew ? full(queue.length, queue.bytes, size, max, maxBytes) : full(queue.length - queue.lossyLength, queue.bytes - queue.lossyBytes, size, max, maxBytes)) {
        this.dropped++;
        drops.queueFull++;
        this.countQueueChange(count, bytes);
        return;
      }
      while (full(queue.length, queue.bytes, size, max, maxBytes)) {
        dropped = queue.shiftLossy();
        this.dropped++;
        drops.queueFull++;
      }
      this.countQueueChange(count, bytes);
    }
    const delivery =
      dropped !== undefined && qos === 0
        ? refill(dropped, message, retain, subscriptionIds, share)
        : { message, qos, retain, subscriptionIds, share };
    this.push(delivery);
    if (qos > 0) this.journal?.queued(delivery);
  }

  private push(delivery: Delivery): void {
    this.queue.push(delivery);
    this.totals.queued++;
    this.totals.queuedBytes += delivery.message.payload.length;
  }

  /** Adds to the broker's totals what the queue gained (or lost) since it held `count` messages of `bytes` bytes. */
  private countQueueChange(count: number, bytes: number): void {
    this.totals.queued += this.queue.length - count;
    this.totals.queuedBytes += this.queue.bytes - bytes;
  }

  /** payload bytes of the queued messages */
  get queuedBytes(): number {
    return this.queue.bytes;
  }

  /** A delivery the store kept for this session, queued again at start. */
  restoreQueued(delivery: Delivery): void {
    this.push(delivery);
  }

  /** A message the store kept in flight for this session, restored at start. */
  restoreInflight(packetId: number, entry: InflightEntry): void {
    this.putInflight(packetId, entry);
  }

  /**
   * Owes the client the retained messages a SUBSCRIBE to `filter` matched (at most at the QoS
   * granted, with RETAIN 1 [MQTT-3.3.1-8]), in place of what an earlier SUBSCRIBE of that filter
   * still owed. At most `limit` are owed at once over all filters; returns how many did not fit.
   * `messages` becomes the backlog's own (cut to those that fit).
   * A persistent session's journal keeps the QoS 1/2 ones like queued messages, so that they
   * survive a restart (they come back queued): the first 1,000 at once, the rest a slice per turn.
   */
  oweRetained(filter: string, messages: Message[], qos: QoS, subscriptionIds: number[] | undefined, limit: number): number {
    this.forgetRetained(filter);
    const offered = messages.length;
    const accepted = Math.max(0, Math.min(limit - (this.retained?.count ?? 0), offered));
    if (accepted === 0) return offered;
    if (accepted < offered) messages.length = accepted;
    const owed = (this.retained ??= new RetainedBacklog(this.totals));
    owed.add(filter, messages, qos, subscriptionIds);
    const journal = this.journal;
    if (journal !== undefined) {
      owed.journalAhead(journal, OWED_JOURNAL_SLICE);
      if (owed.unjournaled) journal.journalLater(this);
    }
    return offered - accepted;
  }

  /**
   * Puts up to `max` more of the retained messages owed into the journal (what `journalLater`
   * asked for); returns how many it went past, 0 once all are there.
   */
  journalOwed(max: number): number {
    const journal = this.journal;
    const owed = this.retained;
    if (journal === undefined || owed === undefined) return 0;
    return owed.journalAhead(journal, max);
  }

  /**
   * Resolves once every retained message owed so far is journaled and on disk, so that a SUBACK
   * can wait for them: a broker killed after it would otherwise come back with the subscription
   * but without what it was owed, and nothing would tell the client to subscribe again.
   * Undefined when they are all journaled already (or the session has no journal).
   */
  retainedStored(): Promise<void> | undefined {
    const owed = this.retained;
    const journal = this.journal;
    if (owed === undefined || journal === undefined || owed.journaledUpTo(owed.mark)) return undefined;
    return journal.owedStored(this, owed.mark);
  }

  /** Takes the next retained message owed (it is being sent, or has expired). */
  takeRetained(): Delivery | undefined {
    const owed = this.retained;
    if (owed === undefined) return undefined;
    const d = owed.shift(this.journal);
    if (owed.count === 0) this.retained = undefined;
    return d;
  }

  /** What is still owed for `filter` is not any more (unsubscribed, or subscribed again). */
  forgetRetained(filter: string): void {
    const owed = this.retained;
    if (owed === undefined) return;
    owed.remove(filter, this.journal);
    if (owed.count === 0) this.retained = undefined;
  }

  /** The next message waiting for the client: retained ones owed first, then the queue. */
  nextWaiting(): Delivery | undefined {
    return this.retained !== undefined ? this.retained.peek() : this.queue.peek();
  }

  /** Takes what nextWaiting() gave (it is being sent, or has expired). */
  takeWaiting(): Delivery | undefined {
    return this.retained !== undefined ? this.takeRetained() : this.dequeue();
  }

  /** Something waits for the client (queued, or retained and owed): newcomers go behind it. */
  get hasWaiting(): boolean {
    return this.queue.length > 0 || this.retained !== undefined;
  }

  /** messages waiting for the client: queued, and retained ones owed */
  get waiting(): number {
    return this.queue.length + (this.retained?.count ?? 0);
  }

  /** The session ended: nothing it queued or had in flight is owed any more. */
  clear(): void {
    this.retained?.clear();
    this.retained = undefined;
    this.totals.queued -= this.queue.length;
    this.totals.queuedBytes -= this.queue.bytes;
    this.queue.clear();
    this.totals.inflight -= this.inflight.size;
    this.inflight.clear();
    this.inflightBytes = 0;
    this.incomingQos2.clear();
  }

  /**
   * Moves every message this session holds (in flight or queued) out of the read it arrived in:
   * called when the client goes and the session stays, so that what waits for its return does not
   * keep those reads alive.
   */
  ownPendingBytes(): void {
    if (this.inflight.size > 0) for (const entry of this.inflight.values()) ownBytesInPlace(entry.delivery.message);
    if (this.queue.length > 0) for (const d of this.queue) ownBytesInPlace(d.message);
  }

  /** Takes the oldest queued delivery (to send it, or because it expired). */
  dequeue(): Delivery | undefined {
    const d = this.queue.shift();
    if (d === undefined) return undefined;
    this.totals.queued--;
    this.totals.queuedBytes -= d.message.payload.length;
    if (d.qos > 0) this.journal?.unqueued(d);
    return d;
  }

  /** Removes, in order, the queued deliveries `take` accepts (it has dealt with them); the rest keep their places. */
  takeQueued(take: (d: Delivery) => boolean): void {
    const count = this.queue.length;
    const bytes = this.queue.bytes;
    const keep: Delivery[] = [];
    for (let d = this.queue.shift(); d !== undefined; d = this.queue.shift()) {
      if (!take(d)) keep.push(d);
      else if (d.qos > 0) this.journal?.unqueued(d);
    }
    for (const d of keep) this.queue.push(d);
    this.countQueueChange(count, bytes);
  }

  /** A QoS 1/2 message about to be sent: records it in flight under a free packet id, returned. */
  startInflight(entry: InflightEntry): number {
    const packetId = this.packetIds.next();
    // the id is free: nothing is replaced
    this.inflight.set(packetId, entry);
    this.inflightBytes += entry.delivery.message.payload.length;
    this.totals.inflight++;
    this.journal?.inflight(packetId, entry);
    return packetId;
  }

  /** A QoS 1/2 message sent and awaiting its acknowledgement, or moved to the PUBREL state. */
  setInflight(packetId: number, entry: InflightEntry): void {
    this.putInflight(packetId, entry);
    this.journal?.inflight(packetId, entry);
  }

  /** Adds or replaces an entry, keeping the byte count and the broker's totals. */
  private putInflight(packetId: number, entry: InflightEntry): void {
    const before = this.inflight.size;
    this.inflightBytes -= this.inflight.get(packetId)?.delivery.message.payload.length ?? 0;
    this.inflight.set(packetId, entry);
    this.inflightBytes += entry.delivery.message.payload.length;
    this.totals.inflight += this.inflight.size - before;
  }

  /** The exchange for `packetId` is over: the id is free again. */
  endInflight(packetId: number): void {
    const entry = this.inflight.get(packetId);
    if (entry === undefined) return;
    this.inflight.delete(packetId);
    this.inflightBytes -= entry.delivery.message.payload.length;
    this.totals.inflight--;
    this.journal?.inflightDone(packetId);
  }

  /** An incoming QoS 2 packet id answered with PUBREC; false when PUBREL released it. */
  markIncomingQos2(packetId: number, pending: boolean): boolean {
    if (pending === this.incomingQos2.has(packetId)) return false;
    if (pending) this.incomingQos2.set(packetId, true);
    else this.incomingQos2.delete(packetId);
    this.journal?.incomingQos2(packetId, pending);
    return true;
  }
}

/** Whether a queue of `count` messages and `bytes` payload bytes has no room for `size` more. */
/**
 * A QoS 0 delivery just dropped from the queue, made into the QoS 0 delivery that takes its place.
 * A subscriber that stops reading drops one message for each one it is sent: a new object for each
 * would stay queued for `maxQueuedMessages` messages, long enough to be promoted to the old
 * generation, and cost the collector a copy and later a mark for every dropped message. Nothing but
 * the queue holds a QoS 0 delivery (the journal and the store keep QoS 1/2 ones only), so no one
 * sees it change.
 */
function refill(
  delivery: Delivery,
  message: Message,
  retain: boolean,
  subscriptionIds: number[] | undefined,
  share: ShareRef | undefined,
): Delivery {
  const d = delivery as { -readonly [K in keyof Delivery]: Delivery[K] };
  d.message = message;
  d.retain = retain;
  d.subscriptionIds = subscriptionIds;
  d.share = share;
  return d;
}

function full(count: number, bytes: number, size: number, max: number, maxBytes: number): boolean {
  return count >= max || (maxBytes > 0 && count > 0 && bytes + size > maxBytes);
}
