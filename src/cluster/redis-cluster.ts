import { Buffer } from 'node:buffer';
import { deferred, type Deferred } from '../collections/deferred.js';
import type { RedisClient } from './redis-target.js';
import type { Logger } from 'pino';
import type { ClusterHost, ClusterPort } from '../broker/cluster-port.js';
import type { ClusterCounts } from '../broker/stats.js';
import type { Message } from '../session/message.js';
import type { Session } from '../session/session.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import { Forwarder } from './forwarder.js';
import { idAtMost, INBOX_APPEND, INBOX_TRIM, InboxReader, inboxKeys, type InboxScripts } from './inbox.js';
import { HEARTBEAT, Membership, type MembershipScripts } from './membership.js';
import { isLocalTopic, RetainedSync } from './retained-sync.js';
import { RouteIndex, type RoutePlan } from './route-index.js';
import { ReplicaWait } from './replica-wait.js';
import { RouteSync } from './route-sync.js';
import { ClientOwnership, RELEASE, type OwnershipNode, type OwnershipScripts } from './client-ownership.js';
import { SessionMoves, type MoveNode } from './session-moves.js';
import { settlesWithin } from './settles-within.js';
import { describeCluster, describeOrphans, type ClusterNodeView, type OrphanView } from './cluster-view.js';
import { isRedisCluster, publishOn } from './redis-target.js';
import { RedisConnections } from './redis-connections.js';
import { packFrame, unpackFrames, unpackMessage, type NodeFrame } from './wire.js';
import { TAKE_ORPHAN_WILLS } from './orphan-wills.js';
import { CLAIM_ORPHANED, NODE_GONE, RECLAIM, REDIS_NOW, TAKE_ORPHAN_SESSIONS, WITHDRAW_SESSIONS, type OrphanScripts } from './orphans.js';
import { Legacy, RETURN_WAIT_MS, type LegacyNode } from './legacy.js';
import { GoneInboxes } from './gone-inboxes.js';
import { senderOf } from './arrival-log.js';
import { RENEW_LOCK, SharedRedispatch, type LockScripts } from './shared-redispatch.js';
import type { Will } from '../codec/packets.js';
import type { ClientInfo } from '../hooks/types.js';

export interface ClusterOptions {
  /** the URL of the Redis the nodes share: one server, a Sentinel-watched master or a Redis Cluster (see redis-target.ts) */
  redis: string;
  /** this node's name in the cluster; stable across restarts, so that sessions kept on disk stay its own */
  nodeId: string;
  /** prefix of every Redis key and channel, so that clusters can share a Redis server */
  prefix: string;
  /** a node not heard from for this long is taken for gone (its routes are dropped) */
  nodeTimeoutMs?: number;
  /** how long a connecting client waits for another node to hand its session over */
  handoverTimeoutMs?: number;
  /** bytes waiting in a node's inbox past which publishers to it are slowed (QoS 1/2) or dropped (QoS 0) */
  maxBacklog?: number;
  /** Redis replicas that must have a QoS 1/2 message for another node before its publisher is acknowledged (0: the master alone) */
  waitReplicas?: number;
}

const HEARTBEAT_MS = 1000;
/** a heartbeat not answered in this long does not hold back the next */
const HEARTBEAT_HUNG_MS = 2 * HEARTBEAT_MS;
/** how much longer than the sessions of a node that stopped wait for it its routes are kept */
const ROUTE_LINGER_MARGIN_MS = 5000;
/** how long a node restarted without a store keeps what it reads of its inbox in Redis */
const EARLIER_RUN_TRIM_HOLD_MS = 2000;
/** how long at most its routes are kept while its sessions are still being taken up (what they get meanwhile waits in Redis) */
const MAX_ROUTE_LINGER_MS = 60_000;
/** how long the inbox skips, for sessions settled with other nodes at a readmission, what was sent before */
const SETTLED_AWAY_KEEP_MS = 60_000;
/** how long a stopping node waits for Redis to take its leave */
const STOP_WAIT_MS = 3000;
/**
 * Bytes of one publisher's messages kept back behind a commit (see routeKeptBack) past which its
 * QoS 0 messages are not sent to the other nodes. Its QoS 1/2 messages are bounded already: their
 * acknowledgements wait for their forwards, and a client has only so many unacknowledged. Its
 * retained changes count, but are never dropped past it: they are state, and a node that missed
 * one would keep another message for good. They are bounded otherwise, one kept back a topic (the
 * publisher's latest, see keepRetained).
 */
const MAX_KEPT_BYTES = 1024 * 1024;

/**
 * The prefix of the cluster's keys. In a Redis Cluster it is a hash tag (`{midge}`), so that all
 * of them are in one slot: the transactions and scripts that touch several keys need that.
 */
function keyPrefix(options: ClusterOptions): string {
  return isRedisCluster(options.redis) && !options.prefix.includes('{') ? `{${options.prefix}}` : options.prefix;
}

interface Scripts extends OwnershipScripts, InboxScripts, MembershipScripts, OrphanScripts, LockScripts {}

/**
 * This broker as a node of a cluster whose shared state lives in Redis: which node has
 * subscribers for which filters (each node keeps its own set, and announces changes), retained
 * messages (a hash, with every change broadcast), and which node holds each client id
 * (client-ownership.ts). Messages travel between nodes through each node's inbox stream
 * (inbox.ts), each to the nodes with a matching subscriber only; requests about sessions over
 * pub/sub.
 */
