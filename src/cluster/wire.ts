import type { Buffer } from 'node:buffer';
import { Packr } from 'msgpackr';
import type { Properties, QoS, Will } from '../codec/packets.js';
import type { Delivery, Message, ShareRef } from '../session/message.js';
import type { Subscription } from '../session/session.js';

/**
 * What nodes of a cluster send each other through Redis, in MessagePack. Times travel as time
 * left, not as instants, so that nodes whose clocks differ a little agree on when a message expires.
 */

// plain maps and arrays: nothing of one node's record layout is assumed by another
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

interface WireMessage {
  t: string;
  p: Buffer;
  q: QoS;
  r: boolean;
  /** publisher's client id (No Local) */
  s?: string;
  /** ms of life left */
  x?: number;
  o?: Properties;
}

function toWire(m: Message, now: number): WireMessage {
  const w: WireMessage = { t: m.topic, p: m.payload, q: m.qos, r: m.retain };
  if (m.senderId !== undefined) w.s = m.senderId;
  if (m.expiresAt !== undefined) w.x = Math.max(0, m.expiresAt - now);
  if (m.properties !== undefined) w.o = m.properties;
  return w;
}

function fromWire(w: WireMessage, now: number): Message {
  return {
    topic: w.t,
    payload: w.p,
    qos: w.q,
    retain: w.r,
    properties: w.o,
    expiresAt: w.x === undefined ? undefined : now + w.x,
    senderId: w.s,
    frame: undefined,
    frameSlot: -1,
    frames: undefined,
    framesExpiry: -1,
    bytesSettled: false,
  };
}

/** A message, packed once for every node it goes to. */
export function packMessage(m: Message, now: number): Buffer {
  return packr.pack(toWire(m, now));
}

export function unpackMessage(bytes: Buffer, now: number): Message {
  return fromWire(packr.unpack(bytes) as WireMessage, now);
}

/**
 * A retained message as kept in Redis, with its expiry as an instant: it may be read long after it
 * was written, so time left would mean nothing (nodes' clocks are assumed close, as NTP keeps them).
 */
export function packStoredMessage(m: Message): Buffer {
  return packMessage(m, 0);
}

export function unpackStoredMessage(bytes: Buffer): Message {
  return unpackMessage(bytes, 0);
}

/** What one node sends another on the node's own channel. */
export type NodeFrame =
  /**
   * a published message, the shared groups (`$share/{group}/{filter}`) the receiver delivers it
   * to, and its number among the messages its sender forwarded (with the sender, it names the
   * message on every node it went to: a session moving between two of them gets it once);
   * `sharedOnly` for one redispatched from a gone node, which the direct subscribers had already
   */
  | { kind: 'message'; body: Buffer; groups: string[] | null; n: number; sharedOnly?: boolean }
  /** a client is connecting to `from`: close its connection here and hand its session over */
  | { kind: 'takeover'; requestId: number; from: string; clientId: string; cleanStart: boolean }
  /** the answer: the session, or null when there is none to hand over */
  | { kind: 'session'; requestId: number; session: SessionTransfer | null }
  /**
   * the session is resumed on `from` as of this frame: what `from` sends after it reached the
   * session there, while what it sent before was published before the session was there
   */
  | { kind: 'adopted'; from: string; clientId: string }
  /**
   * `from` knows where a session handed over from the receiver went, and has sent the receiver
   * everything it sent it alone for it
   */
  | { kind: 'passed'; from: string; clientId: string }
  /** the session is resumed on `from`, and the other nodes know its subscriptions are there: let it go here */
  | { kind: 'release'; from: string; clientId: string }
  /** what reached the session between its handover and its release, to be delivered where it went */
  | { kind: 'tail'; clientId: string; queue: WireDelivery[] };

export function packFrame(frame: NodeFrame): Buffer {
  switch (frame.kind) {
    case 'message':
      return packr.pack(frame.sharedOnly === true ? ['M', frame.groups, frame.body, frame.n, 1] : ['M', frame.groups, frame.body, frame.n]);
    case 'takeover':
      return packr.pack(['T', frame.requestId, frame.from, frame.clientId, frame.cleanStart]);
    case 'session':
      return packr.pack(['S', frame.requestId, frame.session]);
    case 'adopted':
      return packr.pack(['A', frame.from, frame.clientId]);
    case 'passed':
      return packr.pack(['P', frame.from, frame.clientId]);
    case 'release':
      return packr.pack(['R', frame.from, frame.clientId]);
    case 'tail':
      return packr.pack(['L', frame.clientId, frame.queue]);
  }
}

/** Frames for one node, packed, sent as one: Redis's cost is per PUBLISH, not per byte. */
export function packBatch(frames: Buffer[]): Buffer {
  return packr.pack(['B', frames]);
}

/**
 * Decodes a frame, or the frames of a batch; throws on bytes that are not one (another program).
 * Frames of a kind this version does not know (a newer node's, during a rolling upgrade) are
 * left out, so that the messages batched with them still arrive.
 */
export function unpackFrames(bytes: Buffer): NodeFrame[] {
  const a = packr.unpack(bytes) as unknown[];
  if (!Array.isArray(a)) throw new Error('not a cluster frame');
  const frames = a[0] === 'B' ? (a[1] as Buffer[]).map((f) => frameOf(packr.unpack(f) as unknown[])) : [frameOf(a)];
  return frames.filter((f): f is NodeFrame => f !== undefined);
}

