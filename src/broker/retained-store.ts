import { isExpired, ownBytesInPlace, type Clock, type Message } from '../session/message.js';
import { TopicTree } from '../topic/topic-tree.js';
import { isSysTopic } from '../topic/sys-topic.js';

/**
 * Retained messages, one per topic, looked up by subscription filter. The limit counts the
 * clients' topics only: the broker's own $SYS topics come back every interval whatever the
 * limit, so counting them would only take their slots from the clients (a limit of 40 left 8).
 */
export class RetainedStore {
  private readonly tree = new TopicTree<Message>();
  private clientTopics = 0;
  /** 0 = no limit */
  maxMessages = 0;
  /** set while the broker is over its memory limit: no new topics */
  memoryFull = false;

  /** every retained message held, the broker's own included */
  get size(): number {
    return this.tree.size;
  }

  /** retained messages on topics other than the broker's own $SYS ones: what `maxMessages` bounds */
  get clientCount(): number {
    return this.clientTopics;
  }

  /**
   * Applies a published message with RETAIN 1: an empty payload clears the topic
   * ([MQTT-3.3.1-10] [MQTT-3.3.1-11] in 3.1.1), anything else replaces what was there ([MQTT-3.3.1-5]).
   */
  apply(message: Message): boolean {
    if (message.payload.length === 0) {
      this.delete(message.topic);
      return true;
    }
    // at the limit only topics already held may change; the broker's own $SYS topics are always kept
    if (!this.hasRoomFor(message.topic)) return false;
    ownBytesInPlace(message);
    const held = this.tree.size;
    this.tree.set(message.topic, message);
    if (this.tree.size > held && !isSysTopic(message.topic)) this.clientTopics++;
    return true;
  }

  /** Whether a retained message on `topic` would be stored (false only at a limit, for a new topic). */
  hasRoomFor(topic: string): boolean {
    const max = this.maxMessages;
    const room = max === 0 || this.clientTopics < max;
    return (room && !this.memoryFull) || isSysTopic(topic) || this.tree.get(topic) !== undefined;
  }

  get(topic: string): Message | undefined {
    return this.tree.get(topic);
  }

  delete(topic: string): boolean {
    const deleted = this.tree.delete(topic);
    if (deleted && !isSysTopic(topic)) this.clientTopics--;
    return deleted;
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
      if (isExpired(m, clock)) this.delete(m.topic);
      else live.push(m);
    }
    return live;
  }

  values(): IterableIterator<Message> {
    return this.tree.values();
  }
}

