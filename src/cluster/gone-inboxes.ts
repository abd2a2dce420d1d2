import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import { deferred, type Deferred } from '../collections/deferred.js';
import type { Message } from '../session/message.js';
import type { Session } from '../session/session.js';
import { ArrivalLog, senderOf, type ArrivalMark } from './arrival-log.js';
import { inboxKeys, readInboxPage } from './inbox.js';
import type { RedisClient } from './redis-target.js';
import { unpackMessage } from './wire.js';

/** What reading gone nodes' inboxes needs of the node. */
export interface GoneInboxNode {
  readonly nodeId: string;
  readonly prefix: string;
  readonly core: ClusterHost;
  readonly cmd: RedisClient;
  readonly logger: Logger;
  readonly counters: { goneInboxMessages: number };
  isLive(node: string): boolean;
  /** whether this node still sends messages to `node`'s inbox (its routes linger after it went) */
  routesTo(node: string): boolean;
  /** settles once the other nodes have been told of this node's subscriptions so far */
  routesShared(): Promise<void> | undefined;
  /** the id of the last entry this node's own inbox reader has handled ('0-0' before the first) */
  ownHandled(): string;
  /**
   * a message is routed here that `from` forwarded as its `n`th: a session handed on from here
   * meanwhile sends it on with that origin, for the node it went to to tell it from its own copy
   */
  noteRoute(message: Message, from: string, n: number, run: string): void;
}

/** how often the inbox of a gone node is read again while sessions taken from it may still get messages there */
const POLL_MS = 200;
// entries are batches of a turn's messages: a read of many would hold up the command connection
const READ_COUNT = 100;
/**
 * Reading goes on this long after a session was last taken from the node and this node last
 * routed there: messages other nodes sent there as they dropped its routes are on their way.
 */
const FOLLOW_MS = 2000;
/**
 * Reading stops this long after it began in any case: a node that did not hand a session over in
 * time but was not dead keeps its routes and reads its inbox itself.
 */
const MAX_FOLLOW_MS = 30_000;
/**
 * Live messages for a session taken from a gone node wait at most this long, and this many, for
 * its backlog there to be read: past that, they go in behind what was read so far.
 */
const MAX_HOLD_MS = 10_000;
const MAX_HELD = 10_000;
/** Reading that keeps failing (Redis out of reach) goes on trying this long, unless the node comes back. */
const FAILING_FOLLOW_MS = 5 * 60_000;

/** A message read from a gone node's inbox: who forwarded it (in its run `run`; both: `sender`), its number there, and when Redis took it. */
interface Entry {
  readonly from: string;
  readonly run: string;
  readonly sender: string;
  readonly n: number;
  readonly at: number;
  readonly body: Buffer;
}

/** A session taken from the gone node, and where the messages reaching this node stood then. */
interface Taken {
  readonly session: Session;
  readonly mark: ArrivalMark;
}

/** The inbox of one gone node, read for the sessions taken from it. */
interface Follow {
  readonly node: string;
  readonly began: number;
  /** messages read so far: a session taken later gets them too */
  readonly entries: Entry[];
  readonly taken: Map<string, Taken>;
  /** sessions taken this turn, given what was read so far together at its end */
  joining: Map<string, Taken>;
  /** settles once the sessions joining have been given what was read so far, and what was read twice more */
  joined: Promise<void> | undefined;
  /**
   * the sessions each message read was given to, by sender and number: the same message may reach
   * this node itself later (its sender had this node's routes too), and is not given to them again
   */
  readonly given: Map<string, Set<Session>>;
  /** the id of the last entry read ('' before the first) */
  lastId: string;
  lastTake: number;
  lastRouted: number;
  /** the node was seen gone: seen live again, it reads its inbox itself */
  seenGone: boolean;
  /** the reads so far, in order */
  reading: Promise<void>;
  /** a read asked for by the poll is under way */
  polling: boolean;
  failed: boolean;
}

