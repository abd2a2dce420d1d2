import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ConnectPacket, Properties, QoS, Will } from '../codec/packets.js';
import type { EnhancedAuthenticator } from '../hooks/authenticator.js';
import { absentClient } from '../hooks/absent-client.js';
import type { BrokerEvents, ClientInfo, Credentials, Hooks, MaybePromise, PublishInfo, SubscribeInfo } from '../hooks/types.js';
import { isPromise, settle } from '../protocol/maybe-promise.js';
import { isHeldUntilStored } from '../protocol/outbound.js';
import type { BrokerPort, MessageCounters, OpenedSession, ProtocolSettings, SessionOwner } from '../protocol/ports.js';
import { createMessage, isExpired, ownBytesInPlace, type Delivery, type Message, type ShareRef } from '../session/message.js';
import { Session, type Subscription } from '../session/session.js';
import type { StoredState } from '../persistence/store.js';
import type { Durability } from './durability.js';
import type { Authentication } from '../auth/authentication.js';
import type { AclFile } from '../auth/acl-file.js';
import { parseSharedFilter } from '../topic/shared.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import { RetainedStore } from './retained-store.js';
import { Router, type SharedSelector } from './router.js';
import type { ClusterPort } from './cluster-port.js';
import { SessionRegistry } from './session-registry.js';
import { WillScheduler } from './wills.js';


/**
 * The single-node broker: sessions, routing, retained messages and wills, behind the narrow
 * BrokerPort the protocol engine talks to.
 */
export class BrokerCore extends EventEmitter<BrokerEvents> implements BrokerPort {
  readonly settings: ProtocolSettings;
  readonly sessions: SessionRegistry;
  readonly router: Router;
  readonly retained = new RetainedStore();
  readonly wills: WillScheduler;
  readonly counters: MessageCounters = {
    received: [0, 0, 0],
    sent: [0, 0, 0],
    dropped: { queueFull: 0, tooLarge: 0, expired: 0, notAuthorized: 0, rateLimited: 0, memoryLimit: 0 },
    throttled: 0,
    retainedRefused: 0,
  };
  /** deliveries routed to sessions (one per matching session) */
  routed = 0;
  /** most clients connected at once since start */
  maxConnected = 0;
  /** set while the broker is over its memory bound: nothing more waits in queues */
  memoryFull = false;
  /** measures memory at once (the composition root's guard), updating memoryFull */
  memoryCheck: (() => void) | undefined;
  connected = 0;
  private readonly hooks: Hooks;
  private readonly authenticators = new Map<string, EnhancedAuthenticator>();

  /** the cluster this broker is a node of, when it is one */
  cluster: ClusterPort | undefined;

  /** the store of persistent state, when the broker has one */
  readonly durability: Durability | undefined;

  /**
   * A fault met by work no client's input started (a session's expiry, a delayed will, `$SYS`):
   * the composition root logs it and the broker goes on. Without one, it is thrown.
   */
  reportFault: (err: unknown, task: string) => void = (err) => {
    throw err;
  };

  constructor(settings: ProtocolSettings, hooks: Hooks, authenticators: readonly EnhancedAuthenticator[] = [], durability?: Durability) {
    super();
    this.durability = durability;
    this.settings = settings;
    this.hooks = hooks;
    this.retained.maxMessages = settings.maxRetainedMessages;
    for (const a of authenticators) this.authenticators.set(a.method, a);
    this.router = new Router((session, message, qos, retain, ids, share) => this.deliverTo(session, message, qos, retain, ids, share));
    const fault = (err: unknown, task: string): void => this.reportFault(err, task);
    this.sessions = new SessionRegistry((session, handOver) => this.sessionEnded(session, handOver), fault);
    this.wills = new WillScheduler((client, will) => this.publishWill(client, will), fault);
    if (durability !== undefined) durability.reportFault = fault;
    // a will waiting out its delay outlives a restart in the store, and this node in the cluster
    this.wills.observer = {
      pending: (client, will, fireAt) => {
        durability?.willPending(client, will, fireAt);
        this.cluster?.willPending(client, will, fireAt);
      },
      done: (clientId) => {
        durability?.willDone(clientId);
        this.cluster?.willDone(clientId);
      },
    };
  }

