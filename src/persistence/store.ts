import type { Will } from '../codec/packets.js';
import type { Delivery, Message } from '../session/message.js';
import type { Subscription } from '../session/session.js';

/**
 * The durable state of the broker as events: what changed, not how it is laid out. The broker calls
 * these as state changes (synchronously, on the hot path: adapters only buffer) and awaits
 * `commit()` before acknowledging a QoS 1/2 PUBLISH, so one commit covers every change of an
 * event-loop turn. Messages are passed as the broker's own objects: an adapter stores each once
 * and counts the queue, inflight and retained references to it.
 */
export interface Store {
  readonly kind: 'memory' | 'lmdb';
  /** Everything stored, to rebuild the broker at start. */
  load(): Promise<StoredState>;

  sessionSaved(record: SessionRecord): void;
  /** the session and everything under it: subscriptions, queue, inflight, incoming QoS 2 ids */
  sessionRemoved(clientId: string): void;
  subscriptionAdded(clientId: string, subscription: Subscription): void;
  subscriptionRemoved(clientId: string, filter: string): void;
  /** appended to the session queue */
  messageQueued(clientId: string, delivery: Delivery): void;
  /** left the queue: sent (see inflightSet), dropped, expired or given to another member */
  messageUnqueued(clientId: string, delivery: Delivery): void;
  /** an outgoing QoS 1/2 message in flight, or its move to the PUBREL state */
  inflightSet(clientId: string, entry: InflightRecord): void;
  inflightRemoved(clientId: string, packetId: number): void;
  /** an incoming QoS 2 packet id answered with PUBREC, until PUBREL */
  incomingQos2Added(clientId: string, packetId: number): void;
  incomingQos2Removed(clientId: string, packetId: number): void;
  retainedSet(message: Message): void;
  retainedCleared(topic: string): void;
  willSet(record: WillRecord): void;
  willCleared(clientId: string): void;
  /**
   * The broker was up at `ms` (noted every second while it runs): after a crash, when its last
   * connections closed, for the sessions and wills that were live then. A store without it has
   * those counted from the restart.
   */
  aliveAt?(ms: number): void;

  /**
   * Resolves once every change made so far is durable; rejects when one cannot be (a full disk):
   * nothing that waited for it is acknowledged.
   */
  commit(): Promise<void>;
  /**
   * Optional: `listener` is told once when changes stop reaching the disk (why) and once when they
   * do again (undefined). Without it the broker goes by the outcome of the commits it waits for.
   */
  watch?(listener: (error: StoreError | undefined) => void): void;
  close(): Promise<void>;
}

export interface SessionRecord {
  clientId: string;
  /** seconds, as in force (0xFFFFFFFF = never expires) */
  expiryInterval: number;
  /** absolute ms at which an offline session ends; undefined while online or never */
  expiresAt: number | undefined;
  /** the user name the session was opened with (access checks while offline) */
  username?: string | undefined;
  /**
   * true once its connection is gone; absent while it is online, and so, read back after a crash,
   * for the sessions whose connections the crash took. A session that never expires has no
   * `expiresAt` to tell the two apart by. Records written before this field existed: offline when
   * `expiresAt` is set.
   */
  offline?: boolean;
}

export interface InflightRecord {
  packetId: number;
  delivery: Delivery;
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent (the message itself is no longer needed) */
  state: 'publish' | 'pubrel';
}

export interface WillRecord {
  clientId: string;
  username: string | undefined;
  will: Will;
  /**
   * absolute ms the will is due once its connection is gone; undefined while the connection is up
   * (read back so, its connection was lost in a crash)
   */
  fireAt: number | undefined;
}

export interface StoredSession {
  record: SessionRecord;
  subscriptions: Subscription[];
  /** in queue order */
  queue: Delivery[];
  inflight: InflightRecord[];
  incomingQos2: number[];
}

export interface StoredState {
  sessions: StoredSession[];
  retained: Message[];
  wills: WillRecord[];
  /** the last aliveAt noted; undefined when none was */
  aliveAt?: number | undefined;
}

/** Version of the on-disk layout; a data dir written by a newer Midge is refused, not misread. */
export const STORE_FORMAT = 1;

/** A data dir that cannot be used: unreadable, corrupted or from a newer format. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}
