import type { QoS } from '../codec/packets.js';
import { frameBytes, type PublishFrame } from '../codec/publish-frame.js';
import { RC } from '../codec/reason-codes.js';
import { Deque } from '../session/deque.js';
import { expiresOnArrival, isExpired, messagePinsLargeRead, ownBytesInPlace, type Message, type ShareRef } from '../session/message.js';
import type { Session } from '../session/session.js';
import type { Channel } from './channel.js';
import { aliasedFrame, frameFor } from './frame-cache.js';
import type { OutboundAliases } from './outbound-aliases.js';
import { closeUnacknowledged } from './unacknowledged.js';

/** Retained messages owed at once beyond which memory is measured first. */
const LARGE_OWE = 10_000;
/**
 * Bytes of PUBLISH writes held behind a commit beyond which the connection counts as congested, as
 * a socket's full write buffer does: QoS 0 then waits in the session queue, under its limits,
 * instead of piling up in the held writes for as long as the commit takes.
 */
const HELD_CONGESTED_BYTES = 64 * 1024;

/**
 * QoS 2 messages whose deliveries wait for the commit that records them (see accept() in
 * handlers/publish.ts), each with the connections that hold writes for it. Its keys are messages,
 * which no two brokers of the process share. Empty unless a persistent session publishes at QoS 2
 * to a broker with a disk: every other send pays one look at its size.
 */
const unstored = new Map<Message, Outbound[]>();

/** The PUBLISH writes of `message` wait, on every connection, until releaseStored(message). */
export function holdUntilStored(message: Message): void {
  unstored.set(message, []);
}

/** Whether the writes of `message` wait for its commit (holdUntilStored, not released yet). */
export function isHeldUntilStored(message: Message): boolean {
  return unstored.size > 0 && unstored.has(message);
}

/** `message` is on disk (or will never be): what was held for it goes out, later sends go at once. */
export function releaseStored(message: Message): void {
  const waiting = unstored.get(message);
  if (waiting === undefined) return;
  unstored.delete(message);
  for (const outbound of waiting) outbound.flushHeld();
}

/** A PUBLISH written to the connection later: its bytes, and its payload when not inline. */
interface HeldWrite {
  readonly message: Message;
  readonly bytes: Buffer;
  readonly payload: Buffer | undefined;
  /** the commit of its own inflight entry, when it waits for one (see inflightStored) */
  readonly entry: EntryCommit | undefined;
}

/** A commit that QoS 2 PUBLISH writes of a connection wait for; `done` once it finished. */
interface EntryCommit {
  readonly disk: Promise<void>;
  done: boolean;
}

/** A PUBREL to send once `stored`. */
interface PendingPubrel {
  readonly packetId: number;
  readonly session: Session;
  stored: boolean;
}

/**
 * Server-to-client message flow for one connection: the inflight window (the client's Receive
 * Maximum, capped by ours), the bounded session queue behind it, and acknowledgements. A slow
 * client only ever fills its own queue; publishers never wait on it.
 */