  /**
   * Rebuilds sessions, retained messages and pending wills from the store, before any listener
   * opens. A node of a cluster leaves the wills to the cluster (`withWills` false): the copy in
   * Redis is sent by whichever node gets to it first, this one or another that found it gone.
   */
  restore(state: StoredState, withWills = true): void {
    for (const m of state.retained) {
      if (!isExpired(m, this)) this.retained.apply(m);
      else this.durability?.retainedDeleted(m.topic);
    }
    // what was live when the broker stopped lost its connection then: after a crash, about when the
    // broker last noted it was up
    const now = this.now();
    const lostAt = Math.min(state.aliveAt ?? now, now);
    const expiries = new Map<string, number>();
    const restored: Array<{ session: Session; expiresAt: number | undefined; lost: boolean }> = [];
    for (const stored of state.sessions) {
      expiries.set(stored.record.clientId, stored.record.expiryInterval);
      const session = new Session(stored.record.clientId, stored.record.expiryInterval, this.sessions.totals);
      session.username = stored.record.username;
      for (const sub of stored.subscriptions) this.router.add(session, sub);
      for (const d of stored.queue) session.restoreQueued(d);
      for (const e of stored.inflight) session.restoreInflight(e.packetId, { delivery: e.delivery, state: e.state });
      for (const id of stored.incomingQos2) session.incomingQos2.set(id, true);
      this.durability?.adopt(session);
      const record = stored.record;
      restored.push({ session, expiresAt: record.expiresAt, lost: !(record.offline ?? record.expiresAt !== undefined) });
    }
    // Only once every subscription is back, so that each shared group has all its members: the
    // sessions that were online when the broker stopped hand over what they held for shared
    // groups, as their connections would have as they closed (closeSession). They are those not
    // recorded offline: a session that never expires, offline for weeks, keeps what is queued for
    // it at every restart. A session whose deadline passed while the broker was down ends now,
    // before any client can see it, and hands over the rest.
    this.handOverLost(restored.filter((r) => r.lost).map((r) => r.session));
    for (const { session, expiresAt } of restored) {
      if (this.sessions.restore(session, expiresAt, lostAt)) this.durability?.sessionDetached(session);
    }
    for (const w of state.wills) {
      if (!withWills) {
        this.durability?.willDone(w.clientId);
        continue;
      }
      // no fireAt: its connection was up when the broker died, and closed without DISCONNECT then
      // ([MQTT-3.1.2-8]); the delay runs from that moment, and never past the session's end
      const fireAt = w.fireAt ?? lostAt + Math.min(w.will.properties?.willDelayInterval ?? 0, expiries.get(w.clientId) ?? 0) * 1000;
      this.wills.scheduleAt(absentClient(w.clientId, w.username), w.will, fireAt);
    }
  }

  now(): number {
    return Date.now();
  }

  assignClientId(): string {
    let id: string;
    do id = `midge-${randomBytes(9).toString('base64url')}`;
    while (this.sessions.get(id) !== undefined);
    return id;
  }

  // ---- hooks: absent hooks allow, synchronously ----------------------------------------------

  authenticator(method: string): EnhancedAuthenticator | undefined {
    return this.authenticators.get(method);
  }

  /** the password file and anonymous policy, checked before the authenticate hook */
  authentication: Authentication | undefined;

  authenticate(client: ClientInfo, credentials: Credentials, _connect: ConnectPacket, certified = false, allowAnonymous?: boolean): MaybePromise<boolean> {
    const hook = this.hooks.authenticate;
    const runHook = (): MaybePromise<boolean> => (hook === undefined ? true : guard(() => hook(client, credentials)));
    const builtIn = this.authentication?.check(client, credentials, certified, hook !== undefined, allowAnonymous) ?? true;
    if (builtIn === true) return runHook();
    if (builtIn === false) return false;
    return builtIn.then((ok) => (ok ? runHook() : false));
  }

