import type { Buffer } from 'node:buffer';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { Delivery, Message } from '../session/message.js';
import type { Session } from '../session/session.js';
import { ArrivalLog, senderOf, type ArrivalMark } from './arrival-log.js';
import { deliverTail, insertTail, takeTail } from './session-handover.js';
import { packFrame, type NodeFrame, type WireDelivery } from './wire.js';

/** How long a session handed over stays here for the node it went to to release it. */
export const RELEASE_WAIT_MS = 10_000;
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

/** What a session move needs of the node. */
export interface MoveNode {
  readonly nodeId: string;
  readonly core: ClusterHost;
  /** settles once the other nodes have been told of this node's subscriptions so far */
  routesShared(): Promise<void> | undefined;
  /** queues a frame for a node's inbox in order with the messages this node routes to it */
  forwardFrame(node: string, frame: Buffer): void;
  /** sends a frame to a node at once, over pub/sub */
  sendFrame(node: string, frame: NodeFrame): void;
  /** asks every node, once it knows this node's routes so far, to pass the move of a session from `previous` */
  announceMove(previous: string, clientId: string): void;
  /** the live nodes other than this one */
  others(): string[];
}

/**
 * A persistent session moving between nodes with its client, without losing, repeating or
 * reordering what is published to it meanwhile.
 *
 * The old node keeps the session subscribed after handing it over, so that what other nodes still
 * send there is not lost. The new node, once it has the session, marks that in the old node's inbox
 * (`adopted`: what it sends from then on reached the session there), announces the move behind
 * its route changes (every node then tells the old node, `passed`, behind what it sent there alone)
 * and lets the old node go (`release`). The old node then sends on what reached only it (`tail`),
 * with the origin of each forwarded message, for the new node to drop those it took itself after
 * the adoption; the new node answers the client once it has that tail and puts it ahead of what
 * reached the session there since. The old node takes messages a second more, and sends those on
 * too.
 */
export class SessionMoves {
  private readonly node: MoveNode;
  /** sessions handed to other nodes, until they have been released and lingered */
  private readonly moving = new Map<string, Move>();
  /** where messages routed while sessions handed over are here came from (in its run), their number there, and when (`seq`) they were noted */
  private readonly routes = new WeakMap<Message, { from: string; run: string; n: number; seq: number }>();
  /** messages noted so far */
  private noted = 0;
  /** sessions adopted here whose client waits for the old node's first tail */
  private readonly firstTails = new Map<string, (queue: WireDelivery[] | undefined) => void>();
  /** sessions adopted here lately, with where the arrivals stood then */
  private readonly adoptions = new Map<string, { at: ArrivalMark; timer: NodeJS.Timeout }>();
  /** forwarded messages taken here while sessions were lately adopted */
  private readonly arrivals = new ArrivalLog();

  constructor(node: MoveNode) {
    this.node = node;
  }

  /** sessions handed to other nodes and still here */
  get leaving(): number {
    return this.moving.size;
  }

  /** whether the client's session is one of them */
  isLeaving(clientId: string): boolean {
    return this.moving.has(clientId);
  }

  // ---- the node the session went to -----------------------------------------------------------

  /**
   * The session handed over by `previous` was resumed here with `brought` queued deliveries (or,
   * `adopted` false, the client has a session here already). Settles when the client can be
   * answered: once what reached the old node meanwhile is here, ahead, for each publisher, of what
   * reached the session here since ([MQTT-4.6.0-6]), or after TAIL_WAIT_MS.
   */
  async arrived(previous: string, clientId: string, adopted: boolean, brought: number): Promise<void> {
    if (!adopted) return this.moveHere(previous, clientId);
    this.rememberAdoption(clientId);
    const firstTail = this.firstTail(clientId);
    this.moveHere(previous, clientId);
    const queue = await firstTail;
    if (queue !== undefined) insertTail(this.node.core, clientId, brought, queue);
  }

  /**
   * A session `previous` handed over late (or at a readmission) is back with the one here: what
   * `previous` sends on after this reached it here too if this node took it since.
   */
  tookBack(previous: string, clientId: string): void {
    this.rememberAdoption(clientId);
    this.moveHere(previous, clientId);
  }