export class Outbound {
  private readonly ch: Channel;
  /** the client's Receive Maximum (5.0) capped by the broker's inflight limit */
  window = 65535;
  /**
   * payload bytes in flight past which messages wait in the queue (maxInflightBytes); a message
   * goes while less is in flight, so one larger than the bound still goes, alone
   */
  windowBytes = Infinity;
  /** 5.0: topic aliases for this connection, when the client accepts them */
  aliases: OutboundAliases | undefined;
  /**
   * PUBLISH writes waiting behind a message not on disk yet, in the order they were made. Once one
   * waits, every later PUBLISH to this connection waits behind it, whatever its QoS and topic. The
   * specification would let a message of another QoS overtake it ([MQTT-4.6.0-5]: order is per
   * topic and QoS), but a QoS 2 message downgraded to a QoS 1 or 0 subscription shares that QoS
   * with the publisher's later QoS 1/0 messages; a topic alias is assigned by the first frame
   * that carries it, which must reach the client before the frames that use it; and packet ids
   * and the inflight window were taken in this order. A subscriber waits at most one commit, and
   * only behind a QoS 2 message of a persistent publisher or, for a persistent session on a disk,
   * behind any QoS 2 PUBLISH it is sent (see inflightStored): QoS 0/1 traffic alone is never held.
   */
  private held: Deque<HeldWrite> | undefined;
  /** what `held` holds, in bytes */
  private heldBytes = 0;
  /**
   * Packet ids of the in-flight messages of a resumed session not sent again yet, oldest first (a
   * Map iterates in insertion order), each with its payload bytes. The client may come back with a
   * smaller Receive Maximum than the messages in flight when it left: [MQTT-3.3.4-9] they go again
   * as its acknowledgements make room, ahead of anything new.
   */
  private resends: Map<number, number> | undefined;
  /** payload bytes of the messages in `resends`: in flight, but not on this connection yet */
  private resendBytes = 0;
  /** PUBRELs waiting for their state to be on disk, in the order of their PUBRECs (see sendPubrel) */
  private pubrels: Deque<PendingPubrel> | undefined;
  /** messages for this client were dropped since its queue was last empty: said once (noteDropping) */
  private dropping = false;
  /** the latest commit a QoS 2 PUBLISH waits for: those of one turn share it (see inflightStored) */
  private entryCommit: EntryCommit | undefined;

  constructor(channel: Channel) {
    this.ch = channel;
  }

  deliver(message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, share: ShareRef | undefined): void {
    const session = this.ch.session;
    if (session === undefined) return;
    // Order is kept per session: once anything waits in the queue, retained messages are owed or
    // in-flight ones are to be sent again, newcomers wait behind it.
    if (!session.hasWaiting && this.resends === undefined && (qos === 0 ? !this.congested : this.hasRoom(session))) {
      this.send(session, message, qos, retain, subscriptionIds, share, false);
      return;
    }
    const broker = this.ch.broker;
    if (broker.memoryFull) {
      session.dropped++;
      broker.counters.dropped.memoryLimit++;
      this.noteDropping('memoryLimit');
      return;
    }
    // A connected client's queue usually empties within moments, so the message keeps the read it
    // arrived in, unless it is a small part of a large one: a client that stops reading would
    // otherwise hold up to a 64 KB read for each of its queued messages.
    if (messagePinsLargeRead(message)) ownBytesInPlace(message);
    const dropped = session.dropped;
    session.enqueue(message, qos, retain, subscriptionIds, share, broker.settings, broker, broker.counters.dropped);
    if (session.dropped !== dropped) this.noteDropping('queueFull');
  }

  /** Tells of the first message dropped for this client since its queue was last empty (see pump). */
  private noteDropping(reason: 'queueFull' | 'memoryLimit'): void {
    if (this.dropping) return;
    this.dropping = true;
    this.ch.broker.clientDropping(this.ch.client, reason);
  }

  /** Free inflight room, nothing waiting: a shared-subscription message sent here goes out at once. */
  get hasCapacity(): boolean {
    const session = this.ch.session;
    return (
      session !== undefined &&
      !session.hasWaiting &&
      this.resends === undefined &&
      this.hasRoom(session) &&
      !this.congested
    );
  }

  /** Room in the inflight window for one more QoS 1/2 message. */
  private hasRoom(session: Session): boolean {
    return session.inflight.size < this.window && session.inflightBytes < this.windowBytes;
  }

