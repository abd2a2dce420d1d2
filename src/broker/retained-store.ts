import { isExpired, ownBytesInPlace, type Clock, type Message } from '../session/message.js';
import { TopicTree } from '../topic/topic-tree.js';

/** Retained messages, one per topic, looked up by subscription filter. */
export class RetainedStore {
  private readonly tree = new TopicTree<Message>();
  /** 0 = no limit */
  maxMessages = 0;
  /** set while the broker is over its memory limit: no new topics */
  memoryFull = false;

  get size(): number {
    return this.tree.size;
  }

  /**
   * Applies a published message with RETAIN 1: an empty payload clears the topic
   * ([MQTT-3.3.1-10] [MQTT-3.3.1-11] in 3.1.1), anything else replaces what was there ([MQTT-3.3.1-5]).
   */
  apply(message: Message): boolean {
    if (message.payload.length === 0) {
      this.tree.delete(message.topic);
      return true;
    }
    // at the limit only topics already held may change; the broker's own $ topics are always kept
    if (!this.hasRoomFor(message.topic)) return false;
    ownBytesInPlace(message);
    this.tree.set(message.topic, message);
    return true;
  }

  /** Whether a retained message on `topic` would be stored (false only at a limit, for a new topic). */
  hasRoomFor(topic: string): boolean {
    const max = this.maxMessages;
    const room = max === 0 || this.tree.size < max;
    return (room && !this.memoryFull) || topic.charCodeAt(0) === 0x24 || this.tree.get(topic) !== undefined;
  }

  get(topic: string): Message | undefined {
    return this.tree.get(topic);
  }

  delete(topic: string): boolean {
    return this.tree.delete(topic);
  }

  /** Messages matching a filter; expired ones are removed on the way ([MQTT-3.3.2-5]). */
  match(filter: string, clock: Clock): Message[] {
    const found: Message[] = [];
    this.tree.matchFilter(filter, found);
    let expired = false;
    for (const m of found) if (isExpired(m, clock)) expired = true;
    if (!expired) return found;
    const live: Message[] = [];
    for (const m of found) {
      if (isExpired(m, clock)) this.tree.delete(m.topic);
      else live.push(m);
    }
    return live;
  }

  values(): IterableIterator<Message> {
    return this.tree.values();
  }
}