/**
 * The live messages for a session taken from a gone node, held back until the backlog of it there
 * has been read up to when the other nodes knew the session was here: each publisher's messages
 * then reach it in the order sent ([MQTT-4.6.0-5]).
 */
interface Hold {
  readonly follow: Follow;
  /** each message with its sender and number, as they came */
  readonly messages: Array<{ message: Message; key: string }>;
  readonly timer: NodeJS.Timeout;
  /** settles once the held messages are in the session (queued, and journaled for a persistent one) */
  readonly released: Deferred<void>;
}

const NO_GROUPS = (): boolean => false;

/**
 * Messages other nodes routed to a node that then died or stopped, read from its inbox for the
 * sessions taken from it (the node may be this one: a session of its earlier run, kept only in
 * Redis, resumes when its client connects). A node that goes keeps its routes a while
 * (membership.ts), so that what is published for its sessions meanwhile waits in its inbox (kept
 * a day, for its return) instead of reaching no one. A node that takes up one of those sessions (its client connected here, or it
 * is kept here offline) reads that inbox from the start, and on while messages may still arrive
 * there, and gives the session what matches its subscriptions.
 *
 * Nothing is delivered twice on this node: each forwarded message has its sender and its number
 * there; what reached this node itself after a session was taken (which the session then got
 * here) is skipped, and what the session got from the inbox is skipped when it reaches this node
 * itself later. Messages the gone node had handled but not yet trimmed are given again: between
 * nodes, delivery is at least once. Shared subscriptions are left out (any member of the group may
 * have taken the message).
 */
export class GoneInboxes {
  private readonly node: GoneInboxNode;
  private readonly follows = new Map<string, Follow>();
  /** the forwarded messages this node took while sessions were being followed */
  private readonly arrivals = new ArrivalLog();
  /** sessions taken from gone nodes whose live messages wait for their backlog */
  private readonly holds = new Map<Session, Hold>();
  /** the holds the message last given to holdBack went into (see heldBy) */
  private heldNow: Array<Promise<void>> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(node: GoneInboxNode) {
    this.node = node;
  }

  /** whether messages reaching this node are to be told (arrived) */
  get following(): boolean {
    return this.arrivals.active;
  }

  /**
   * When the holds the message last given to holdBack (and routed) went into are released: a
   * publisher acknowledged before that would have a message held in memory alone.
   */
  heldBy(): Array<Promise<void>> | undefined {
    const held = this.heldNow;
    this.heldNow = undefined;
    return held;
  }

  /** whether live messages for some sessions are held back (holdBack filters them out) */
  get holding(): boolean {
    return this.holds.size > 0;
  }

  /**
   * The filter of the sessions a live message forwarded by `from` in its run `run` (its `n`th)
   * reaches, given the filter `only` it would have had: those whose backlog is being read keep
   * it, to get it after that backlog.
   */
  holdBack(message: Message, from: string, run: string, n: number, only: ((s: Session) => boolean) | undefined): (s: Session) => boolean {
    const key = `${senderOf(from, run)}\n${n}`;
    this.heldNow = undefined;
    return (s) => {
      if (only !== undefined && !only(s)) return false;
      const hold = this.holds.get(s);
      if (hold === undefined) return true;
      hold.messages.push({ message, key });
      (this.heldNow ??= []).push(hold.released.promise);
      // not from within the route under way (routing does not nest)
      if (hold.messages.length === MAX_HELD) setImmediate(() => this.release(s, hold));
      return false;
    };
  }

  /**
   * A message forwarded by node `from` in its run `run` (its `n`th) reached this node and is routed
   * here; returns the sessions it was given to from a gone node's inbox already, which it skips.
   */
  arrived(from: string, run: string, n: number): ReadonlySet<Session> | undefined {
    const sender = senderOf(from, run);
    this.arrivals.record(sender, n);
    if (this.follows.size === 0) return undefined;
    const key = `${sender}\n${n}`;
    for (const f of this.follows.values()) {
      const given = f.given.get(key);
      if (given !== undefined) return given;
    }
    return undefined;
  }