  /** the ACL file, checked before the authorize hooks and at every delivery */
  acl: AclFile | undefined;

  authorizePublish(client: ClientInfo, message: PublishInfo): MaybePromise<boolean> {
    if (this.acl !== undefined && !this.acl.canWrite({ username: client.username, clientId: client.id }, message.topic)) return false;
    const hook = this.hooks.authorizePublish;
    return hook === undefined ? true : guard(() => hook(client, message));
  }

  authorizeSubscribe(client: ClientInfo, subscription: SubscribeInfo): MaybePromise<boolean> {
    if (this.acl !== undefined) {
      const shared = parseSharedFilter(subscription.topicFilter);
      const filter = shared !== null && typeof shared === 'object' ? shared.filter : subscription.topicFilter;
      if (!this.acl.canSubscribe({ username: client.username, clientId: client.id }, filter)) return false;
    }
    const hook = this.hooks.authorizeSubscribe;
    return hook === undefined ? true : guard(() => hook(client, subscription));
  }

  // ---- sessions -------------------------------------------------------------------------------

  openSession(owner: SessionOwner, cleanStart: boolean, expiryInterval: number): OpenedSession {
    // a session with a journal is in the store, and clean start is about to remove it from there
    const discardedStored = cleanStart && this.sessions.get(owner.client.id)?.journal !== undefined;
    const opened: OpenedSession = this.sessions.open(owner, cleanStart, expiryInterval);
    if (discardedStored) opened.discardedStored = true;
    opened.session.username = owner.client.username;
    this.durability?.sessionOpened(opened.session);
    // [MQTT-3.1.3-9] a reconnect within the Will Delay Interval cancels the pending will
    if (opened.present) this.wills.cancel(owner.client.id);
    else this.wills.fire(owner.client.id);
    const will = owner.will;
    if (this.cluster !== undefined) {
      if (will !== undefined) this.cluster.willArmed(owner, owner.client, will, Math.min(will.properties?.willDelayInterval ?? 0, expiryInterval));
      this.cluster.sessionChanged(owner.client.id);
    } else if (will !== undefined) {
      // a cluster keeps the wills of live connections in Redis instead
      this.durability?.willArmed(owner, owner.client, will);
    }
    if (++this.connected > this.maxConnected) this.maxConnected = this.connected;
    this.emit('clientConnected', owner.client);
    return opened;
  }

  closeSession(owner: SessionOwner, session: Session, will: Will | undefined, reason: string): void {
    this.cluster?.willDisarmed(owner, owner.client.id);
    // before the will is published or scheduled below, which says so to the store again
    this.durability?.willDisarmed(owner, owner.client.id);
    if (session.sink !== owner) {
      // Already taken over: the new connection owns the session now.
      if (will !== undefined) this.wills.schedule(owner.client, will, 0);
    } else {
      this.sessions.goOffline(session);
      this.reassignShared(session, false);
      this.sessions.detach(session);
      if (this.sessions.get(session.clientId) === session) {
        // QoS 0 messages an offline session would not be given are not kept for it either, even
        // those queued behind its inflight window while it was connected (as Mosquitto does)
        if (this.settings.offlineQos0 === 'drop' && session.queue.lossyLength > 0) session.takeQueued((d) => d.qos === 0);
        this.durability?.sessionDetached(session);
        // what it holds now may wait until the client returns
        session.ownPendingBytes();
      }
      // Only now, with the session away from the closed connection: a will that matches the
      // client's own kept subscriptions is queued for its return ([MQTT-3.1.2-5]), not handed to
      // the connection that is gone.
      if (will !== undefined) {
        // [MQTT-3.1.3-9] the will waits out its delay, but never outlives the session
        const delay = Math.min(will.properties?.willDelayInterval ?? 0, session.expiryInterval);
        this.wills.schedule(owner.client, will, delay);
      }
    }
    this.cluster?.sessionChanged(owner.client.id);
    this.connected--;
    this.emit('clientDisconnected', owner.client, reason);
  }

