import { MemoryStore } from '../../src/index.js';
import type { Delivery } from '../../src/session/message.js';
import type { InflightRecord, SessionRecord } from '../../src/persistence/store.js';

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