export class RedisCluster implements ClusterPort, OwnershipNode, MoveNode, LegacyNode {
  readonly nodeId: string;
  readonly counters = { forwarded: 0, received: 0, forwardFailed: 0, forwardDropped: 0, backlogWaits: 0, replicaWaitsFailed: 0, sessionsHandedOver: 0, sessionsTakenOver: 0, orphanWillsSent: 0, sessionsResumedFromRedis: 0, orphanSessionsAdopted: 0, goneInboxMessages: 0, sharedRedispatched: 0 };
  readonly core: ClusterHost;
  readonly logger: Logger;
  readonly cmd: RedisClient;
  readonly scripts: Scripts;
  readonly handoverTimeoutMs: number;
  private readonly options: Required<ClusterOptions>;
  private readonly conns: RedisConnections;
  private readonly inbox: InboxReader;
  private readonly ownership: ClientOwnership;
  private readonly moves: SessionMoves;
  private readonly index: RouteIndex;
  private readonly plan: RoutePlan = { nodes: new Map(), localGroups: new Set() };
  private readonly members: Membership;
  private readonly routes: RouteSync;
  /** events that arrived while the state they change was being read */
  private buffered: Array<[string, Buffer]> | undefined = [];
  /**
   * Sessions settled with other nodes after this node was readmitted, with when (this node's
   * clock): what waited in this node's inbox for them until then was given them there, and comes
   * back with them (or stays there), so it is not given them here again. Kept a while.
   */
  private readonly settledAway = new Map<string, number>();
  /** when each of settledAway is forgotten */
  private readonly settledUntil = new Map<string, number>();
  private settledTimer: NodeJS.Timeout | undefined;
  private started = false;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly forwarder: Forwarder;
  /** set when acknowledgements wait for Redis replicas (clusterWaitReplicas) */
  private readonly replicaWait: ReplicaWait | undefined;
  /** messages routed to other nodes so far: each one's number */
  private forwardedCount = 0;
  /** this run of the node: its numbers start again at each run */
  private readonly run = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`;
  private readonly retained: RetainedSync;
  /** what this node leaves in Redis for the others should it go, and what gone nodes left */
  private readonly legacy: Legacy;
  /** the inboxes of gone nodes, read for the sessions taken from them */
  private readonly goneInboxes: GoneInboxes;
  /** the inboxes of gone nodes, read for the shared-subscription messages waiting there */
  private readonly sharedRedispatch: SharedRedispatch;
  /**
   * the last entry of this node's inbox whose shared-subscription messages another node
   * redispatched while this one was taken for gone: they are not given to the groups here again
   */
  private sharedDoneThrough: string | undefined;
  private readonly redispatchPlan: RoutePlan = { nodes: new Map(), localGroups: new Set() };
  private readonly handOverPlan: RoutePlan = { nodes: new Map(), localGroups: new Set() };
  readonly prefix: string;
  private readonly selectLocal = (topicFilter: string, group: string): boolean => this.plan.localGroups.has(`$share/${group}/${topicFilter}`);
  /** by publisher (client id), its forwards and retained changes kept back behind a QoS 2 message of its whose commit is under way (see routeKeptBack) */
  private readonly kept = new Map<string, KeptBack>();

  constructor(core: ClusterHost, options: ClusterOptions, logger: Logger) {
    this.core = core;
    this.logger = logger;
    this.options = { nodeTimeoutMs: 5000, handoverTimeoutMs: 3000, maxBacklog: 64 * 1024 * 1024, waitReplicas: 0, ...options, prefix: keyPrefix(options) };
    this.nodeId = options.nodeId;
    this.handoverTimeoutMs = this.options.handoverTimeoutMs;
    const prefix = this.options.prefix;
    this.index = new RouteIndex(options.nodeId);
    this.conns = new RedisConnections(options.redis, logger);
    this.cmd = this.conns.cmd;
    this.cmd.defineCommand('midgeHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT });
    this.cmd.defineCommand('midgeInboxAppend', { numberOfKeys: 2, lua: INBOX_APPEND });
    this.cmd.defineCommand('midgeInboxTrim', { numberOfKeys: 2, lua: INBOX_TRIM });
    this.cmd.defineCommand('midgeRelease', { numberOfKeys: 1, lua: RELEASE });
    this.cmd.defineCommand('midgeRenewLock', { numberOfKeys: 1, lua: RENEW_LOCK });
    this.cmd.defineCommand('midgeNodeGone', { numberOfKeys: 1, lua: NODE_GONE });
    this.cmd.defineCommand('midgeNow', { numberOfKeys: 1, lua: REDIS_NOW });
    this.cmd.defineCommand('midgeReclaim', { numberOfKeys: 1, lua: RECLAIM });
    this.cmd.defineCommand('midgeTakeOrphanWills', { numberOfKeys: 1, lua: TAKE_ORPHAN_WILLS });
    this.cmd.defineCommand('midgeClaimOrphaned', { numberOfKeys: 1, lua: CLAIM_ORPHANED });
    this.cmd.defineCommand('midgeWithdrawSessions', { numberOfKeys: 1, lua: WITHDRAW_SESSIONS });
    this.cmd.defineCommand('midgeTakeOrphanSessions', { numberOfKeys: 1, lua: TAKE_ORPHAN_SESSIONS });
    this.scripts = this.cmd as unknown as Scripts;
    this.moves = new SessionMoves(this);
    this.ownership = new ClientOwnership(this, this.moves);
    this.retained = new RetainedSync(core, this.cmd, (name) => this.key(name), logger);
    this.prefix = prefix;
    this.legacy = new Legacy(this, HEARTBEAT_MS);
    const isLive = (node: string): boolean => this.members.isLive(node);
    this.routes = new RouteSync(this.cmd, this.index, prefix, logger, isLive, (previous, clientId) => this.onMove(previous, clientId));
    // kept until the sessions of a node that stopped have been taken up, and a little longer
    const membership = { nodeId: this.nodeId, prefix, nodeTimeoutMs: this.options.nodeTimeoutMs, routeLingerMs: RETURN_WAIT_MS + ROUTE_LINGER_MARGIN_MS, maxRouteLingerMs: MAX_ROUTE_LINGER_MS, now: () => core.now() };
    this.members = new Membership(this.cmd, this.scripts, membership, this.index, {
      joined: (node) => this.routes.load(node),
      // declared gone while it was unreachable: its routes were dropped with it
      readmitted: () =>
        this.started
          ? Promise.all([this.routes.publishOwn([...core.router.filters()]), this.legacy.rewrite(), this.readSharedDone()])
              .then(() => this.legacy.reconcile())
              .then((settled) => this.noteSettledAway(settled))
          : Promise.resolve(),
      // what is taken up before this node has joined would reach its own subscribers only
      orphans: (members) => this.legacy.listed(members, this.started && !this.stopping),
      gone: (node) => this.sharedRedispatch.gone(node),
    });
    const replicaWait = this.options.waitReplicas > 0 ? new ReplicaWait(this.cmd, this.options.waitReplicas) : undefined;
    this.replicaWait = replicaWait;
    this.forwarder = new Forwarder(
      {
        append: (node, batch) => this.scripts.midgeInboxAppend(...inboxKeys(prefix, node), batch, this.nodeId, this.run),
        backlog: (node) => this.cmd.get(inboxKeys(prefix, node)[1]).then((b) => Number(b ?? 0)),
        isLive,
        ...(replicaWait === undefined ? {} : { replicated: () => replicaWait.replicated() }),
      },
      this.counters,
      this.options.maxBacklog,
    );
    // what the readers of gone nodes' inboxes need of this node
    const reader = { nodeId: this.nodeId, prefix, core, cmd: this.cmd, logger, counters: this.counters, isLive };
    this.sharedRedispatch = new SharedRedispatch({ ...reader, scripts: this.scripts, redispatch: (message, groups) => this.redispatch(message, groups), sent: () => this.forwarder.sent() });
    this.goneInboxes = new GoneInboxes({
      ...reader,
      routesTo: (node) => this.members.routesTo(node),
      routesShared: () => this.routes.shared(),
      ownHandled: () => this.inbox.handled,
      noteRoute: (message, from, n, run) => {
        if (this.moves.active) this.moves.noteRoute(message, from, n, run);
      },
    });
    this.inbox = new InboxReader(
      this.conns.reader,
      this.scripts,
      inboxKeys(prefix, this.nodeId),
      (batch, id, from, run) => this.onInboxEntry(batch, id, from, run),
      // a node that may have been found dead (stalled, or cut off from Redis) and had its sessions
      // taken up elsewhere handles what waited here once it knows which (settledAway)
      () => (this.members.maybeDropped ? this.members.nextBeat() : undefined),
      logger,
    );
  }

  /** what this node knows of the cluster now */
  get stats(): ClusterCounts {
    return { nodeId: this.nodeId, nodes: Math.max(1, this.members.size), remoteRoutes: this.index.remoteRoutes, ...this.counters, sessionsLeaving: this.moves.leaving };
  }

  key(name: string): string {
    return `${this.options.prefix}:${name}`;
  }

  /** The cluster as Redis holds it now (the admin API's view). */
  describe(): Promise<ClusterNodeView[]> {
    return describeCluster(this.cmd, this.options.prefix, this.nodeId);
  }

  /** What gone nodes left in Redis and no node has sent or taken up yet (the admin API's view). */
  describeOrphans(): Promise<OrphanView[]> {
    return describeOrphans(this.cmd, this.options.prefix);
  }

  /** The node holding a client id, if any does. */
  ownerOf(clientId: string): Promise<string | null> {
    return this.cmd.get(this.key(`client:${clientId}`));
  }

  // ---- start and stop -------------------------------------------------------------------------

  /** Joins the cluster: reads its routes and retained messages, and settles which of the sessions kept here are still this node's. */
  async start(): Promise<void> {
    await this.conns.open();
    await this.replicaWait?.start(this.key('nodes'), this.logger);
    const channels = [this.key(`node:${this.nodeId}`), this.key('routes'), this.key('retained'), this.key('nodes')];
    await this.conns.listen(channels, (channel, message) => this.onMessage(channel, message));
    // the sessions brought back from the store are this node's again, unless their client went elsewhere
    await this.ownership.settle();
    const fromStore = this.core.sessions.values().next().done !== true;
    // what this node answered for before it stopped or died is the cluster's now: wills due, sessions for their clients to take up
    await this.legacy.leaveBehind();
    // ... but the sessions of its earlier runs that only Redis kept are this node's to take back,
    // before its routes are announced (they include theirs) and its inbox is read (it holds what was sent for them)
    await this.legacy.takeBackOwn();
    this.core.router.observe(this.routes);
    await this.sync();
    await this.readSharedDone();
    this.started = true;
    this.conns.report(true);
    this.routes.joined = true;
    this.core.cluster = this;
    this.legacy.joined();
    // what was sent here before a restart is read first, then what comes; a node that brought no
    // sessions back from a store keeps it in Redis a moment, for the nodes that took sessions of
    // its earlier run while it was down: they see it back and read once more (a held trim also
    // holds the byte count its senders go by, and is handled again should this node die meanwhile)
    this.inbox.start(fromStore ? 0 : EARLIER_RUN_TRIM_HOLD_MS);
    // one at a time, unless one has hung (a command a Redis Cluster client never settles): this
    // node would be found dead for want of the next
    let beatingSince = 0;
    this.timer = setInterval(() => {
      const now = Date.now();
      if (beatingSince !== 0 && now - beatingSince < HEARTBEAT_HUNG_MS) return;
      beatingSince = now;
      void this.members.heartbeat().finally(() => {
        if (beatingSince === now) beatingSince = 0;
      });
    }, HEARTBEAT_MS);
    this.timer.unref();
    // after a Redis outage, anything may have changed: read it all again
    this.conns.sub.on('ready', () => {
      if (!this.stopping) void this.sync(true).catch((err: Error) => this.logger.warn({ err: err.message }, 'cluster: resync failed'));
    });
    this.logger.info({ nodeId: this.nodeId, nodes: this.members.size }, 'joined the cluster');
  }

  /**
   * Registers this node and its routes, then reads everyone's routes and the retained messages;
   * events meanwhile wait. After an outage (`afterOutage`), this node's client ids are written
   * again too (at a start, settle() and the sessions taken back have written them).
   */
  private async sync(afterOutage = false): Promise<void> {
    this.buffered ??= [];
    // back after an outage and found dead meanwhile: the readmission (sessions the others took up
    // settled) is done first, whichever heartbeat found it
    await this.members.heartbeat(true);
    await this.members.readmitted();
    await this.legacy.rewrite();
    await this.routes.publishOwn([...this.core.router.filters()]);
    const nodes = this.members.others();
    const sets = await this.routes.read(nodes);
    this.members.forgetMissing();
    nodes.forEach((n, i) => this.index.replaceNode(n, sets[i] as string[]));
    await this.retained.load();
    const events = this.buffered;
    this.buffered = undefined;
    for (const [channel, message] of events) this.onMessage(channel, message);
    // Redis may have restarted empty: without its client ids, a client moving to another node
    // would not find its session, and one connecting there would not close its connection here
    if (afterOutage) this.noteSettledAway(await this.ownership.restore());
  }

  /** Leaves the cluster: other nodes drop this node's routes at once instead of after the timeout. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.conns.report(false);
    this.routes.leaving = true;
    clearInterval(this.timer);
    clearInterval(this.settledTimer);
    // wills and sessions already taken out of Redis are sent and kept while this node still routes
    // to the others (and writes what it keeps to Redis)
    await settlesWithin(this.legacy.stopTaking(), STOP_WAIT_MS);
    this.goneInboxes.stop();
    this.sharedRedispatch.stop();
    // messages kept back behind a commit go once it is over (the store is closed next, so it soon
    // is), and anyway then: left here, they would never reach the other nodes
    if (this.kept.size > 0) await settlesWithin(Promise.allSettled([...this.kept.values()].map((k) => k.last)), STOP_WAIT_MS);
    this.forwardAllKept();
    this.core.cluster = undefined;
    this.forwarder.flush();
    this.forwarder.stop();
    this.ownership.flush();
    this.moves.stop();
    const leaving = (async () => {
      await this.inbox.stop();
      if (this.started) {
        // the wills of the clients this node closed, and of those waiting out a delay, go to the
        // others, and its sessions to whichever node their clients connect to
        await this.members.leave(await this.legacy.leaveBehind());
      }
      await this.conns.quit();
    })();
    // a Redis that does not answer (gone, or a Redis Cluster client stuck after a failover) must
    // not keep the node from stopping: the others then drop it after the node timeout instead
    if ((await settlesWithin(leaving, STOP_WAIT_MS)) !== 'done') {
      this.logger.warn('cluster: left without telling Redis (it did not answer); the other nodes drop this one after the node timeout');
      this.conns.drop();
    }
  }

  // ---- events from Redis ----------------------------------------------------------------------

  private onMessage(channel: string, message: Buffer): void {
    try {
      if (channel === this.key(`node:${this.nodeId}`)) {
        for (const frame of unpackFrames(message)) this.onFrame(frame);
        return;
      }
      if (this.buffered !== undefined) {
        this.buffered.push([channel, message]);
        return;
      }
      if (channel === this.key('routes')) return this.routes.changed(message.toString());
      if (channel === this.key('retained')) return this.retained.received(message);
      if (channel === this.key('nodes')) return this.members.nodeEvent(message.toString());
    } catch (err) {
      this.logger.warn({ channel, err: (err as Error).message }, 'cluster: unreadable message ignored');
    }
  }

  /**
   * The sessions a message from this node's inbox reaches: not those that had it from a gone
   * node's inbox (`given`), nor those settled with other nodes after it was sent (settledAway).
   */
  private skipping(given: ReadonlySet<Session> | undefined, appendedAt: number): (s: Session) => boolean {
    const away = this.settledAway;
    return (s) => given?.has(s) !== true && appendedAt > (away.get(s.clientId) ?? -1);
  }

  /** Adds to the sessions settled away (a late answer adds one); each is kept SETTLED_AWAY_KEEP_MS. */
  private noteSettledAway(settled: ReadonlyMap<string, number>): void {
    if (settled.size === 0) return;
    const until = this.core.now() + SETTLED_AWAY_KEEP_MS;
    for (const [id, at] of settled) this.settledAway.set(id, at);
    for (const id of settled.keys()) this.settledUntil.set(id, until);
    this.settledTimer ??= setInterval(() => {
      const now = this.core.now();
      for (const [id, end] of this.settledUntil) {
        if (end > now) continue;
        this.settledUntil.delete(id);
        this.settledAway.delete(id);
      }
      if (this.settledAway.size === 0) {
        clearInterval(this.settledTimer);
        this.settledTimer = undefined;
      }
    }, 1000);
    this.settledTimer.unref();
  }

  /** How far another node redispatched the shared-subscription messages of this node's inbox (at a start or readmission). */
  private async readSharedDone(): Promise<void> {
    this.sharedDoneThrough = await this.sharedRedispatch.doneThrough();
  }

  /**
   * Messages other nodes routed here. An entry read long after it was written (this node was
   * restarting) has aged meanwhile: its messages' expiry counts from when Redis took it.
   */
  private onInboxEntry(batch: Buffer, id: string, from: string, run: string): void {
    const appendedAt = parseInt(id, 10);
    const now = this.core.now();
    const sent = Math.min(now, appendedAt);
    // what another node redispatched to the shared groups while this one was taken for gone
    const sharedDone = this.sharedDoneThrough !== undefined && idAtMost(id, this.sharedDoneThrough);
    for (const frame of unpackFrames(batch)) {
      switch (frame.kind) {
        case 'message': {
          this.counters.received++;
          const groups = frame.groups;
          const select = groups === null || sharedDone ? NO_GROUPS : (topicFilter: string, group: string) => groups.includes(`$share/${group}/${topicFilter}`);
          const message = unpackMessage(frame.body, sent);
          if (this.moves.active) this.moves.noteRoute(message, from, frame.n, run);
          if (this.moves.adopting) this.moves.taken(senderOf(from, run), frame.n);
          // sessions taken from a gone node may have had it from its inbox already
          const given = this.goneInboxes.following ? this.goneInboxes.arrived(from, run, frame.n) : undefined;
          // no filter, and no closure, in the common case; a redispatched message is for its groups alone
          let only = frame.sharedOnly === true ? NO_SESSIONS : given === undefined && this.settledAway.size === 0 ? undefined : this.skipping(given, appendedAt);
          // sessions taken from a gone node get it once what it holds for them was read
          if (this.goneInboxes.holding && only !== NO_SESSIONS) only = this.goneInboxes.holdBack(message, from, run, frame.n, only);
          try {
            this.core.routeRemote(message, select, only);
          } catch (err) {
            // the messages after it in the same entry still go to their subscribers
            this.core.reportFault(err, `routing a message from node ${from}`);
          }
          break;
        }
        case 'adopted':
          this.moves.adopted(frame.clientId);
          break;
        case 'passed':
          this.moves.passed(frame.from, frame.clientId);
          break;
        case 'release':
          this.moves.released(frame.from, frame.clientId);
          break;
        default:
          // the other frames come over pub/sub (onFrame)
          break;
      }
    }
  }

  private onFrame(frame: NodeFrame): void {
    switch (frame.kind) {
      case 'message':
        // messages come through the inbox; a frame of one here is from another version
        return;
      case 'takeover':
        this.ownership.handOver(frame.requestId, frame.from, frame.clientId, frame.cleanStart);
        // the session is the other node's now
        this.legacy.sessions.mark(frame.clientId);
        return;
      case 'session':
        this.ownership.answered(frame.requestId, frame.session);
        return;
      case 'adopted':
      case 'passed':
      case 'release':
        // come through the inbox, in order with the messages
        return;
      case 'tail': {
        // from a node given up a session its client took here: it goes in once the session is here
        const claim = this.moves.expectsTail(frame.clientId) ? undefined : this.ownership.claimOf(frame.clientId);
        if (claim === undefined) this.moves.tail(frame.clientId, frame.queue);
        else void claim.then(() => this.moves.tail(frame.clientId, frame.queue));
        return;
      }
    }
  }

  // ---- ClusterPort ----------------------------------------------------------------------------

  route(message: Message, memo: MatchMemo | undefined, stored?: () => Promise<void> | undefined): number {
    // the broker's own $SYS topics describe this node alone
    if (isLocalTopic(message.topic)) return this.core.router.route(message, memo);
    const plan = this.plan;
    this.index.plan(message.topic, plan);
    const publisher = message.senderId;
    if (plan.nodes.size > 0 && publisher !== undefined && (stored !== undefined || (this.kept.size > 0 && this.kept.has(publisher)))) {
      return this.routeKeptBack(message, memo, publisher, stored);
    }
    // numbered when forwarded, so that a node it reached and a session moving there can tell it apart
    const n = plan.nodes.size > 0 ? ++this.forwardedCount : 0;
    if (this.moves.active) this.moves.noteRoute(message, this.nodeId, n, this.run);
    if (n > 0 && this.goneInboxes.following) this.goneInboxes.arrived(this.nodeId, this.run, n);
    // sessions taken from a gone node, whose inbox had this publisher's earlier messages, get it after those
    const only = n > 0 && this.goneInboxes.holding ? this.goneInboxes.holdBack(message, this.nodeId, this.run, n, undefined) : undefined;
    const here = this.core.router.route(message, memo, plan.localGroups.size === 0 ? NO_GROUPS : this.selectLocal, only);
    if (only !== undefined) {
      // a QoS 1/2 publisher here is acknowledged once a session holding its message back has it:
      // held in memory alone, a crash of this node would lose it
      const held = this.goneInboxes.heldBy();
      if (held !== undefined && message.qos > 0) for (const p of held) this.forwarder.include(p);
    }
    if (n > 0) this.forwarder.send(message, plan, this.core.now(), n);
    return here;
  }

  /**
   * Exactly once across a crash, between nodes: a QoS 2 message of a persistent publisher reaches
   * this node's connected subscribers only once the commit that records it (and its packet id) is
   * over (publishHeld in protocol/handlers/publish.ts), and the other nodes' subscribers only then
   * too. Forwarded at once, a node killed before that commit comes back without the packet id: the
   * publisher, never sent PUBREC, sends the message again, it is taken as new and forwarded again,
   * and a subscriber elsewhere that had the first copy gets it twice. So the message is routed here
   * now (its deliveries go into that commit, their writes wait) and kept back from the other nodes
   * until `stored()` settles; its PUBREC waits for the forward as well (sent(publisher)).
   *
   * A commit that fails lets the forward go all the same, as it lets the writes here go: the packet
   * id is marked in memory, so this node takes the publisher's resend (after it is disconnected,
   * unacknowledged) for a duplicate and does not route it again; kept back, the message would
   * reach no other node at all.
   *
   * Order: the publisher's later messages to other nodes, whatever their QoS and topic, are kept
   * back behind it and leave after it, in the order published, even those whose own forward need
   * not wait; a subscriber on another node then sees a held QoS 2 message and the QoS 1 message
   * its publisher sent next in that order, as a subscriber here that matches both does (its
   * connection holds every later PUBLISH behind the held one). [MQTT-4.6.0-5] only orders a
   * publisher's messages of one topic and QoS, but a QoS 2 message reaches a QoS 1 subscription as
   * QoS 1, and which subscriptions another node has is not known here. A subscriber here that
   * matches only the later message has it at once; another node's, after the commit. Messages of
   * other publishers (QoS 0/1, a clean session's QoS 2) are not kept back: their forwards leave at
   * once, as before.
   *
   * Numbers (`n`, see route) are given as forwards leave, so that each node sees this node's
   * numbers grow (ArrivalLog). What that leaves inexact lasts one commit: a session taken from a
   * gone node meanwhile counts the message among those this node took since (GoneInboxes.arrived
   * is told at the forward), and a session handed over from here sends it on in a tail without its
   * origin (numbered later), for the node it went to to tell from its own copy.
   *
   * A retained message is the same (retainedChanged): shared before the commit, it would be the
   * retained message of the other nodes, served to their new subscribers, while its publisher, never
   * sent PUBREC, sends it again. Its change goes to Redis once the commit is over, in line with the
   * publisher's forwards (with its own forward, when it has one: one write, its bytes counted once).
   * A later retained message of the same publisher and topic replaces it where it waits
   * (keepRetained), and one of another publisher shared meanwhile is not overwritten by it
   * (RetainedSync.shareKept): every node ends on the message this node applied last.
   */
  private routeKeptBack(message: Message, memo: MatchMemo | undefined, publisher: string, stored: (() => Promise<void> | undefined) | undefined): number {
    const plan = this.plan;
    if (this.overKept(message, publisher)) {
      // a publisher flooding QoS 0 behind a commit that takes long: the rest is not sent to
      // the other nodes, as a congested subscriber's queue drops it here
      this.counters.forwardDropped += plan.nodes.size;
      return this.core.router.route(message, memo, plan.localGroups.size === 0 ? NO_GROUPS : this.selectLocal);
    }
    const nodes = new Map(plan.nodes);
    if (this.moves.active) this.moves.noteRoute(message, this.nodeId, 0, this.run);
    const here = this.core.router.route(message, memo, plan.localGroups.size === 0 ? NO_GROUPS : this.selectLocal);
    // the commit is asked for only now: the deliveries just routed here are in it
    this.keepBack(publisher, message, nodes, undefined, stored);
    return here;
  }

  /** Whether `message` is QoS 0 and would take what `publisher` has kept back past MAX_KEPT_BYTES. */
  private overKept(message: Message, publisher: string): boolean {
    if (message.qos !== 0) return false;
    const kept = this.kept.get(publisher);
    return kept !== undefined && kept.bytes + message.payload.length + message.topic.length > MAX_KEPT_BYTES;
  }

  /**
   * Puts a write of `publisher`'s behind those it has kept back: `message` forwarded to `nodes`,
   * or without them its retained change, number `change` (RetainedSync.madeHere). With `stored`
   * (called now), it waits for that commit too.
   */
  private keepBack(publisher: string, message: Message, nodes: Map<string, string[]> | undefined, change: number | undefined, stored: (() => Promise<void> | undefined) | undefined): void {
    const entry: KeptWrite = { message, size: message.payload.length + message.topic.length, nodes, change: undefined, waiting: false, sent: deferred() };
    let kept = this.kept.get(publisher);
    if (kept === undefined) {
      kept = { queue: [], bytes: 0, last: entry.sent.promise, retained: new Map() };
      this.kept.set(publisher, kept);
    }
    if (change !== undefined) {
      // whoever waits for the change it replaced, gone from the queue, waits for this one: no
      // promise is chained per change, however many of one topic come
      const replaced = this.keepRetained(kept, entry, change);
      if (replaced !== undefined) entry.sent = replaced;
    }
    kept.queue.push(entry);
    kept.bytes += entry.size;
    kept.last = entry.sent.promise;
    const disk = stored?.();
    if (disk !== undefined) {
      entry.waiting = true;
      const release = (): void => {
        entry.waiting = false;
        try {
          this.forwardKept(publisher);
        } catch (err) {
          // outside any client's handling: a fault here must not end the process
          this.logger.error({ err }, 'cluster: forwarding messages kept back for a commit failed');
        }
      };
      void disk.then(release, release);
    }
    this.forwardKept(publisher);
  }

  /**
   * `entry`'s retained change, number `change`, is kept back, and is the publisher's latest of its
   * topic: the one it kept back before, not shared now, is taken out of the queue unless it has a
   * forward or commit to wait for still (it then only loses its change, and its bytes if it has no
   * forward). Returns the Deferred of an entry taken out: its waiters wait for `entry` now.
   *
   * The change taken out was earlier, so the later one's place keeps the publisher's writes in
   * order; in its own place, it would be shared before what the publisher sent between the two.
   */
  private keepRetained(kept: KeptBack, entry: KeptWrite, change: number): Deferred | undefined {
    const topic = entry.message.topic;
    this.retained.keep(topic, change);
    entry.change = change;
    const before = kept.retained.get(topic);
    kept.retained.set(topic, entry);
    if (before === undefined) return undefined;
    before.change = undefined;
    this.retained.forget(topic);
    if (before.nodes !== undefined) return undefined;
    kept.bytes -= before.size;
    before.size = 0;
    if (before.waiting) return undefined;
    kept.queue.splice(kept.queue.lastIndexOf(before), 1);
    return before.sent;
  }

  /** Sends the publisher's writes kept back, in order, up to the first still waiting for its commit. */
  private forwardKept(publisher: string): void {
    const kept = this.kept.get(publisher);
    if (kept === undefined) return;
    const queue = kept.queue;
    let i = 0;
    try {
      for (; i < queue.length; i++) {
        const e = queue[i] as KeptWrite;
        if (e.waiting) break;
        kept.bytes -= e.size;
        try {
          this.sendKept(kept, e);
        } catch (err) {
          // its publisher, waiting for it, is not acknowledged; the entry is gone either way, so a
          // fault is not met again and what was sent before it is not sent twice
          e.sent.reject(err);
          throw err;
        }
        const sent = this.forwarder.sent();
        if (sent === undefined) e.sent.resolve();
        else sent.then(e.sent.resolve, e.sent.reject);
      }
    } finally {
      // up to and with an entry that threw
      const done = i < queue.length && !(queue[i] as KeptWrite).waiting ? i + 1 : i;
      if (done > 0) queue.splice(0, done);
      if (queue.length === 0) this.kept.delete(publisher);
    }
  }

  /** Forwards `e`'s message, then shares its retained change: the change even when the forward failed. */
  private sendKept(kept: KeptBack, e: KeptWrite): void {
    try {
      if (e.nodes !== undefined) {
        const n = ++this.forwardedCount;
        this.moves.numbered(e.message, n);
        if (this.goneInboxes.following) this.goneInboxes.arrived(this.nodeId, this.run, n);
        this.forwarder.send(e.message, { nodes: e.nodes, localGroups: NO_LOCAL_GROUPS }, this.core.now(), n);
      }
    } finally {
      const change = e.change;
      if (change !== undefined) {
        e.change = undefined;
        if (kept.retained.get(e.message.topic) === e) kept.retained.delete(e.message.topic);
        this.included(e.message, this.retained.shareKept(e.message, change));
      }
    }
  }

  /** Forwards everything kept back at once (the node is leaving): what is not sent now never is. */
  private forwardAllKept(): void {
    for (const kept of this.kept.values()) for (const e of kept.queue) e.waiting = false;
    for (const publisher of [...this.kept.keys()]) {
      try {
        this.forwardKept(publisher);
      } catch (err) {
        this.logger.error({ err }, 'cluster: forwarding messages kept back for a commit failed');
      }
    }
  }

  /**
   * A shared-subscription message a gone node had been sent, given to `groups` alone: a member
   * here, or a node with members. Says whether every group had one.
   */
  private redispatch(message: Message, groups: readonly string[]): boolean {
    const plan = this.redispatchPlan;
    const wanted = new Set(groups);
    this.index.plan(message.topic, plan, wanted);
    let reached = plan.localGroups.size;
    if (reached > 0) {
      const local = plan.localGroups;
      this.core.routeRemote(message, (topicFilter, group) => local.has(`$share/${group}/${topicFilter}`), NO_SESSIONS);
    }
    for (const list of plan.nodes.values()) reached += list.length;
    if (plan.nodes.size > 0) this.forwarder.send(message, plan, this.core.now(), ++this.forwardedCount, true);
    return reached === wanted.size;
  }

  handOverShared(message: Message, topicFilter: string, group: string): boolean {
    if (isLocalTopic(message.topic)) return false;
    const plan = this.handOverPlan;
    const wanted = new Set([`$share/${group}/${topicFilter}`]);
    // The group's turn may fall to this node, whose departing member is still listed in the route
    // table: the next turn is taken, until another node's, so that the message goes to one node.
    // The group has at most one entry per node.
    for (let tries = this.index.nodes.length; tries > 0; tries--) {
      this.index.plan(message.topic, plan, wanted);
      if (plan.nodes.size > 0) break;
      if (plan.localGroups.size === 0) return false;
    }
    if (plan.nodes.size === 0) return false;
    this.forwarder.send(message, plan, this.core.now(), ++this.forwardedCount, true);
    return true;
  }

  sent(publisher?: string): Promise<void> | undefined {
    const turn = this.forwarder.sent();
    const kept = publisher === undefined || this.kept.size === 0 ? undefined : this.kept.get(publisher)?.last;
    if (kept === undefined) return turn;
    return turn === undefined ? kept : Promise.all([turn, kept]).then(noop);
  }

  routesShared(): Promise<void> | undefined {
    return this.routes.shared();
  }

  forwardFrame(node: string, frame: Buffer): void {
    this.forwarder.sendFrame(node, frame);
  }

  sendFrame(node: string, frame: NodeFrame): void {
    publishOn(this.cmd, this.cmd, this.key(`node:${node}`), packFrame(frame)).catch((err: Error) => this.logger.warn({ err: err.message, node, frame: frame.kind }, 'cluster: frame not sent'));
  }

  announceMove(previous: string, clientId: string): void {
    this.routes.announceMove(previous, clientId);
  }

  others(): string[] {
    return this.members.others();
  }

  /**
   * A session moved from `previous` to another node, whose routes this node now knows: it tells
   * `previous`, behind every message it sent there before (through the inbox, in order), so that
   * `previous` knows it has all of them to send on. `previous` itself has them at once.
   */
  private onMove(previous: string, clientId: string): void {
    if (previous === this.nodeId) this.moves.passed(this.nodeId, clientId);
    else if (this.members.isLive(previous)) this.forwarder.sendFrame(previous, packFrame({ kind: 'passed', from: this.nodeId, clientId }));
  }

  retainedChanged(message: Message, stored?: () => Promise<void> | undefined): void {
    // numbered first: a change of the topic kept back before it is not shared over it
    const change = this.retained.madeHere(message.topic);
    const publisher = message.senderId;
    // kept back as its forward is (see routeKeptBack), and behind the publisher's writes kept
    // back, past MAX_KEPT_BYTES too
    if (publisher !== undefined && (stored !== undefined || (this.kept.size > 0 && this.kept.has(publisher)))) {
      const kept = this.kept.get(publisher);
      const forward = kept?.queue[kept.queue.length - 1];
      if (kept !== undefined && forward !== undefined && forward.message === message) {
        // its forward was kept back just now (route), waiting for the commit that holds this
        // change too: it goes with it, its bytes counted once
        const replaced = this.keepRetained(kept, forward, change);
        if (replaced !== undefined) forward.sent.promise.then(replaced.resolve, replaced.reject);
      } else this.keepBack(publisher, message, undefined, change, stored);
      return;
    }
    this.included(message, this.retained.changed(message));
  }

  /**
   * A retained change's `write` to Redis: its QoS 1/2 publisher is acknowledged once Redis (and the
   * replicas waited for) has it; a node that took it from Redis as it came back would otherwise
   * replace it with what Redis held.
   */
  private included(message: Message, write: Promise<unknown> | undefined): void {
    if (write !== undefined && message.qos > 0) this.forwarder.include(write);
  }

  retainedDeleted(topic: string): void {
    // a change made here, later than those kept back
    this.retained.madeHere(topic);
    this.retained.deleted(topic);
  }

  claim(clientId: string, cleanStart: boolean): Promise<void> {
    return this.ownership.claim(clientId, cleanStart);
  }

  leaving(clientId: string): boolean {
    return this.moves.isLeaving(clientId);
  }

  reconcileSessions(): Promise<Map<string, number>> {
    return this.ownership.reconcile();
  }

  sessionSettled(clientId: string, at: number): void {
    this.noteSettledAway(new Map([[clientId, at]]));
  }

  sessionEnded(clientId: string): void {
    this.ownership.sessionEnded(clientId);
    this.legacy.sessions.mark(clientId);
  }

  sessionChanged(clientId: string): void {
    this.legacy.sessions.mark(clientId);
  }

  isLive(node: string): boolean {
    return this.members.isLive(node);
  }

  willArmed(owner: object, client: ClientInfo, will: Will, afterS: number): void {
    this.legacy.wills.armed(owner, client.id, client.username, will, afterS);
  }

  willDisarmed(owner: object, clientId: string): void {
    this.legacy.wills.disarmed(owner, clientId);
  }

  willPending(client: ClientInfo, will: Will, fireAt: number): void {
    this.legacy.wills.pending(client.id, client.username, will, fireAt);
  }

  willDone(clientId: string): void {
    this.legacy.wills.done(clientId);
  }

  orphanedWill(node: string, clientId: string, cleanStart: boolean, earlierRuns: boolean): Promise<void> {
    return this.legacy.orphanedWill(node, clientId, cleanStart, earlierRuns);
  }

  orphanedSession(node: string, clientId: string, cleanStart: boolean): Promise<void> {
    return this.legacy.orphanedSession(node, clientId, cleanStart);
  }

  gaveUp(clientId: string, holder: string): void {
    this.legacy.gaveUp(clientId, holder);
  }

  tookFrom(node: string, clientId: string): Promise<void> {
    const session = this.core.sessions.get(clientId);
    // taken back as this node starts: its inbox reader, not started yet, reads all that waits there
    if (session === undefined || (node === this.nodeId && !this.started)) return Promise.resolve();
    return this.goneInboxes.took(node, session);
  }
}

const NO_GROUPS = (): boolean => false;
const NO_SESSIONS = (): boolean => false;
const NO_LOCAL_GROUPS: Set<string> = new Set();

function noop(): void {}

/** A message forwarded, and/or its retained change shared, once it and what its publisher sent before it may leave. */
interface KeptWrite {
  readonly message: Message;
  /** its payload and topic, in bytes, once whether forwarded, retained or both; 0 once it has neither (a commit to wait for alone) */
  size: number;
  /** the nodes it goes to, with their shared groups, as planned when it was routed here; undefined when it is not forwarded */
  readonly nodes: Map<string, string[]> | undefined;
  /** the number of its retained change (RetainedSync.madeHere), to be shared; undefined when it has none, or a later one replaced it */
  change: number | undefined;
  /** its commit is under way */
  waiting: boolean;
  /** settles once it is with Redis, as sent() does; an entry's replacement takes it over (keepRetained) */
  sent: Deferred;
}

/** One publisher's writes kept back, in the order published, and when the last is with Redis. */
interface KeptBack {
  readonly queue: KeptWrite[];
  /** what the queue holds, in bytes */
  bytes: number;
  last: Promise<void>;
  /** by topic, the entry of the queue with the publisher's latest retained change of it */
  readonly retained: Map<string, KeptWrite>;
}