  /**
   * Messages a departing shared-subscription member had not yet acknowledged (or had queued) go to
   * other members of their group (5.0 section 4.8.2); with `only`, those it accepts. A QoS 2
   * message already sent stays with this client, to be completed when it reconnects
   * ([MQTT-4.8.2-4]) or dropped with its session ([MQTT-4.8.2-5]).
   *
   * When the session `ends`, a message no member on this node takes goes to a member on another
   * node of the cluster: kept, it would be dropped with the session. A session that only lost its
   * connection keeps such a message (it may move to another node with its client).
   */
  private reassignShared(session: Session, ends: boolean, only?: (d: Delivery) => boolean): void {
    if (session.inflight.size > 0) {
      for (const [packetId, entry] of session.inflight) {
        if (entry.state !== 'publish' || entry.delivery.share === undefined || entry.delivery.qos === 2) continue;
        if (only !== undefined && !only(entry.delivery)) continue;
        if (this.handOverShared(entry.delivery, session, ends)) session.endInflight(packetId);
      }
    }
    if (session.queue.length > 0) {
      session.takeQueued((d) => d.share !== undefined && (only === undefined || only(d)) && this.handOverShared(d, session, ends));
    }
  }

  /**
   * Gives a delivery `from` held to another member of its group: one on this node, or else, with
   * `acrossCluster`, one on another node (the group's other members may all be connected there).
   * Returns whether one took it.
   */
  private handOverShared(d: Delivery, from: Session, acrossCluster: boolean): boolean {
    if (this.router.reassignShared(d, from)) return true;
    const share = d.share;
    if (!acrossCluster || share?.shareGroup === undefined || this.cluster === undefined) return false;
    return this.cluster.handOverShared(d.message, share.topicFilter, share.shareGroup);
  }

  /**
   * Sessions whose connections were lost with the broker (a crash closes none of them) hand over
   * what a disconnect would have. What they all held is noted first: a message one of them hands
   * to another is not handed on again by that one.
   */
  private handOverLost(sessions: Session[]): void {
    const held = new Set<Delivery>();
    for (const session of sessions) {
      for (const entry of session.inflight.values()) if (entry.delivery.share !== undefined) held.add(entry.delivery);
      for (const d of session.queue) if (d.share !== undefined) held.add(d);
    }
    if (held.size === 0) return;
    for (const session of sessions) this.reassignShared(session, false, (d) => held.has(d));
  }

  private sessionEnded(session: Session, handOver: boolean): void {
    // a session that ends before its client is back has what it held for shared groups sent to
    // another member (5.0 section 4.8.2), not dropped with it
    if (handOver) this.reassignShared(session, true);
    this.durability?.sessionEnded(session);
    this.router.removeAll(session);
    session.clear();
    this.wills.fire(session.clientId);
    this.cluster?.sessionEnded(session.clientId);
  }

  keep(session: Session): void {
    this.durability?.sessionOpened(session);
    // one taken up offline (its node gone) is recorded so: after a crash here it is not taken for
    // one whose connection the crash took, and keeps what is queued for its shared groups
    if (session.sink === undefined) this.durability?.sessionDetached(session);
  }

  claimSession(clientId: string, cleanStart: boolean): Promise<void> | undefined {
    return this.cluster?.claim(clientId, cleanStart);
  }

  // ---- messages -------------------------------------------------------------------------------

