import type { QoS } from '../codec/packets.js';
import { frameBytes, type PublishFrame } from '../codec/publish-frame.js';
import { RC } from '../codec/reason-codes.js';
import { isExpired, messagePinsLargeRead, ownBytesInPlace, type Message, type ShareRef } from '../session/message.js';
import type { Session } from '../session/session.js';
import type { Channel } from './channel.js';
import { aliasedFrame, frameFor } from './frame-cache.js';
import type { OutboundAliases } from './outbound-aliases.js';

/** Retained messages owed at once beyond which memory is measured first. */
const LARGE_OWE = 10_000;

/**
 * Server-to-client message flow for one connection: the inflight window (the client's Receive
 * Maximum, capped by ours), the bounded session queue behind it, and acknowledgements. A slow
 * client only ever fills its own queue; publishers never wait on it.
 */
export class Outbound {
  private readonly ch: Channel;
  /** the client's Receive Maximum (5.0) capped by the broker's inflight limit */
  window = 65535;
  /** 5.0: topic aliases for this connection, when the client accepts them */
  aliases: OutboundAliases | undefined;

  constructor(channel: Channel) {
    this.ch = channel;
  }

  deliver(message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, share: ShareRef | undefined): void {
    const session = this.ch.session;
    if (session === undefined) return;
    // Order is kept per session: once anything waits in the queue, or retained messages are owed,
    // newcomers wait behind it.
    if (!session.hasWaiting && (qos === 0 ? !this.ch.conn.congested : session.inflight.size < this.window)) {
      this.send(session, message, qos, retain, subscriptionIds, share, false);
      return;
    }
    const broker = this.ch.broker;
    if (broker.memoryFull) {
      session.dropped++;
      broker.counters.dropped.memoryLimit++;
      return;
    }
    // A connected client's queue usually empties within moments, so the message keeps the read it
    // arrived in, unless it is a small part of a large one: a client that stops reading would
    // otherwise hold up to a 64 KB read for each of its queued messages.
    if (messagePinsLargeRead(message)) ownBytesInPlace(message);
    session.enqueue({ message, qos, retain, subscriptionIds, share }, broker.settings, broker, broker.counters.dropped);
  }

  /** Free inflight room, nothing waiting: a shared-subscription message sent here goes out at once. */
  get hasCapacity(): boolean {
    const session = this.ch.session;
    return (
      session !== undefined &&
      !session.hasWaiting &&
      session.inflight.size < this.window &&
      !this.ch.conn.congested
    );
  }

  /**
   * The retained messages a SUBSCRIBE matched, owed to the client and sent as it takes them,
   * ahead of what arrives for it later. `qos` is the QoS granted.
   */
  oweRetained(filter: string, messages: Message[], qos: QoS, subscriptionIds: number[] | undefined): void {
    const session = this.ch.session;
    if (session === undefined) return;
    const broker = this.ch.broker;
    // A large batch is weighed against memory now, not at the next periodic check: a burst of
    // subscribers to a filter matching a million retained messages would otherwise be owed them
    // all (some 70 MB each) before the guard looked.
    const full = messages.length > LARGE_OWE ? broker.checkMemory() : broker.memoryFull;
    // owed over all filters: up to one copy of the store's references, or the queue's bound if larger
    const limit = full ? 0 : Math.max(broker.settings.maxQueuedMessages, broker.retainedCount);
    const refused = session.oweRetained(filter, messages, qos, subscriptionIds, limit);
    if (refused > 0) {
      session.dropped += refused;
      if (full) broker.counters.dropped.memoryLimit += refused;
      else broker.counters.dropped.queueFull += refused;
    }
    this.pump();
  }

  /** Moves owed retained messages, then queued ones, into the window while the client can take them. */
  pump(): void {
    const session = this.ch.session;
    if (session === undefined) return;
    // most calls (one per acknowledgement) find nothing waiting
    if (!session.hasWaiting) return;
    for (let d = session.nextWaiting(); d !== undefined; d = session.nextWaiting()) {
      if (isExpired(d.message, this.ch.broker)) {
        // [MQTT-3.3.2-5] an expired message is not delivered
        session.takeWaiting();
        this.ch.broker.counters.dropped.expired++;
        continue;
      }
      if (d.qos === 0 ? this.ch.conn.congested : session.inflight.size >= this.window) break;
      session.takeWaiting();
      this.send(session, d.message, d.qos, d.retain, d.subscriptionIds, d.share, true);
    }
  }

