import type { Delivery, Message } from '../session/message.js';
import type { Subscription } from '../session/session.js';
import type { InflightRecord, SessionRecord, Store, StoredSession, StoredState, WillRecord } from './store.js';

interface Entry {
  record: SessionRecord;
  subscriptions: Map<string, Subscription>;
  queue: Delivery[];
  inflight: Map<number, InflightRecord>;
  incomingQos2: Set<number>;
}

/**
 * State kept in this process only: nothing survives a restart of the process, but the same store
 * handed to a new broker (an embedding application restarting its broker) brings the state back.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly sessions = new Map<string, Entry>();
  private readonly retained = new Map<string, Message>();
  private readonly wills = new Map<string, WillRecord>();
  private alive: number | undefined;

  async load(): Promise<StoredState> {
    const sessions: StoredSession[] = [...this.sessions.values()].map((e) => ({
      record: { ...e.record },
      subscriptions: [...e.subscriptions.values()].map((s) => ({ ...s })),
      queue: [...e.queue],
      inflight: [...e.inflight.values()].map((i) => ({ ...i })),
      incomingQos2: [...e.incomingQos2],
    }));
    return { sessions, retained: [...this.retained.values()], wills: [...this.wills.values()].map((w) => ({ ...w })), ...(this.alive === undefined ? {} : { aliveAt: this.alive }) };
  }

  sessionSaved(record: SessionRecord): void {
    const e = this.sessions.get(record.clientId);
    if (e !== undefined) e.record = { ...record };
    else this.sessions.set(record.clientId, { record: { ...record }, subscriptions: new Map(), queue: [], inflight: new Map(), incomingQos2: new Set() });
  }

  sessionRemoved(clientId: string): void {
    this.sessions.delete(clientId);
  }

  subscriptionAdded(clientId: string, subscription: Subscription): void {
    this.sessions.get(clientId)?.subscriptions.set(subscription.filter, { ...subscription });
  }

  subscriptionRemoved(clientId: string, filter: string): void {
    this.sessions.get(clientId)?.subscriptions.delete(filter);
  }

  messageQueued(clientId: string, delivery: Delivery): void {
    this.sessions.get(clientId)?.queue.push(delivery);
  }

  messageUnqueued(clientId: string, delivery: Delivery): void {
    const queue = this.sessions.get(clientId)?.queue;
    if (queue === undefined) return;
    const i = queue.indexOf(delivery);
    if (i >= 0) queue.splice(i, 1);
  }

  inflightSet(clientId: string, entry: InflightRecord): void {
    this.sessions.get(clientId)?.inflight.set(entry.packetId, { ...entry });
  }

  inflightRemoved(clientId: string, packetId: number): void {
    this.sessions.get(clientId)?.inflight.delete(packetId);
  }

  incomingQos2Added(clientId: string, packetId: number): void {
    this.sessions.get(clientId)?.incomingQos2.add(packetId);
  }

  incomingQos2Removed(clientId: string, packetId: number): void {
    this.sessions.get(clientId)?.incomingQos2.delete(packetId);
  }

  retainedSet(message: Message): void {
    this.retained.set(message.topic, message);
  }

  retainedCleared(topic: string): void {
    this.retained.delete(topic);
  }

  willSet(record: WillRecord): void {
    this.wills.set(record.clientId, { ...record });
  }

  willCleared(clientId: string): void {
    this.wills.delete(clientId);
  }

  aliveAt(ms: number): void {
    this.alive = ms;
  }

  commit(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    // nothing to release: the state stays with this object for a later broker
  }
}