  publish(message: Message, memo?: MatchMemo): void | Promise<void> {
    let retained = false;
    if (message.retain) {
      // apply() moves a kept message's bytes out of its read before any frame is built of them
      if (!this.retained.apply(message)) this.counters.retainedRefused++;
      else {
        this.durability?.retained(message);
        retained = true;
      }
    }
    const cluster = this.cluster;
    if (cluster === undefined) {
      this.routed += this.router.route(message, memo);
      // what this message changed is durable once the turn's group commit is
      return message.qos > 0 ? this.committed() : undefined;
    }
    // a QoS 2 message whose deliveries here wait for its commit (publishHeld) goes to the other
    // nodes, and is their retained message, only once that commit is over too, or they could have
    // it twice, or keep one its publisher sends again, after a crash
    const held = message.qos === 2 && isHeldUntilStored(message) ? this.commitOfHeld : undefined;
    this.routed += cluster.route(message, memo, held);
    // after the route, which asks `held` for the commit once the deliveries' writes are in it:
    // asked before them, that commit would leave them to another
    if (retained) cluster.retainedChanged(message, held);
    if (message.qos === 0) return undefined;
    const disk = this.committed();
    // the publisher's forwards and retained changes kept back behind a commit are with the other
    // nodes before it is acknowledged
    const sent = cluster.sent(message.senderId);
    if (sent === undefined || disk === undefined) return sent ?? disk;
    return Promise.all([disk, sent]).then(noop);
  }

  /** the commit a held message's forward waits for, asked once it is routed here (its writes are in it then) */
  private readonly commitOfHeld = (): Promise<void> | undefined => this.committed();

  /** Resolves when every change so far is on disk; undefined when nothing is waiting to get there. */
  committed(): Promise<void> | undefined {
    return this.durability?.onDisk === true ? this.durability.commit() : undefined;
  }

  /** The store is on disk: what must outlive a crash waits for committed(). */
  get onDisk(): boolean {
    return this.durability?.onDisk === true;
  }

  /** Removes a retained message (administration). */
  deleteRetained(topic: string): boolean {
    const existed = this.retained.delete(topic);
    if (existed) {
      this.durability?.retainedDeleted(topic);
      this.cluster?.retainedDeleted(topic);
    }
    return existed;
  }

  /** A message another node of the cluster routed here: to this node's subscribers, and to the shared groups `shared` accepts. */
  routeRemote(message: Message, shared: SharedSelector, only?: (session: Session) => boolean): number {
    const reached = this.router.route(message, undefined, shared, only);
    this.routed += reached;
    return reached;
  }

  /** A retained message set (undefined: cleared) on another node of the cluster. */
  applyRemoteRetained(topic: string, message: Message | undefined): void {
    if (message === undefined) {
      if (this.retained.delete(topic)) this.durability?.retainedDeleted(topic);
    } else if (this.retained.apply(message)) {
      this.durability?.retained(message);
    } else {
      this.counters.retainedRefused++;
    }
  }

  messageReceived(message: Message, client: ClientInfo): void {
    this.counters.received[message.qos]++;
    if (this.listenerCount('messagePublished') > 0) this.emit('messagePublished', message, client);
  }

  clientRefused(client: ClientInfo, reason: string, reasonCode: number | undefined): void {
    this.emit('clientRefused', client, reason, reasonCode);
  }

  clientStalled(client: ClientInfo, unreadBytes: number): void {
    this.emit('clientStalled', client, unreadBytes);
  }

  clientDropping(client: ClientInfo, reason: 'queueFull' | 'memoryLimit'): void {
    this.emit('clientDropping', client, reason);
  }

  subscribe(session: Session, subscription: Subscription): boolean {
    const existed = this.router.add(session, subscription);
    this.durability?.subscribed(session, subscription);
    this.cluster?.sessionChanged(session.clientId);
    if (session.sink !== undefined && this.listenerCount('subscribed') > 0) {
      this.emit('subscribed', (session.sink as SessionOwner).client, subscription.filter, subscription.qos);
    }
    return existed;
  }

  subscriptionsShared(): Promise<void> | undefined {
    return this.cluster?.routesShared();
  }

  unsubscribe(session: Session, filter: string): boolean {
    const existed = this.router.remove(session, filter);
    // [MQTT-3.10.4-2] nothing more is sent for it, retained messages still owed included
    session.forgetRetained(filter);
    if (existed) {
      this.durability?.unsubscribed(session, filter);
      this.cluster?.sessionChanged(session.clientId);
    }
    if (existed && session.sink !== undefined && this.listenerCount('unsubscribed') > 0) {
      this.emit('unsubscribed', (session.sink as SessionOwner).client, filter);
    }
    return existed;
  }

