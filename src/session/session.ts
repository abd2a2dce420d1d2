import type { QoS } from '../codec/packets.js';
import { Deque } from './deque.js';
import type { Delivery, Message, ShareRef } from './message.js';
import { PacketIdAllocator } from './packet-ids.js';

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
}

/** 'displaced': queued, but the oldest QoS 0 message was dropped to make room */
export type EnqueueResult = 'queued' | 'displaced' | 'dropped';

/**
 * The state MQTT keeps per client identifier, independent of any network connection:
 * subscriptions, the outgoing inflight window, the bounded queue, and QoS 2 receiver state.
 */
export class Session {
  readonly clientId: string;
  readonly subscriptions = new Map<string, Subscription>();
  readonly inflight = new Map<number, InflightEntry>();
  readonly queue = new Deque<Delivery>();
  readonly packetIds = new PacketIdAllocator();
  /** incoming QoS 2 packet ids answered with PUBREC and waiting for PUBREL */
  readonly incomingQos2 = new Set<number>();
  /** seconds; 0 = ends with the connection, 0xFFFFFFFF = never expires */
  expiryInterval: number;
  sink: DeliverySink | undefined;
  /** messages dropped because the queue was full or the client could not take them */
  dropped = 0;
  /** set while the session is offline and due to expire (absolute ms) */
  expiresAt: number | undefined;

  // Scratch fields used by the router to merge overlapping subscriptions of one publish
  // without allocating a map per message.
  routeSeq = 0;
  routeQos: QoS = 0;
  routeRetainAsPublished = false;
  routeSubIds: number[] | undefined;

  constructor(clientId: string, expiryInterval: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
  }

  get online(): boolean {
    return this.sink !== undefined;
  }

  /**
   * Queues a delivery, bounded by `max`. When full, the oldest QoS 0 message makes room;
   * with no QoS 0 message to drop, the new message is dropped. Either way the drop is counted.
   */
  enqueue(delivery: Delivery, max: number): EnqueueResult {
    if (this.queue.length < max) {
      this.queue.push(delivery);
      return 'queued';
    }
    if (max > 0 && this.queue.removeFirst(isQos0) !== undefined) {
      this.dropped++;
      this.queue.push(delivery);
      return 'displaced';
    }
    this.dropped++;
    return 'dropped';
  }
}

function isQos0(d: Delivery): boolean {
  return d.qos === 0;
}
