import type { Buffer } from 'node:buffer';
import { publishOn, type RedisClient } from './redis-target.js';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { Session } from '../session/session.js';
import type { Delivery, Message } from '../session/message.js';
import { ArrivalLog, type ArrivalMark } from './arrival-log.js';
import { adopt, deliverTail, handOver, insertTail, resumeLate, takeTail } from './session-handover.js';
import { packFrame, type NodeFrame, type SessionTransfer, type WireDelivery } from './wire.js';

/** how long a session handed over stays here for the node it went to to release it */
const RELEASE_WAIT_MS = 10_000;
/**
 * How long a released session still takes messages from nodes that had not heard where it went
 * in time: they sent them here alone, and they follow it.
 */
const LINGER_MS = 1000;
/** How long a client whose session moved here waits for what reached the old node meanwhile, before it is answered anyway. */
const TAIL_WAIT_MS = 1000;
/** How long the old node waits for every other node to have passed the move before it sends on what reached it (less than TAIL_WAIT_MS). */
const PASS_WAIT_MS = 500;
/** How long the new node remembers which forwarded messages it took after adopting a session: past the old node's last tail. */
const ADOPTION_MEMORY_MS = 3 * (PASS_WAIT_MS + LINGER_MS);

/** A session handed to another node, still here until it is released and has lingered. */
interface Move {
  session: Session;
  timer: NodeJS.Timeout;
  /** the node it went to, once that node released it */
  to: string | undefined;
  /** the count of messages noted when the node it went to said it had resumed it */
  adoptedAt: number | undefined;
  /** nodes (this one among them) that know the session's routes there, past every message they sent here alone */
  passed: Set<string>;
  /** whether what reached only this node has been sent on once (the first tail) */
  firstSent: boolean;
}