  retainedHasRoom(topic: string): boolean {
    return this.retained.hasRoomFor(topic);
  }

  checkMemory(): boolean {
    this.memoryCheck?.();
    return this.memoryFull;
  }

  get retainedCount(): number {
    return this.retained.size;
  }

  retainedMessages(topicFilter: string, reader: Session): Message[] {
    const found = this.retained.match(topicFilter, this);
    // a filter the client may read can still cover topics it may not (a deny rule inside it)
    const acl = this.acl;
    return acl === undefined ? found : found.filter((m) => acl.canRead(reader, m.topic));
  }

  /** A delivery made elsewhere (another node had the session), given to the session as if routed here. */
  deliver(session: Session, d: Delivery): void {
    this.deliverTo(session, d.message, d.qos, d.retain, d.subscriptionIds, d.share);
  }

  private deliverTo(session: Session, message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, share: ShareRef | undefined): void {
    try {
      this.deliverOne(session, message, qos, retain, ids, share);
    } catch (err) {
      this.deliveryFailed(session, err);
    }
  }

  /**
   * A fault of the broker's own delivering to one session (its store refused the message, say) is
   * that session's alone: the message's other subscribers still get it and its publisher is
   * answered as usual. The session's client is let go once the routing is over, as its will
   * would otherwise route inside it.
   */
  private deliveryFailed(session: Session, err: unknown): void {
    const sink = session.sink;
    if (sink === undefined) {
      this.reportFault(err, `delivering a message to the offline session ${session.clientId}`);
      return;
    }
    queueMicrotask(() => {
      try {
        sink.handleInternalError(err);
      } catch (again) {
        this.reportFault(again, `closing ${session.clientId} after a fault`);
      }
    });
  }

  private deliverOne(session: Session, message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, share: ShareRef | undefined): void {
    // read access is checked per delivery, so that a reloaded ACL applies to existing subscriptions
    if (this.acl !== undefined && !this.acl.canRead(session, message.topic)) return;
    const sink = session.sink;
    if (sink !== undefined) {
      sink.deliver(message, qos, retain, ids, share);
      return;
    }
    // Offline persistent session: QoS 1 and 2 are kept for it ([MQTT-3.1.2-5]); QoS 0 only when
    // configured, which the specification allows and EMQX and HiveMQ do by default.
    if (qos === 0 && this.settings.offlineQos0 === 'drop') return;
    if (this.memoryFull) {
      session.dropped++;
      this.counters.dropped.memoryLimit++;
      return;
    }
    // it may wait there for days: its bytes move out of the read they came in (once, for every session)
    ownBytesInPlace(message);
    session.enqueue(message, qos, retain, ids, share, this.settings, this, this.counters.dropped);
  }

  publishWill(client: ClientInfo, will: Will): boolean | Promise<boolean> {
    const properties = willMessageProperties(will.properties);
    const message = createMessage(will.topic, will.payload, will.qos, will.retain, properties, this, client.id);
    const verdict = this.authorizePublish(client, message);
    if (verdict === true) void this.publish(message)?.catch(noop);
    if (typeof verdict === 'boolean') return verdict;
    return verdict.then(
      (ok) => {
        if (ok) void this.publish(message)?.catch(noop);
        return ok;
      },
      () => false,
    ).catch((err: unknown) => {
      this.reportFault(err, `publishing the will of ${client.id}`);
      return false;
    });
  }
}

/** The will's properties minus the delay, which is not forwarded with the message. */
function willMessageProperties(props: Properties | undefined): Properties | undefined {
  if (props === undefined) return undefined;
  const { willDelayInterval: _d, ...rest } = props;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

function noop(): void {}

/** A hook that throws or rejects refuses; anything but `true` refuses. */
function guard(call: () => MaybePromise<boolean>): MaybePromise<boolean> {
  try {
    const r = call();
    return isPromise(r) ? settle(r) : r === true;
  } catch {
    return false;
  }
}