  /**
   * The client's session is here now: from here on, what is published here reaches it here, and
   * the old node, which also takes it until the release, must not send it back. The mark goes in
   * the same stream as the messages, so that the old node tells those published before it from
   * those after; so does the release, behind the messages sent before it, once the others route
   * the session's messages here.
   */
  moveHere(previous: string, clientId: string): void {
    this.node.forwardFrame(previous, packFrame({ kind: 'adopted', from: this.node.nodeId, clientId }));
    this.node.announceMove(previous, clientId);
    void Promise.resolve(this.node.routesShared()).then(() => this.node.forwardFrame(previous, packFrame({ kind: 'release', from: this.node.nodeId, clientId })));
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

  /** Whether a session moving here waits for its first tail (which must not wait for anything else). */
  expectsTail(clientId: string): boolean {
    return this.firstTails.has(clientId);
  }

  /** What reached a session on its old node after it was handed over. */
  tail(clientId: string, all: WireDelivery[]): void {
    const queue = this.notTakenHere(clientId, all);
    const waiting = this.firstTails.get(clientId);
    if (waiting === undefined) {
      deliverTail(this.node.core, clientId, queue);
      return;
    }
    this.firstTails.delete(clientId);
    waiting(queue);
  }

  /** whether sessions were adopted here lately (forwarded messages are logged then) */
  get adopting(): boolean {
    return this.arrivals.active;
  }

  /** A message `sender` (a node in one of its runs: senderOf) forwarded (its `n`th) was taken here. */
  taken(sender: string, n: number): void {
    this.arrivals.record(sender, n);
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

  // ---- the node the session left --------------------------------------------------------------

  /** The session was handed over (undefined: there was none): it stays here, subscribed, until released. */
  handedOver(clientId: string, session: Session | undefined): void {
    this.endMove(clientId);
    if (session === undefined) return;
    // a node that never releases it (it died) leaves it to end here, as it would have at once
    const timer = setTimeout(() => this.endMove(clientId), RELEASE_WAIT_MS);
    timer.unref();
    this.moving.set(clientId, { session, timer, to: undefined, adoptedAt: undefined, passed: new Set(), firstSent: false });
  }

  /** whether sessions handed over are still here, taking messages (their routes are noted then) */
  get active(): boolean {
    return this.moving.size > 0;
  }

  /** A message routed here came from `from`, in its run `run` (its `n`th forwarded; 0 when not forwarded). */
  noteRoute(message: Message, from: string, n: number, run: string): void {
    this.routes.set(message, { from, run, n, seq: ++this.noted });
  }

  /** A message this node noted unnumbered (its forward kept back behind a commit) is forwarded now, as its `n`th. */
  numbered(message: Message, n: number): void {
    const route = this.routes.get(message);
    if (route !== undefined && route.n === 0) route.n = n;
  }

  /** The node a session went to has resumed it: what that node sends from now on reached it there. */
  adopted(clientId: string): void {
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
    this.node.sendFrame(to, { kind: 'tail', clientId, queue });
    clearTimeout(move.timer);
    move.timer = setTimeout(() => this.endMove(clientId), LINGER_MS);
    move.timer.unref();
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
    if (queue.length > 0) this.node.sendFrame(to, { kind: 'tail', clientId, queue });
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

  /** The node that forwarded a delivery's message (with its run) and its number there, if it was forwarded (see `taken`). */
  private readonly origin = (d: Delivery): [string, number] | undefined => {
    const route = this.routes.get(d.message);
    return route === undefined || route.n === 0 ? undefined : [senderOf(route.from, route.run), route.n];
  };

  /** The node is leaving: sessions handed over stay in its store, and a restart drops them (their ids are elsewhere). */
  stop(): void {
    for (const move of this.moving.values()) clearTimeout(move.timer);
    this.moving.clear();
    for (const clientId of [...this.adoptions.keys()]) this.forgetAdoption(clientId);
  }
}