/** Takes a client id that no node holds; returns the holder. */
export const CLAIM_IF_FREE = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`;
/** Lets go of a client id only if this node still holds it. */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** The scripts above, as the command connection defines them. */
export interface OwnershipScripts {
  midgeClaimIfFree(key: string, nodeId: string): Promise<string>;
  midgeRelease(key: string, nodeId: string): Promise<number>;
}

export interface HandoverCounters {
  sessionsHandedOver: number;
  sessionsTakenOver: number;
}

/** What ownership needs of the node it belongs to. */
export interface OwnershipNode {
  readonly nodeId: string;
  readonly core: ClusterHost;
  readonly cmd: RedisClient;
  readonly scripts: OwnershipScripts;
  readonly logger: Logger;
  readonly counters: HandoverCounters;
  readonly handoverTimeoutMs: number;
  key(name: string): string;
  isLive(node: string): boolean;
  /** settles once the other nodes have been told of this node's subscriptions so far */
  routesShared(): Promise<void> | undefined;
  /** queues a frame for a node's inbox in order with the messages this node routes to it */
  forwardFrame(node: string, frame: Buffer): void;
  /** asks every node, once it knows this node's routes so far, to pass the move of a session from `previous` */
  announceMove(previous: string, clientId: string): void;
  /** the live nodes other than this one */
  others(): string[];
}

/**
 * Which node holds each client id, kept in Redis (`client:<id>` = node id): one connection per
 * client id in the whole cluster ([MQTT-3.1.4-3]), and the session moves to the node its client
 * connects to.
 */
export class ClientOwnership {
  private readonly node: OwnershipNode;
  private nextRequest = 1;
  private readonly requests = new Map<number, (s: SessionTransfer | null) => void>();
  /** requests given up on, for an answer that still comes (while the old node would wait for a release) */
  private readonly late = new Map<number, { node: string; clientId: string }>();
  /** client ids being taken from other nodes: a session ending here meanwhile does not let go of them */
  private readonly claiming = new Map<string, number>();
  private releases: Set<string> | undefined;
  /** sessions handed to other nodes, until they have been released and lingered */
  private readonly moving = new Map<string, Move>();
  /** where messages routed while sessions handed over are here came from, their number there, and when (`seq`) they were noted */
  private readonly routes = new WeakMap<Message, { from: string; n: number; seq: number }>();
  /** messages noted so far */
  private noted = 0;
  /** sessions adopted here whose client waits for the old node's first tail */
  private readonly firstTails = new Map<string, (queue: WireDelivery[] | undefined) => void>();
  /** sessions adopted here lately, with where the arrivals stood then */
  private readonly adoptions = new Map<string, { at: ArrivalMark; timer: NodeJS.Timeout }>();
  /** forwarded messages taken here while sessions were lately adopted */
  private readonly arrivals = new ArrivalLog();

  constructor(node: OwnershipNode) {
    this.node = node;
  }

  /** Sessions kept on disk whose client connected to another node while this one was down are no longer this node's. */
  async settle(): Promise<void> {
    const { core, scripts, nodeId } = this.node;
    const sessions = [...core.sessions.values()];
    for (let i = 0; i < sessions.length; i += 1000) {
      const slice = sessions.slice(i, i + 1000);
      const owners = await Promise.all(slice.map((s) => scripts.midgeClaimIfFree(this.node.key(`client:${s.clientId}`), nodeId)));
      slice.forEach((s, k) => {
        if (owners[k] === nodeId) return;
        core.wills.cancel(s.clientId);
        core.sessions.end(s);
      });
    }
  }

  /** A client is connecting here: takes its id, and its session from the node that had it. */
  claim(clientId: string, cleanStart: boolean): Promise<void> {
    this.claiming.set(clientId, (this.claiming.get(clientId) ?? 0) + 1);
    return this.take(clientId, cleanStart)
      .catch((err: Error) => this.node.logger.warn({ err: err.message, clientId }, 'cluster: client id not claimed'))
      .finally(() => {
        const n = (this.claiming.get(clientId) ?? 1) - 1;
        if (n > 0) this.claiming.set(clientId, n);
        else this.claiming.delete(clientId);
      });
  }

  private async take(clientId: string, cleanStart: boolean): Promise<void> {
    const { cmd, nodeId, logger } = this.node;
    const previous = (await cmd.call('SET', this.node.key(`client:${clientId}`), nodeId, 'GET')) as string | null;
    if (previous === null || previous === nodeId) return;
    if (!this.node.isLive(previous)) {
      logger.info({ clientId, node: previous }, 'cluster: the node that held this client is gone; its session stays there');
      return;
    }
    const transfer = await this.request(previous, clientId, cleanStart);
    if (transfer === null) return;
    const adopted = adopt(this.node.core, clientId, transfer);
    if (adopted) {
      this.node.counters.sessionsTakenOver++;
      this.rememberAdoption(clientId);
    }
    const firstTail = adopted ? this.firstTail(clientId) : undefined;
    this.moveHere(previous, clientId);
    if (firstTail === undefined) return;
    // The client is answered once the old node has sent on what reached it meanwhile: that went
    // ahead, for each publisher, of what has reached the session here since ([MQTT-4.6.0-6]).
    const queue = await firstTail;
    if (queue !== undefined) insertTail(this.node.core, clientId, transfer.queue.length, queue);
  }

  private firstTail(clientId: string): Promise<WireDelivery[] | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.firstTails.get(clientId) !== done) return;
        this.firstTails.delete(clientId);
        resolve(undefined);
      }, TAIL_WAIT_MS);
      const done = (queue: WireDelivery[] | undefined): void => {
        clearTimeout(timer);
        resolve(queue);
      };
      this.firstTails.set(clientId, done);
    });
  }

  /**
   * The client's session is here now: from here on, what is published here reaches it here, and
   * the old node, which also takes it until the release, must not send it back. The mark goes in
   * the same stream as the messages, so that the old node tells those published before it from
   * those after. The old node lets the session go once the others route its messages here (not
   * waited for: the client is answered now, and what reaches the old node meanwhile follows); the
   * release goes in the same stream too, behind the messages sent before it.
   */
  private moveHere(previous: string, clientId: string): void {
    this.node.forwardFrame(previous, packFrame({ kind: 'adopted', from: this.node.nodeId, clientId }));
    this.node.announceMove(previous, clientId);
    void Promise.resolve(this.node.routesShared()).then(() => this.node.forwardFrame(previous, packFrame({ kind: 'release', from: this.node.nodeId, clientId })));
  }

  private send(node: string, frame: NodeFrame): void {
    publishOn(this.node.cmd, this.node.cmd, this.node.key(`node:${node}`), packFrame(frame)).catch((err: Error) => this.node.logger.warn({ err: err.message, node, frame: frame.kind }, 'cluster: frame not sent'));
  }

  private request(node: string, clientId: string, cleanStart: boolean): Promise<SessionTransfer | null> {
    const requestId = this.nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.requests.delete(requestId);
        this.node.logger.warn({ clientId, node }, 'cluster: no session handover in time; the client starts a new session');
        this.late.set(requestId, { node, clientId });
        setTimeout(() => this.late.delete(requestId), RELEASE_WAIT_MS).unref();
        resolve(null);
      }, this.node.handoverTimeoutMs);
      this.requests.set(requestId, (session) => {
        clearTimeout(timer);
        this.requests.delete(requestId);
        resolve(session);
      });
      const frame = packFrame({ kind: 'takeover', requestId, from: this.node.nodeId, clientId, cleanStart });
      publishOn(this.node.cmd, this.node.cmd, this.node.key(`node:${node}`), frame).catch(() => undefined);
    });
  }

  /** Another node asks for a client's connection and session: hand them over and answer. */
  handOver(requestId: number, from: string, clientId: string, cleanStart: boolean): void {
    this.endMove(clientId);
    const handed = handOver(this.node.core, clientId, cleanStart);
    if (handed !== null) {
      this.node.counters.sessionsHandedOver++;
      // a node that never releases it (it died) leaves it to end here, as it would have at once
      const timer = setTimeout(() => this.endMove(clientId), RELEASE_WAIT_MS);
      timer.unref();
      this.moving.set(clientId, { session: handed.session, timer, to: undefined, adoptedAt: undefined, passed: new Set(), firstSent: false });
    }
    this.send(from, { kind: 'session', requestId, session: handed?.transfer ?? null });
  }

  /** The node a session went to has resumed it: what that node sends from now on reached it there. */
  adopted(from: string, clientId: string): void {
    const move = this.moving.get(clientId);
    if (move !== undefined && move.to === undefined && move.adoptedAt === undefined) move.adoptedAt = this.noted;
  }

  /**
   * A node (this one too) knows the routes of a session handed over from here to its new node,
   * and has sent here everything it sent here alone: what it sends from now on goes there too.
   */
  passed(node: string, clientId: string): void {
    const move = this.moving.get(clientId);
    if (move === undefined || move.firstSent) return;
    move.passed.add(node);
    this.sendFirstTail(clientId, move, false);
  }

  /** The node a session went to has it, and the others route its messages there: what came here meanwhile follows it. */
  released(from: string, clientId: string): void {
    const move = this.moving.get(clientId);
    if (move === undefined || move.to !== undefined) return;
    move.to = from;
    clearTimeout(move.timer);
    // a node that does not pass the move in time (busy, or gone) is not waited for longer
    move.timer = setTimeout(() => this.sendFirstTail(clientId, move, true), PASS_WAIT_MS);
    move.timer.unref();
    this.sendFirstTail(clientId, move, false);
  }

  /**
   * Sends on what reached only this node, once the node the session went to released it and every
   * other node passed the move (or `anyway`): nothing any node sent here alone comes later, so the
   * client gets it ahead of what reached it there ([MQTT-4.6.0-6]). Then the session lingers.
   */
  private sendFirstTail(clientId: string, move: Move, anyway: boolean): void {
    const to = move.to;
    if (to === undefined || move.firstSent) return;
    const waitingFor = (n: string): boolean => n !== to && !move.passed.has(n);
    if (!anyway && (!move.passed.has(this.node.nodeId) || this.node.others().some(waitingFor))) return;
    move.firstSent = true;
    const queue = takeTail(this.node.core, move.session, false, (d) => this.notPublishedThere(d, to, move.adoptedAt ?? Infinity), this.origin);
    // sent even empty: the client waits for it there
    this.send(to, { kind: 'tail', clientId, queue });
    clearTimeout(move.timer);
    move.timer = setTimeout(() => this.endMove(clientId), LINGER_MS);
    move.timer.unref();
  }

  /** whether sessions handed over are still here, taking messages (their routes are noted then) */
  get moves(): boolean {
    return this.moving.size > 0;
  }

  noteRoute(message: Message, from: string, n: number): void {
    this.routes.set(message, { from, n, seq: ++this.noted });
  }

  /** whether sessions were adopted here lately (forwarded messages are noted then) */
  get adopting(): boolean {
    return this.arrivals.active;
  }

  /** A message `from` forwarded (its `n`th) was taken here. */
  arrived(from: string, n: number): void {
    this.arrivals.record(from, n);
  }

  /**
   * The old node sends on what reached the session there, among it messages that were forwarded
   * here too: those taken here after the adoption reached the session here as well.
   */
  private rememberAdoption(clientId: string): void {
    this.forgetAdoption(clientId);
    const timer = setTimeout(() => this.forgetAdoption(clientId), ADOPTION_MEMORY_MS);
    timer.unref();
    this.adoptions.set(clientId, { at: this.arrivals.mark(), timer });
  }

  private forgetAdoption(clientId: string): void {
    const adoption = this.adoptions.get(clientId);
    if (adoption === undefined) return;
    clearTimeout(adoption.timer);
    this.adoptions.delete(clientId);
    this.arrivals.release(adoption.at);
  }

  /** A tail's deliveries but those whose message reached the session here too. */
  private notTakenHere(clientId: string, queue: WireDelivery[]): WireDelivery[] {
    const at = this.adoptions.get(clientId)?.at;
    if (at === undefined) return queue;
    return queue.filter((w) => w.o === undefined || !this.arrivals.takenSince(at, w.o[0], w.o[1]));
  }

  /** The node is leaving: sessions handed over stay in its store, and a restart drops them (their ids are elsewhere). */
  stop(): void {
    for (const move of this.moving.values()) clearTimeout(move.timer);
    this.moving.clear();
    for (const clientId of [...this.adoptions.keys()]) this.forgetAdoption(clientId);
  }

  /** What reached a session on its old node after it was handed over. */
  tail(clientId: string, all: WireDelivery[]): void {
    const queue = this.notTakenHere(clientId, all);
    const waiting = this.firstTails.get(clientId);
    if (waiting === undefined) return deliverTail(this.node.core, clientId, queue);
    this.firstTails.delete(clientId);
    waiting(queue);
  }

  /** Ends a session handed over; one that lingered sends on what reached only it. */
  private endMove(clientId: string): void {
    const move = this.moving.get(clientId);
    if (move === undefined) return;
    clearTimeout(move.timer);
    this.moving.delete(clientId);
    const to = move.to;
    if (to === undefined) {
      takeTail(this.node.core, move.session, true);
      return;
    }
    // the release came after the adoption mark: everything the new node sent since was published there after it
    const queue = takeTail(this.node.core, move.session, true, (d) => this.notPublishedThere(d, to, move.adoptedAt ?? 0), this.origin);
    if (queue.length > 0) this.send(to, { kind: 'tail', clientId, queue });
  }

  /**
   * Whether a delivery to a session handed over to `to` is to be sent on: not when its message was
   * published there after `adoptedAt` (a `noted` count), where the session then was. One that was
   * also forwarded there is sent on with its origin (below), for `to` to tell whether it took it
   * before the session was there.
   */
  private notPublishedThere(d: Delivery, to: string, adoptedAt: number): boolean {
    const route = this.routes.get(d.message);
    return route === undefined || route.from !== to || route.seq <= adoptedAt;
  }

  /** The node that forwarded a delivery's message and its number there, if it was forwarded (see `arrived`). */
  private readonly origin = (d: Delivery): [string, number] | undefined => {
    const route = this.routes.get(d.message);
    return route === undefined || route.n === 0 ? undefined : [route.from, route.n];
  };

  /** The answer to a request of this node. */
  answered(requestId: number, session: SessionTransfer | null): void {
    const waiting = this.requests.get(requestId);
    if (waiting !== undefined) return waiting(session);
    const late = this.late.get(requestId);
    if (late === undefined) return;
    this.late.delete(requestId);
    if (session === null) return;
    // The client was told it has no session (Session Present 0) and started another here; the
    // messages the old one held were acknowledged to their publishers, so they still reach it.
    const count = resumeLate(this.node.core, late.clientId, session);
    this.node.logger.info({ clientId: late.clientId, node: late.node, messages: count }, 'cluster: a session handed over late; its messages go to the new session');
    this.moveHere(late.node, late.clientId);
  }

  /** The client's session ended here: its id is let go, unless a successor holds it by the end of the turn. */
  sessionEnded(clientId: string): void {
    // checked after the turn: a clean start ends a session and opens its successor in one go
    if (this.releases === undefined) {
      this.releases = new Set();
      setImmediate(() => this.flush());
    }
    this.releases.add(clientId);
  }

  flush(): void {
    const ids = this.releases;
    this.releases = undefined;
    if (ids === undefined) return;
    for (const id of ids) {
      if (this.node.core.sessions.get(id) !== undefined || this.claiming.has(id)) continue;
      this.node.scripts.midgeRelease(this.node.key(`client:${id}`), this.node.nodeId).catch(() => undefined);
    }
  }
}