  /**
   * A session was taken from `node`, which is gone or did not hand it over: what waits for it in
   * that node's inbox is delivered to it. Settles once everything the inbox held when the other
   * nodes knew of the session here has been (the claim of a client waits for that).
   */
  took(node: string, session: Session): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const now = this.node.core.now();
    let f = this.follows.get(node);
    if (f === undefined) {
      f = { node, began: now, entries: [], taken: new Map(), joining: new Map(), joined: undefined, given: new Map(), lastId: '', lastTake: now, lastRouted: now, seenGone: false, reading: Promise.resolve(), polling: false, failed: false };
      this.follows.set(node, f);
      if (this.timer === undefined) {
        this.timer = setInterval(this.poll, POLL_MS);
        this.timer.unref();
      }
    }
    f.lastTake = now;
    const before = f.taken.get(session.clientId) ?? f.joining.get(session.clientId);
    if (before !== undefined) this.arrivals.release(before.mark);
    f.taken.delete(session.clientId);
    // marked now, as it starts to take messages here
    f.joining.set(session.clientId, { session, mark: this.arrivals.mark() });
    const follow = f;
    // read once now, and once more after the other nodes know the session is here: what they sent
    // the gone node until then comes ahead of the CONNACK. One pass and two reads for the turn's sessions.
    follow.joined ??= new Promise<void>((resolve) =>
      setImmediate(() => {
        this.join(follow);
        resolve();
      }),
    )
      .then(() => this.read(follow))
      .then(() => this.node.routesShared())
      .then(() => this.read(follow));
    this.hold(session, follow, follow.joined);
    return follow.joined;
  }

  /** Holds back the session's live messages until `read` settles (or the hold's bounds are reached). */
  private hold(session: Session, f: Follow, read: Promise<void>): void {
    const before = this.holds.get(session);
    if (before !== undefined) this.release(session, before);
    const timer = setTimeout(() => this.release(session, hold), MAX_HOLD_MS);
    timer.unref();
    const hold: Hold = { follow: f, messages: [], timer, released: deferred<void>() };
    this.holds.set(session, hold);
    const release = (): void => this.release(session, hold);
    read.then(release, release);
  }

  /** The session's held messages go to it, but those it had from the inbox meanwhile. */
  private release(session: Session, hold: Hold): void {
    if (this.holds.get(session) !== hold) return;
    this.holds.delete(session);
    clearTimeout(hold.timer);
    const only = (s: Session): boolean => s === session;
    for (const { message, key } of hold.messages) {
      if (hold.follow.given.get(key)?.has(session) === true) continue;
      try {
        this.node.core.routeRemote(message, NO_GROUPS, only);
      } catch (err) {
        this.node.core.reportFault(err, `delivering a message held back for ${session.clientId}`);
      }
    }
    hold.released.resolve();
  }

  /**
   * The sessions taken this turn are given what was read so far, in one pass (a gone node's
   * sessions are taken up hundreds at a time), ahead of what is read next.
   */
  private join(f: Follow): void {
    const joining = f.joining;
    f.joining = new Map();
    f.joined = undefined;
    if (this.follows.get(f.node) !== f) {
      for (const t of joining.values()) this.arrivals.release(t.mark);
      return;
    }
    for (const [id, t] of joining) f.taken.set(id, t);
    for (const e of f.entries) this.deliver(f, e, joining);
  }

  /** Stops reading; sessions keep what reached them. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const f of [...this.follows.values()]) this.end(f);
    for (const [session, hold] of [...this.holds]) this.release(session, hold);
  }

  private readonly poll = (): void => {
    const now = this.node.core.now();
    for (const f of this.follows.values()) {
      // an earlier run of this node is followed only for what was sent to it: the rest comes here
      if (f.node !== this.node.nodeId && this.node.routesTo(f.node)) f.lastRouted = now;
      if (!this.node.isLive(f.node)) f.seenGone = true;
      // a slow Redis is not asked again before it answered; one that never answers is given up on
      if (f.polling) {
        if (now - f.began >= FAILING_FOLLOW_MS) this.end(f);
        continue;
      }
      f.polling = true;
      // read once more before it ends: what arrived since the last read
      void this.read(f).then(() => {
        f.polling = false;
        if (this.finished(f)) this.end(f);
      });
    }
  };

  /** Whether nothing more can arrive in the node's inbox for the sessions taken from it, or the node reads it itself again. */
  private finished(f: Follow): boolean {
    const now = this.node.core.now();
    if (f.seenGone && this.node.isLive(f.node)) return true;
    if (f.joining.size > 0) return false;
    // what could not be read yet is still to be
    if (f.failed) return now - f.began >= FAILING_FOLLOW_MS;
    return now - f.began >= MAX_FOLLOW_MS || now - Math.max(f.lastTake, f.lastRouted) >= FOLLOW_MS;
  }

  private end(f: Follow): void {
    if (this.follows.get(f.node) !== f) return;
    this.follows.delete(f.node);
    for (const t of f.taken.values()) this.arrivals.release(t.mark);
    for (const t of f.joining.values()) this.arrivals.release(t.mark);
    if (this.follows.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Reads what the inbox holds past the last entry read, after the reads already asked for; never rejects. */
  private read(f: Follow): Promise<void> {
    f.reading = f.reading.then(() => this.pull(f)).then(
      () => {
        if (f.failed) this.node.logger.info({ node: f.node }, 'cluster: the inbox of a gone node read again');
        f.failed = false;
      },
      (err: Error) => {
        // read again at the next poll
        if (!f.failed) this.node.logger.warn({ err: err.message, node: f.node }, 'cluster: the inbox of a gone node not read');
        f.failed = true;
      },
    );
    return f.reading;
  }

  private async pull(f: Follow): Promise<void> {
    const key = inboxKeys(this.node.prefix, f.node)[0];
    // this node's own inbox: what its reader handled before the session was here, no further (the
    // reader gives the session the rest, and after the follow ends could not tell what it had)
    const end = f.node === this.node.nodeId ? this.node.ownHandled() : '+';
    for (;;) {
      if (this.follows.get(f.node) !== f) return;
      const page = await readInboxPage(this.node.cmd, key, f.lastId, READ_COUNT, end);
      if (this.follows.get(f.node) !== f) return;
      f.lastId = page.lastId;
      for (const { from, run, at, frame } of page.messages) {
        const e = { from, run, sender: senderOf(from, run), n: frame.n, at, body: frame.body };
        f.entries.push(e);
        this.deliver(f, e);
      }
      if (page.entries < READ_COUNT) return;
    }
  }

  /** Gives a message to the sessions taken from the node (or those `among`) that match it and did not get it here. */
  private deliver(f: Follow, e: Entry, among: ReadonlyMap<string, Taken> = f.taken): void {
    const { core } = this.node;
    const key = `${e.sender}\n${e.n}`;
    // counted when some session had it from the inbox alone, not also here
    let onlyThere = false;
    const accept = (s: Session): boolean => {
      const t = among.get(s.clientId);
      if (t === undefined || t.session !== s) return false;
      if (this.arrivals.takenSince(t.mark, e.sender, e.n)) {
        // it reached the session here since it was taken, unless held back: then the copy held is dropped
        if (this.holds.get(s)?.follow !== f) return false;
      } else onlyThere = true;
      let given = f.given.get(key);
      if (given === undefined) f.given.set(key, (given = new Set()));
      given.add(s);
      return true;
    };
    try {
      // its expiry counts from when Redis took it
      const message = unpackMessage(e.body, Math.min(core.now(), e.at));
      this.node.noteRoute(message, e.from, e.n, e.run);
      if (core.routeRemote(message, NO_GROUPS, accept) > 0 && onlyThere) this.node.counters.goneInboxMessages++;
    } catch (err) {
      core.reportFault(err, `delivering a message left in the inbox of node ${f.node}`);
    }
  }
}
