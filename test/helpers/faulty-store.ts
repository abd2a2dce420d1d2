import { MemoryStore, type Store } from '../../src/index.js';
import type { Delivery, Message } from '../../src/session/message.js';
import type { Subscription } from '../../src/session/session.js';
import type { InflightRecord, SessionRecord, StoredState, WillRecord } from '../../src/persistence/store.js';

/**
 * A store of the application's that throws where it should not. Each test arms the one fault it
 * needs; the fault is then the broker's side of things, not any client's bytes.
 */
export class FaultyStore extends MemoryStore {
  failSessionSaved: ((record: SessionRecord) => boolean) | undefined;
  failSessionRemoved: ((clientId: string) => boolean) | undefined;
  failRetainedSet: ((topic: string) => boolean) | undefined;
  failWillCleared: ((clientId: string) => boolean) | undefined;
  failInflightSet: ((clientId: string) => boolean) | undefined;
  failMessageQueued: ((clientId: string) => boolean) | undefined;

  override sessionSaved(record: SessionRecord): void {
    if (this.failSessionSaved?.(record) === true) throw new Error('store fault: sessionSaved');
    super.sessionSaved(record);
  }

  override sessionRemoved(clientId: string): void {
    if (this.failSessionRemoved?.(clientId) === true) throw new Error('store fault: sessionRemoved');
    super.sessionRemoved(clientId);
  }

  override retainedSet(message: Parameters<MemoryStore['retainedSet']>[0]): void {
    if (this.failRetainedSet?.(message.topic) === true) throw new Error('store fault: retainedSet');
    super.retainedSet(message);
  }

  override willCleared(clientId: string): void {
    if (this.failWillCleared?.(clientId) === true) throw new Error('store fault: willCleared');
    super.willCleared(clientId);
  }

  override inflightSet(clientId: string, entry: InflightRecord): void {
    if (this.failInflightSet?.(clientId) === true) throw new Error('store fault: inflightSet');
    super.inflightSet(clientId, entry);
  }

  override messageQueued(clientId: string, delivery: Delivery): void {
    if (this.failMessageQueued?.(clientId) === true) throw new Error('store fault: messageQueued');
    super.messageQueued(clientId, delivery);
  }
}

/**
 * A store the broker takes for one on disk (it waits for its commits before acknowledging) whose
 * commits fail while `failing` is set, as on a full disk, or wait while held, as on a slow one.
 * What is written is kept in a MemoryStore, so that a broker made with the same store later finds it.
 */
export class CommitFaultStore implements Store {
  readonly kind = 'lmdb' as const;
  readonly state = new MemoryStore();
  /** commits fail with this message while it is set */
  failing: string | undefined;
  commits = 0;
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  /** Commits asked for from now on wait for release(). */
  hold(): void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  release(): void {
    const gate = this.gate;
    this.gate = undefined;
    gate?.open();
  }

  commit(): Promise<void> {
    this.commits++;
    if (this.failing !== undefined) return Promise.reject(new Error(this.failing));
    return this.gate?.promise ?? Promise.resolve();
  }

  load(): Promise<StoredState> {
    return this.state.load();
  }

  sessionSaved(record: SessionRecord): void {
    this.state.sessionSaved(record);
  }

  sessionRemoved(clientId: string): void {
    this.state.sessionRemoved(clientId);
  }

  subscriptionAdded(clientId: string, subscription: Subscription): void {
    this.state.subscriptionAdded(clientId, subscription);
  }

  subscriptionRemoved(clientId: string, filter: string): void {
    this.state.subscriptionRemoved(clientId, filter);
  }

  messageQueued(clientId: string, delivery: Delivery): void {
    this.state.messageQueued(clientId, delivery);
  }

  messageUnqueued(clientId: string, delivery: Delivery): void {
    this.state.messageUnqueued(clientId, delivery);
  }

  inflightSet(clientId: string, entry: InflightRecord): void {
    this.state.inflightSet(clientId, entry);
  }

  inflightRemoved(clientId: string, packetId: number): void {
    this.state.inflightRemoved(clientId, packetId);
  }

  incomingQos2Added(clientId: string, packetId: number): void {
    this.state.incomingQos2Added(clientId, packetId);
  }

  incomingQos2Removed(clientId: string, packetId: number): void {
    this.state.incomingQos2Removed(clientId, packetId);
  }

  retainedSet(message: Message): void {
    this.state.retainedSet(message);
  }

  retainedCleared(topic: string): void {
    this.state.retainedCleared(topic);
  }

  willSet(record: WillRecord): void {
    this.state.willSet(record);
  }

  willCleared(clientId: string): void {
    this.state.willCleared(clientId);
  }

  close(): Promise<void> {
    return this.state.close();
  }
}