  /** The socket's write buffer is full, or as much is held behind a commit. */
  private get congested(): boolean {
    return this.ch.conn.congested || this.heldBytes >= HELD_CONGESTED_BYTES;
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
    if (this.resends !== undefined && !this.resend(session)) return;
    // most calls (one per acknowledgement) find nothing waiting
    if (!session.hasWaiting) {
      this.dropping = false;
      return;
    }
    for (let d = session.nextWaiting(); d !== undefined; d = session.nextWaiting()) {
      if (isExpired(d.message, this.ch.broker)) {
        // [MQTT-3.3.2-5] an expired message is not delivered
        session.takeWaiting();
        this.ch.broker.counters.dropped.expired++;
        continue;
      }
      if (d.qos === 0 ? this.congested : !this.hasRoom(session)) break;
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
    if (session.inflight.size > 0) {
      const resends = new Map<number, number>();
      for (const [packetId, entry] of session.inflight) resends.set(packetId, entry.delivery.message.payload.length);
      this.resends = resends;
      this.resendBytes = session.inflightBytes;
    }
    this.pump();
  }

  /**
   * Sends again, in their first order, the resumed PUBRELs and the in-flight PUBLISHes the client's
   * Receive Maximum and the broker's maxInflightBytes have room for; true once none is left. What
   * counts against them is what was sent on this connection and is not acknowledged yet, PUBRELs
   * awaiting PUBCOMP included, which is more than the specification counts (a QoS 2 message
   * already PUBREC'd) but never less. The client's Maximum Packet Size is the one of its new
   * CONNECT, which may be smaller than when the message was first sent.
   */
  private resend(session: Session): boolean {
    const resends = this.resends as Map<number, number>;
    for (const [packetId, bytes] of resends) {
      const entry = session.inflight.get(packetId);
      if (
        entry?.state === 'publish' &&
        (session.inflight.size - resends.size >= this.window || session.inflightBytes - this.resendBytes >= this.windowBytes)
      ) {
        return false;
      }
      resends.delete(packetId);
      this.resendBytes -= bytes;
      if (entry === undefined) continue;
      if (entry.state === 'pubrel') {
        // its state may still be on its way to the disk (the client came back within the commit)
        this.sendPubrel(session, packetId);
        continue;
      }
      const d = entry.delivery;
      const frame = frameFor(d.message, this.ch.version, d.qos, d.retain, d.subscriptionIds, this.ch.broker);
      if (this.tooLarge(session, frame)) {
        // as if sent and acknowledged: its packet id and its room in the window go to later messages
        session.endInflight(packetId);
        continue;
      }
      this.ch.broker.counters.sent[d.qos]++;
      // the client may be back within the commit of the entry's first send (held, then dropped with its connection)
      this.writePublish(d.message, frame, packetId, true, d.qos === 2 ? this.inflightStored(session) : undefined);
    }
    this.resends = undefined;
    return true;
  }

  /** The in-flight message `packetId` is not to be sent again: acknowledged, or its exchange ended. */
  private forgetResend(packetId: number): void {
    const bytes = this.resends?.get(packetId);
    if (bytes === undefined) return;
    (this.resends as Map<number, number>).delete(packetId);
    this.resendBytes -= bytes;
  }

  /**
   * [MQTT-3.1.2-24] [MQTT-3.1.2-25] (5.0) a PUBLISH larger than the client's Maximum Packet Size is
   * not sent; it is counted as dropped, and the caller goes on as if it had been sent.
   */
  private tooLarge(session: Session, frame: PublishFrame): boolean {
    if (frame.size <= this.ch.clientMaxPacketSize) return false;
    session.dropped++;
    this.ch.broker.counters.dropped.tooLarge++;
    return true;
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2): the packet id is free again. */
  complete(packetId: number, expected: 'publish' | 'pubrel'): boolean {
    const session = this.ch.session as Session;
    const entry = session.inflight.get(packetId);
    if (entry === undefined || entry.state !== expected) return false;
    if (expected === 'publish' && entry.delivery.qos !== 1) return false;
    session.endInflight(packetId);
    // acknowledged before it was sent again: its first send reached the client
    this.forgetResend(packetId);
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
    this.forgetResend(packetId);
    if (reasonCode >= 0x80) {
      // [MQTT-4.3.3-4] a PUBREC error ends the flow; the id may be reused
      session.endInflight(packetId);
      this.pump();
      return;
    }
    entry.state = 'pubrel';
    session.setInflight(packetId, entry);
    this.sendPubrel(session, packetId);
  }

  /**
   * [MQTT-4.3.3-6] once PUBREL is sent the PUBLISH is never sent again, not even after a crash: a
   * persistent session's PUBREL leaves only once its 'pubrel' state is on disk. Sent before, a
   * broker killed meanwhile would come back with the message in the PUBLISH state and send it again
   * (DUP 1), which the client, its packet id released by the PUBREL, would take as a new message.
   * The commit is the one PUBACK and PUBREC to publishers wait for. PUBRELs leave in the order of
   * their PUBRECs ([MQTT-4.6.0-4]) even when commits finish out of order (lmdb's can). No store on
   * disk, or a session that is not kept: PUBREL at once.
   */
  private sendPubrel(session: Session, packetId: number): void {
    const ch = this.ch;
    const stored = session.journal === undefined ? undefined : ch.broker.committed();
    if (stored === undefined && this.pubrels === undefined) {
      ch.sendAck(0x62, packetId);
      return;
    }
    const pending: PendingPubrel = { packetId, session, stored: stored === undefined };
    (this.pubrels ??= new Deque<PendingPubrel>()).push(pending);
    if (stored === undefined) return;
    void stored.then(
      () => {
        pending.stored = true;
        this.flushPubrels();
      },
      // not on disk: the client is closed without PUBREL, which is sent again when it resumes the session
      (err: unknown) => closeUnacknowledged(ch, err),
    );
  }

  /** Sends the PUBRELs whose state is on disk, up to the first still on its way there. */
  private flushPubrels(): void {
    const pubrels = this.pubrels;
    if (pubrels === undefined) return;
    const ch = this.ch;
    if (ch.state !== 'connected') {
      // sent when the client resumes the session
      this.pubrels = undefined;
      return;
    }
    for (let p = pubrels.peek(); p !== undefined && p.stored; p = pubrels.peek()) {
      pubrels.shift();
      // completed or ended meanwhile (a client that sent PUBCOMP early, a session taken over): nothing to send
      if (ch.session === p.session && p.session.inflight.get(p.packetId)?.state === 'pubrel') ch.sendAck(0x62, p.packetId);
    }
    if (pubrels.length === 0) this.pubrels = undefined;
  }

  /** Writes what was held while the messages it waited for are on disk, in order (see releaseStored). */
  flushHeld(): void {
    const held = this.held;
    if (held === undefined) return;
    if (this.ch.state !== 'connected') {
      // the connection is gone: what is in flight goes again (DUP 1) when the session is resumed
      this.dropHeld();
      return;
    }
    for (let w = held.peek(); w !== undefined; w = held.peek()) {
      // the one in front waits for a later commit: its release flushes the rest
      if ((w.entry !== undefined && !w.entry.done) || unstored.has(w.message)) return;
      held.shift();
      this.heldBytes -= w.bytes.length + (w.payload?.length ?? 0);
      if (w.payload === undefined) this.ch.conn.write(w.bytes);
      else this.ch.conn.writeFrame(w.bytes, w.payload);
    }
    this.dropHeld();
    // QoS 0 that waited in the queue while as much was held goes now
    this.pump();
  }

  private dropHeld(): void {
    this.held = undefined;
    this.heldBytes = 0;
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
    if (!fromQueue && isExpired(message, clock) && !expiresOnArrival(message)) return;
    let frame = frameFor(message, this.ch.version, qos, retain, subscriptionIds, clock);
    if (this.tooLarge(session, frame)) return;
    const maxSize = this.ch.clientMaxPacketSize;
    const aliases = this.aliases;
    if (aliases !== undefined && message.topic.length > 2) {
      // a frame with the alias that would be over the client's maximum leaves without it (the full one fits)
      const known = aliases.known(message.topic);
      const aliased =
        known !== 0
          ? aliasedFrame(message, qos, retain, subscriptionIds, clock, known, true, maxSize)
          : aliasedFrame(message, qos, retain, subscriptionIds, clock, () => aliases.assign(message.topic), false, maxSize);
      if (aliased !== undefined) frame = aliased;
    }
    this.ch.broker.counters.sent[qos]++;
    if (qos === 0) {
      this.writePublish(message, frame, 0, false);
      return;
    }
    const packetId = session.startInflight({ delivery: { message, qos, retain, subscriptionIds, share }, state: 'publish' });
    this.writePublish(message, frame, packetId, false, qos === 2 ? this.inflightStored(session) : undefined);
  }

  /**
   * Exactly once across a crash, for QoS 2 PUBLISHes this connection is sent: a persistent
   * session's PUBLISH leaves only once its inflight entry (packet id -> message, just journaled) is
   * on disk, whoever published the message and whether it came from the session's queue or not.
   * Written before, a broker killed meanwhile would come back without knowing that packet id was
   * used: the message, still queued on disk, would go again under another packet id, a duplicate
   * the client cannot tell ([MQTT-4.3.3-10] holds per packet id); or a new message would take the
   * packet id the client still holds unreleased (no PUBREL yet), and be taken as a resend of the
   * first and dropped ([MQTT-4.3.3-1]: the id was not unused). Returns the commit to wait for;
   * undefined (write at once) for a session that is not kept or a store not on disk. Writes of one
   * turn share one commit and one callback.
   *
   * QoS 1 does not wait: a message sent again under another packet id is a duplicate QoS 1
   * allows, and a packet id reused for another message is harmless, for the client no longer
   * holds it once it sent its PUBACK ([MQTT-4.3.2-5]: a PUBLISH with that id is then a new message).
   */
  private inflightStored(session: Session): EntryCommit | undefined {
    if (session.journal === undefined) return undefined;
    const disk = this.ch.broker.committed();
    if (disk === undefined) return undefined;
    const last = this.entryCommit;
    if (last !== undefined && last.disk === disk) return last;
    const entry: EntryCommit = { disk, done: false };
    this.entryCommit = entry;
    const finished = (): void => {
      entry.done = true;
      if (this.entryCommit === entry) this.entryCommit = undefined;
    };
    void disk.then(
      () => {
        finished();
        this.flushHeld();
      },
      (err: unknown) => {
        finished();
        // not on disk: the client is closed without it; the entry, kept in memory, goes again (DUP 1),
        // once its commit is over, when the client resumes the session
        this.dropHeld();
        closeUnacknowledged(this.ch, err);
      },
    );
    return entry;
  }

  /**
   * One write for a small payload (the frame's bytes hold it), head and payload otherwise; held
   * while `message` is not on disk yet, while `entry` (the commit of its inflight entry) is not
   * over, or while anything else is held (see `held`).
   */
  private writePublish(message: Message, frame: PublishFrame, packetId: number, dup: boolean, entry?: EntryCommit): void {
    const bytes = frameBytes(frame, packetId, dup);
    if (this.held !== undefined || entry !== undefined || (unstored.size > 0 && unstored.has(message))) {
      const waiting = unstored.get(message);
      if (waiting !== undefined && waiting[waiting.length - 1] !== this) waiting.push(this);
      const payload = frame.inline ? undefined : frame.payload;
      (this.held ??= new Deque<HeldWrite>()).push({ message, bytes, payload, entry });
      this.heldBytes += bytes.length + (payload?.length ?? 0);
      return;
    }
    if (frame.inline) this.ch.conn.write(bytes);
    else this.ch.conn.writeFrame(bytes, frame.payload);
  }
}
