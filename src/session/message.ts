import type { Properties, ProtocolVersion, QoS } from '../codec/packets.js';
import { Buffer } from 'node:buffer';
import type { PublishFrame } from '../codec/publish-frame.js';

/**
 * One published application message, shared by every subscriber it is routed to.
 * What it carries never changes once published: queues and inflight windows hold references, never
 * copies. Only where its bytes live may change (ownBytesInPlace).
 */
export interface Message {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  /** the RETAIN flag as published */
  readonly retain: boolean;
  /** 5.0 properties forwarded to subscribers (no topic alias, no subscription identifiers) */
  readonly properties: Properties | undefined;
  /** absolute ms from the Message Expiry Interval; undefined = never expires */
  readonly expiresAt: number | undefined;
  /** client id of the publisher (No Local); undefined for messages published by the broker itself */
  readonly senderId: string | undefined;
  /**
   * Encoded frames by shape, filled lazily by the protocol layer (see frame-cache.ts): the first
   * shape in `frame` (most messages only ever need one), the others in `frames` by shape.
   */
  frame: PublishFrame | undefined;
  frameSlot: number;
  frames: Array<PublishFrame | undefined> | undefined;
  /** Remaining-expiry value (seconds) the cached 5.0 frames carry. */
  framesExpiry: number;
  /**
   * Its bytes were found not to keep a large read alive (messagePinsLargeRead), or were made its
   * own: a message queued for fifty subscribers is looked at once, not fifty times.
   */
  bytesSettled: boolean;
}

/**
 * Where expiry reads the time. It is read only for a message that carries an expiry: on the path of
 * every other message the clock is not consulted at all.
 */
export interface Clock {
  now(): number;
}

export function createMessage(
  topic: string,
  payload: Buffer,
  qos: QoS,
  retain: boolean,
  properties: Properties | undefined,
  clock: Clock,
  senderId: string | undefined,
): Message {
  const expiry = properties?.messageExpiryInterval;
  return {
    topic,
    payload,
    qos,
    retain,
    properties,
    expiresAt: expiry === undefined ? undefined : clock.now() + expiry * 1000,
    senderId,
    frame: undefined,
    frameSlot: -1,
    frames: undefined,
    framesExpiry: -1,
    bytesSettled: false,
  };
}

/**
 * Bytes the broker keeps after the turn that received them (a retained message, a will, what waits
 * for a client that is away) must not stay a view of the read they arrived in: the view keeps
 * the whole read (up to 64 KB, or an 8 KB allocation pool) alive for as long as the message lives,
 * so that many small long-lived messages would hold many times their size.
 */
export function ownBytes(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

/** Properties whose Correlation Data (the one binary property a message carries) is its own. */
export function ownProperties(properties: Properties | undefined): Properties | undefined {
  const data = properties?.correlationData;
  if (data === undefined) return properties;
  const owned = ownBytes(data);
  return owned === data ? properties : { ...properties, correlationData: owned };
}

/**
 * Whether the bytes are a small part of a large read: a view that would keep many times its own
 * size alive. A view of an allocation pool (8 KB) is not counted: it holds at most that much.
 */
function pinsLargeRead(bytes: Buffer): boolean {
  const whole = bytes.buffer.byteLength;
  return whole > 8192 && bytes.byteLength * 4 < whole;
}

/**
 * Moves the message's payload and Correlation Data out of the read they arrived in, in place, for a
 * message that is going to wait: every queue, inflight window and store record holding it keeps
 * the same object and the same content. Its cached frames, views of that read too, are dropped and
 * built again on the next send.
 */
export function ownBytesInPlace(message: Message): void {
  const payload = ownBytes(message.payload);
  const properties = ownProperties(message.properties);
  const m = message as { -readonly [K in keyof Message]: Message[K] };
  m.bytesSettled = true;
  if (payload === message.payload && properties === message.properties) return;
  m.payload = payload;
  m.properties = properties;
  m.frame = undefined;
  m.frameSlot = -1;
  m.frames = undefined;
  m.framesExpiry = -1;
}

/** Whether a message's payload or Correlation Data would keep a large read alive (see pinsLargeRead). */
export function messagePinsLargeRead(message: Message): boolean {
  if (message.bytesSettled) return false;
  const data = message.properties?.correlationData;
  if (pinsLargeRead(message.payload) || (data !== undefined && pinsLargeRead(data))) return true;
  message.bytesSettled = true;
  return false;
}

/**
 * A Message Expiry Interval of 0: a lifetime that is over as the message arrives. It still goes to
 * the subscribers it can be sent to at once: [MQTT-3.3.2-5] deletes a copy only when the interval
 * passed before onward delivery started, and for these delivery starts on arrival. Every copy that
 * would have to wait (a queue, a retained message for later subscribers) has expired, so nothing
 * of it is kept. Mosquitto delivers it too; dropping it unseen surprised users.
 */
export function expiresOnArrival(message: Message): boolean {
  return message.properties?.messageExpiryInterval === 0;
}

export function isExpired(message: Message, clock: Clock): boolean {
  return message.expiresAt !== undefined && message.expiresAt <= clock.now();
}

/** Whole seconds of a message's expiry left, or -1 for a message that does not expire. */
export function remainingExpiry(message: Message, clock: Clock): number {
  return message.expiresAt === undefined ? -1 : Math.max(0, Math.ceil((message.expiresAt - clock.now()) / 1000));
}

/** The shared subscription a delivery came through, so it can go to another member. */
export interface ShareRef {
  readonly shareGroup: string | undefined;
  readonly topicFilter: string;
}

/** What one subscriber receives: the message plus the per-subscription delivery decisions. */
export interface Delivery {
  readonly message: Message;
  readonly qos: QoS;
  readonly retain: boolean;
  /** 5.0 subscription identifiers of every matching subscription */
  readonly subscriptionIds: number[] | undefined;
  /** set when routed through a `$share` subscription */
  readonly share: ShareRef | undefined;
}

export type { ProtocolVersion };