  /**
   * On a resumed session: [MQTT-4.4.0-1] resend unacknowledged PUBLISH packets (DUP set) and
   * PUBREL packets, in their original order, then let queued messages follow.
   */
  resume(): void {
    const session = this.ch.session;
    if (session === undefined) return;
    for (const [packetId, entry] of session.inflight) {
      if (entry.state === 'pubrel') {
        this.ch.sendAck(0x62, packetId);
        continue;
      }
      const d = entry.delivery;
      const frame = frameFor(d.message, this.ch.version, d.qos, d.retain, d.subscriptionIds, this.ch.broker);
      this.ch.broker.counters.sent[d.qos]++;
      this.writePublish(frame, packetId, true);
    }
    this.pump();
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2): the packet id is free again. */
  complete(packetId: number, expected: 'publish' | 'pubrel'): boolean {
    const session = this.ch.session as Session;
    const entry = session.inflight.get(packetId);
    if (entry === undefined || entry.state !== expected) return false;
    if (expected === 'publish' && entry.delivery.qos !== 1) return false;
    session.endInflight(packetId);
    this.pump();
    return true;
  }

  /** PUBREC: the client has the QoS 2 message; answer with PUBREL (or drop it on an error code). */
  received(packetId: number, reasonCode: number): void {
    const session = this.ch.session as Session;
    const entry = session.inflight.get(packetId);
    if (entry === undefined || entry.delivery.qos !== 2) {
      if (this.ch.version === 5) {
        this.ch.send({ type: 'pubrel', packetId, reasonCode: RC.PacketIdentifierNotFound, properties: { reasonString: 'unknown packet identifier' } });
      }
      return;
    }
    if (reasonCode >= 0x80) {
      // [MQTT-4.3.3-4] a PUBREC error ends the flow; the id may be reused
      session.endInflight(packetId);
      this.pump();
      return;
    }
    entry.state = 'pubrel';
    session.setInflight(packetId, entry);
    this.ch.sendAck(0x62, packetId);
  }

  private send(
    session: Session,
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: number[] | undefined,
    share: ShareRef | undefined,
    fromQueue: boolean,
  ): void {
    const clock = this.ch.broker;
    if (!fromQueue && isExpired(message, clock)) return;
    let frame = frameFor(message, this.ch.version, qos, retain, subscriptionIds, clock);
    const maxSize = this.ch.clientMaxPacketSize;
    if (frame.size > maxSize) {
      // [MQTT-3.1.2-24] [MQTT-3.1.2-25] (5.0) a packet too large for the client is dropped as if sent
      session.dropped++;
      this.ch.broker.counters.dropped.tooLarge++;
      return;
    }
    const aliases = this.aliases;
    if (aliases !== undefined && message.topic.length > 2) {
      const known = aliases.known(message.topic);
      if (known !== 0) {
        frame = aliasedFrame(message, qos, retain, subscriptionIds, clock, known, true);
      } else if (frame.size + 4 <= maxSize) {
        // the alias property adds at most 4 bytes to the first send: only assign one when that fits
        frame = aliasedFrame(message, qos, retain, subscriptionIds, clock, aliases.assign(message.topic), false);
      }
    }
    this.ch.broker.counters.sent[qos]++;
    if (qos === 0) {
      this.writePublish(frame, 0, false);
      return;
    }
    const packetId = session.startInflight({ delivery: { message, qos, retain, subscriptionIds, share }, state: 'publish' });
    this.writePublish(frame, packetId, false);
  }

  /** One write for a small payload (the frame's bytes hold it), head and payload otherwise. */
  private writePublish(frame: PublishFrame, packetId: number, dup: boolean): void {
    const bytes = frameBytes(frame, packetId, dup);
    if (frame.inline) this.ch.conn.write(bytes);
    else this.ch.conn.writeFrame(bytes, frame.payload);
  }
}