function frameOf(a: unknown[]): NodeFrame | undefined {
  if (!Array.isArray(a)) throw new Error('not a cluster frame');
  switch (a[0]) {
    case 'M':
      return { kind: 'message', groups: a[1] as string[] | null, body: a[2] as Buffer, n: typeof a[3] === 'number' ? a[3] : 0, ...(a[4] === 1 ? { sharedOnly: true } : {}) };
    case 'T':
      return { kind: 'takeover', requestId: a[1] as number, from: a[2] as string, clientId: a[3] as string, cleanStart: a[4] as boolean };
    case 'S':
      return { kind: 'session', requestId: a[1] as number, session: a[2] as SessionTransfer | null };
    case 'A':
      return { kind: 'adopted', from: a[1] as string, clientId: a[2] as string };
    case 'P':
      return { kind: 'passed', from: a[1] as string, clientId: a[2] as string };
    case 'R':
      return { kind: 'release', from: a[1] as string, clientId: a[2] as string };
    case 'L':
      return { kind: 'tail', clientId: a[1] as string, queue: a[2] as WireDelivery[] };
    default:
      return undefined;
  }
}

/** A retained message set (or cleared: body null) on some node, as every node, that one included, applies it. */
export interface RetainedChange {
  topic: string;
  body: Buffer | null;
}

export function packRetained(change: RetainedChange): Buffer {
  return packr.pack([change.topic, change.body]);
}

export function unpackRetained(bytes: Buffer): RetainedChange {
  const a = packr.unpack(bytes) as [string, Buffer | null];
  if (!Array.isArray(a) || typeof a[0] !== 'string') throw new Error('not a retained change');
  return { topic: a[0], body: a[1] };
}

/** Everything a session holds, moved from the node its client left to the one it connected to. */
export interface SessionTransfer {
  expiryInterval: number;
  username: string | null;
  subscriptions: Subscription[];
  /** in the order they are to be sent */
  queue: WireDelivery[];
  inflight: Array<{ packetId: number; state: 'publish' | 'pubrel'; delivery: WireDelivery }>;
  incomingQos2: number[];
}

export interface WireDelivery {
  m: WireMessage;
  q: QoS;
  r: boolean;
  i: number[] | null;
  s: ShareRef | null;
  /** in a tail: the node that forwarded the message and its number there, when it was forwarded */
  o?: [string, number];
}

export function toWireDelivery(d: Delivery, now: number): WireDelivery {
  const share = d.share === undefined ? null : { shareGroup: d.share.shareGroup, topicFilter: d.share.topicFilter };
  return { m: toWire(d.message, now), q: d.qos, r: d.retain, i: d.subscriptionIds ?? null, s: share };
}

export function fromWireDelivery(w: WireDelivery, now: number): Delivery {
  return { message: fromWire(w.m, now), qos: w.q, retain: w.r, subscriptionIds: w.i ?? undefined, share: w.s ?? undefined };
}

/**
 * A will this node answers for, as kept in Redis for the other nodes to send should this node die:
 * the will of a connected client (`afterS`: seconds its delay runs from the connection's loss, the
 * session's expiry included), or one waiting out its delay (`at`: when it is due).
 */
export interface WillEntry {
  username: string | undefined;
  will: Will;
  due: { afterS: number } | { at: number };
}

export function packWillEntry(e: WillEntry): Buffer {
  const w = e.will;
  const due = 'at' in e.due ? ['p', e.due.at] : ['a', e.due.afterS];
  return packr.pack([e.username ?? null, w.topic, w.payload, w.qos, w.retain, w.properties ?? null, ...due]);
}

export function unpackWillEntry(bytes: Buffer): WillEntry {
  const a = packr.unpack(bytes) as unknown[];
  if (!Array.isArray(a) || a.length < 8 || typeof a[1] !== 'string') throw new Error('not a will entry');
  const [username, topic, payload, qos, retain, properties, kind, value] = a as [string | null, string, Buffer, QoS, boolean, Properties | null, 'a' | 'p', number];
  const will: Will = { topic, payload, qos, retain };
  if (properties !== null) will.properties = properties;
  return { username: username ?? undefined, will, due: kind === 'p' ? { at: value } : { afterS: value } };
}

/**
 * A persistent session this node holds, as kept in Redis for the other nodes to take up should
 * this node die: what it is subscribed to, for how long it outlives its connection, and while
 * offline when it ends (null while connected, or when it never ends). Messages queued for it are
 * not here: they stay in this node's store.
 */
export interface SessionEntry {
  expiryInterval: number;
  username: string | undefined;
  subscriptions: Subscription[];
  expiresAt: number | null;
}

export function packSessionEntry(e: SessionEntry): Buffer {
  return packr.pack([e.expiryInterval, e.username ?? null, e.subscriptions, e.expiresAt]);
}

export function unpackSessionEntry(bytes: Buffer): SessionEntry {
  const a = packr.unpack(bytes) as unknown[];
  if (!Array.isArray(a) || a.length < 4 || typeof a[0] !== 'number' || !Array.isArray(a[2])) throw new Error('not a session entry');
  const [expiryInterval, username, subscriptions, expiresAt] = a as [number, string | null, Subscription[], number | null];
  return { expiryInterval, username: username ?? undefined, subscriptions, expiresAt };
}
