import { Buffer } from 'node:buffer';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BrokerCore } from '../broker/broker-core.js';
import type { ClusterPort } from '../broker/cluster-port.js';
import type { RouteObserver } from '../broker/router.js';
import type { ClusterCounts } from '../broker/stats.js';
import type { Message } from '../session/message.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import { RouteIndex, type RoutePlan } from './route-index.js';
import { adopt, handOver } from './session-handover.js';
import {
  packBatch, packFrame, packMessage, packRetained, packStoredMessage, unpackFrames, unpackMessage, unpackRetained, unpackStoredMessage,
  type NodeFrame, type RetainedChange, type SessionTransfer,
} from './wire.js';

export interface ClusterOptions {
  /** redis:// or rediss:// URL of the Redis server the nodes share */
  redis: string;
  /** this node's name in the cluster; stable across restarts, so that sessions kept on disk stay its own */
  nodeId: string;
  /** prefix of every Redis key and channel, so that clusters can share a Redis server */
  prefix: string;
  /** a node not heard from for this long is taken for gone (its routes are dropped) */
  nodeTimeoutMs?: number;
  /** how long a connecting client waits for another node to hand its session over */
  handoverTimeoutMs?: number;
}


const HEARTBEAT_MS = 1000;
/** forwards waiting on Redis past this are dropped (counted), so a stalled Redis cannot exhaust memory */
const MAX_PENDING_FORWARDS = 100_000;

/** Registers this node, drops nodes not heard from in time (their routes with them), returns [was this node missing, live nodes]. */
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', ARGV[3] .. ':routes:' .. id)
  redis.call('PUBLISH', ARGV[3] .. ':nodes', 'down ' .. id)
end
return {added, redis.call('ZRANGE', KEYS[1], 0, -1)}`;
/** Takes a client id that no node holds; returns the holder. */
const CLAIM_IF_FREE = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`;
/** Lets go of a client id only if this node still holds it. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * This broker as a node of a cluster whose shared state lives in Redis: which node has
 * subscribers for which filters (each node keeps its own set, and announces changes), retained
 * messages (a hash, with every change broadcast), and which node holds each client id. Messages
 * travel between nodes over Redis pub/sub, each to the nodes with a matching subscriber only.
 */
export class RedisCluster implements ClusterPort, RouteObserver {
  readonly nodeId: string;
  readonly stats: ClusterCounts = { nodes: 1, forwarded: 0, received: 0, forwardFailed: 0, sessionsHandedOver: 0, sessionsTakenOver: 0 };
  private readonly core: BrokerCore;
  private readonly logger: Logger;
  private readonly options: Required<ClusterOptions>;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly index: RouteIndex;
  private readonly plan: RoutePlan = { nodes: new Map(), localGroups: new Set() };
  private readonly live = new Set<string>();
  /** events that arrived while the state they change was being read */
  private buffered: Array<[string, Buffer]> | undefined = [];
  private started = false;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private lastError = '';
  private pendingForwards = 0;
  /** messages routed to other nodes this turn, by node */
  private readonly outbox = new Map<string, Buffer[]>();
  private flushScheduled = false;
  /** whether the message routed last went to another node */
  private forwardedLast = false;
  /** settles once this turn's forwards are with Redis: QoS 1/2 publishers are acknowledged then */
  private turnSent: { promise: Promise<void>; resolve: () => void } | undefined;
  private nextRequest = 1;
  private readonly requests = new Map<number, (s: SessionTransfer | null) => void>();
  /** client ids being taken from other nodes: a session ending here meanwhile does not let go of them */
  private readonly claiming = new Map<string, number>();
  private releases: Set<string> | undefined;
  private readonly selectLocal = (topicFilter: string, group: string): boolean => this.plan.localGroups.has(`$share/${group}/${topicFilter}`);

  constructor(core: BrokerCore, options: ClusterOptions, logger: Logger) {
    this.core = core;
    this.logger = logger;
    this.options = { nodeTimeoutMs: 5000, handoverTimeoutMs: 3000, ...options };
    this.nodeId = options.nodeId;
    this.index = new RouteIndex(options.nodeId);
    const common = { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 2, retryStrategy: (n: number) => Math.min(n * 200, 2000) };
    this.cmd = new Redis(options.redis, { ...common, enableAutoPipelining: true });
    this.sub = new Redis(options.redis, common);
    this.cmd.defineCommand('midgeHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT });
    this.cmd.defineCommand('midgeClaimIfFree', { numberOfKeys: 1, lua: CLAIM_IF_FREE });
    this.cmd.defineCommand('midgeRelease', { numberOfKeys: 1, lua: RELEASE });
    for (const conn of [this.cmd, this.sub]) {
      conn.on('error', (err: Error) => {
        this.lastError = err.message;
        // at start the error is thrown; once joined, each one is worth a line
        if (this.started && !this.stopping) this.logger.warn({ err: err.message }, 'cluster: Redis connection error');
      });
    }
  }

  /** routes (node, filter) of other nodes known here */
  get remoteRoutes(): number {
    let n = 0;
    for (const node of this.index.nodes) if (node !== this.nodeId) n += this.index.filtersOf(node).size;
    return n;
  }

  private key(name: string): string {
    return `${this.options.prefix}:${name}`;
  }

  // ---- start and stop -------------------------------------------------------------------------

  /** Joins the cluster: reads its routes and retained messages, and settles which of the sessions kept here are still this node's. */
  async start(): Promise<void> {
    try {
      await Promise.all([this.cmd.connect(), this.sub.connect()]);
    } catch (err) {
      this.cmd.disconnect();
      this.sub.disconnect();
      throw new Error(`cluster: cannot reach Redis at ${redactUrl(this.options.redis)}: ${this.lastError || (err as Error).message}`);
    }
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel.toString(), message));
    await this.sub.subscribe(this.key(`node:${this.nodeId}`), this.key('routes'), this.key('retained'), this.key('nodes'));
    await this.settleSessions();
    this.core.router.observe(this);
    await this.sync();
    this.started = true;
    this.core.cluster = this;
    this.timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.timer.unref();
    // after a Redis outage, anything may have changed: read it all again
    this.sub.on('ready', () => {
      if (!this.stopping) void this.sync().catch((err: Error) => this.logger.warn({ err: err.message }, 'cluster: resync failed'));
    });
    this.logger.info({ nodeId: this.nodeId, nodes: this.live.size }, 'joined the cluster');
  }

  /** Registers this node and its routes, then reads everyone's routes and the retained messages; events meanwhile wait. */
  private async sync(): Promise<void> {
    this.buffered ??= [];
    await this.heartbeat(true);
    await this.publishOwnRoutes();
    const nodes = [...this.live].filter((n) => n !== this.nodeId);
    const sets = await Promise.all(nodes.map((n) => this.cmd.smembers(this.key(`routes:${n}`))));
    for (const n of this.index.nodes) if (n !== this.nodeId && !this.live.has(n)) this.index.removeNode(n);
    nodes.forEach((n, i) => this.index.replaceNode(n, sets[i] as string[]));
    await this.loadRetained();
    const events = this.buffered;
    this.buffered = undefined;
    for (const [channel, message] of events) this.onMessage(channel, message);
  }

  /** Leaves the cluster: other nodes drop this node's routes at once instead of after the timeout. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.timer);
    this.core.cluster = undefined;
    this.flushOutbox();
    this.flushReleases();
    try {
      if (this.started) {
        await this.cmd.multi().zrem(this.key('nodes'), this.nodeId).del(this.key(`routes:${this.nodeId}`)).publish(this.key('nodes'), `down ${this.nodeId}`).exec();
      }
      await Promise.all([this.cmd.quit(), this.sub.quit()]);
    } catch {
      this.cmd.disconnect();
      this.sub.disconnect();
    }
  }

  private async heartbeat(initial = false): Promise<void> {
    let result: [number, string[]];
    try {
      result = (await (this.cmd as unknown as Scripts).midgeHeartbeat(this.key('nodes'), this.nodeId, this.options.nodeTimeoutMs, this.options.prefix)) as [number, string[]];
    } catch (err) {
      if (initial) throw err;
      return;
    }
    const [added, live] = result;
    this.live.clear();
    for (const n of live) this.live.add(n);
    this.stats.nodes = this.live.size;
    for (const n of this.index.nodes) if (n !== this.nodeId && !this.live.has(n)) this.index.removeNode(n);
    // declared gone while it was unreachable: its routes were dropped with it
    if (added === 1 && !initial && this.started) await this.publishOwnRoutes().catch(() => undefined);
  }

  private async publishOwnRoutes(): Promise<void> {
    const key = this.key(`routes:${this.nodeId}`);
    const filters = [...this.core.router.filters()];
    const tx = this.cmd.multi().del(key);
    for (let i = 0; i < filters.length; i += 1000) tx.sadd(key, ...filters.slice(i, i + 1000));
    await tx.publish(this.key('nodes'), `up ${this.nodeId}`).exec();
  }

  private async loadRetained(): Promise<void> {
    // A Redis without the cluster's marker is new, or lost its data (restarted without
    // persistence): what this node holds is put back rather than taken for cleared.
    const fresh = (await this.cmd.set(this.key('cluster'), String(Date.now()), 'NX')) === 'OK';
    if (fresh) {
      const key = this.key('retained');
      const writes = [...this.core.retained.values()].filter((m) => !isLocalTopic(m.topic)).map((m) => this.cmd.hsetnx(key, m.topic, packStoredMessage(m)));
      await Promise.all(writes);
    }
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, entries] = await this.cmd.hscanBuffer(this.key('retained'), cursor, 'COUNT', 1000);
      cursor = next.toString();
      for (let i = 0; i + 1 < entries.length; i += 2) {
        const topic = (entries[i] as Buffer).toString();
        seen.add(topic);
        this.applyRetained(topic, entries[i + 1] as Buffer);
      }
    } while (cursor !== '0');
    // what was cleared while this node was away
    if (!fresh) for (const m of [...this.core.retained.values()]) {
      if (!seen.has(m.topic) && !isLocalTopic(m.topic)) this.core.applyRemoteRetained(m.topic, undefined);
    }
  }

  /** Sessions kept on disk whose client connected to another node while this one was down are no longer this node's. */
  private async settleSessions(): Promise<void> {
    const sessions = [...this.core.sessions.values()];
    for (let i = 0; i < sessions.length; i += 1000) {
      const slice = sessions.slice(i, i + 1000);
      const owners = await Promise.all(slice.map((s) => (this.cmd as unknown as Scripts).midgeClaimIfFree(this.key(`client:${s.clientId}`), this.nodeId)));
      slice.forEach((s, k) => {
        if (owners[k] === this.nodeId) return;
        this.core.wills.cancel(s.clientId);
        this.core.sessions.end(s);
      });
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
      if (channel === this.key('routes')) return this.onRouteChange(message.toString());
      if (channel === this.key('retained')) return this.onRetained(unpackRetained(message));
      if (channel === this.key('nodes')) return this.onNodeEvent(message.toString());
    } catch (err) {
      this.logger.warn({ channel, err: (err as Error).message }, 'cluster: unreadable message ignored');
    }
  }

  private onRouteChange(text: string): void {
    const nl = text.indexOf('\n');
    const node = text.slice(1, nl);
    if (node === this.nodeId || nl < 0) return;
    if (text[0] === '+') this.index.add(node, text.slice(nl + 1));
    else this.index.remove(node, text.slice(nl + 1));
  }

  private onNodeEvent(text: string): void {
    const [what, node] = text.split(' ') as [string, string];
    if (node === this.nodeId) return;
    if (what === 'down') {
      this.live.delete(node);
      this.index.removeNode(node);
    } else if (what === 'up') {
      this.live.add(node);
      void this.cmd.smembers(this.key(`routes:${node}`)).then((filters) => this.index.replaceNode(node, filters), () => undefined);
    }
    this.stats.nodes = this.live.size;
  }

  private onRetained(change: RetainedChange): void {
    this.applyRetained(change.topic, change.body);
  }

  private applyRetained(topic: string, body: Buffer | null): void {
    this.core.applyRemoteRetained(topic, body === null ? undefined : unpackStoredMessage(body));
  }

  private onFrame(frame: NodeFrame): void {
    switch (frame.kind) {
      case 'message': {
        this.stats.received++;
        const groups = frame.groups;
        const select = groups === null ? NO_GROUPS : (topicFilter: string, group: string) => groups.includes(`$share/${group}/${topicFilter}`);
        this.core.routeRemote(unpackMessage(frame.body, this.core.now()), select);
        return;
      }
      case 'takeover': {
        const session = handOver(this.core, frame.clientId, frame.cleanStart);
        if (session !== null) this.stats.sessionsHandedOver++;
        const reply = packFrame({ kind: 'session', requestId: frame.requestId, session });
        this.cmd.publish(this.key(`node:${frame.from}`), reply).catch((err: Error) => this.logger.warn({ err: err.message, clientId: frame.clientId }, 'cluster: session handover not sent'));
        return;
      }
      case 'session':
        this.requests.get(frame.requestId)?.(frame.session);
        return;
    }
  }

  // ---- ClusterPort ----------------------------------------------------------------------------

  route(message: Message, memo: MatchMemo | undefined): number {
    // the broker's own $SYS topics describe this node alone
    if (isLocalTopic(message.topic)) return this.core.router.route(message, memo);
    const plan = this.plan;
    this.index.plan(message.topic, plan);
    const here = this.core.router.route(message, memo, plan.localGroups.size === 0 ? NO_GROUPS : this.selectLocal);
    this.forwardedLast = plan.nodes.size > 0;
    if (this.forwardedLast) this.forward(message, plan);
    return here;
  }

  sent(): Promise<void> | undefined {
    if (!this.forwardedLast) return undefined;
    if (this.turnSent === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.turnSent = { promise, resolve };
    }
    return this.turnSent.promise;
  }

  private forward(message: Message, plan: RoutePlan): void {
    const body = packMessage(message, this.core.now());
    for (const [node, groups] of plan.nodes) {
      if (this.pendingForwards >= MAX_PENDING_FORWARDS) {
        this.stats.forwardFailed++;
        continue;
      }
      this.pendingForwards++;
      this.stats.forwarded++;
      let frames = this.outbox.get(node);
      if (frames === undefined) {
        frames = [];
        this.outbox.set(node, frames);
      }
      frames.push(packFrame({ kind: 'message', body, groups: groups.length === 0 ? null : groups }));
    }
    if (!this.flushScheduled && this.outbox.size > 0) {
      this.flushScheduled = true;
      setImmediate(this.flushOutbox);
    }
  }

  /** What a turn routed to each node goes as one PUBLISH per node, in order. */
  private readonly flushOutbox = (): void => {
    this.flushScheduled = false;
    const sends: Array<Promise<unknown>> = [];
    for (const [node, frames] of this.outbox) {
      const n = frames.length;
      sends.push(this.cmd.publish(this.key(`node:${node}`), n === 1 ? (frames[0] as Buffer) : packBatch(frames)).then(
        () => (this.pendingForwards -= n),
        () => {
          this.pendingForwards -= n;
          this.stats.forwardFailed += n;
        },
      ));
    }
    this.outbox.clear();
    const turn = this.turnSent;
    this.turnSent = undefined;
    if (turn !== undefined) void Promise.all(sends).then(turn.resolve);
  };

  retainedChanged(message: Message): void {
    if (isLocalTopic(message.topic)) return;
    const body = message.payload.length === 0 ? null : packStoredMessage(message);
    this.writeRetained({ topic: message.topic, body });
  }

  retainedDeleted(topic: string): void {
    if (!isLocalTopic(topic)) this.writeRetained({ topic, body: null });
  }

  /**
   * The hash and the broadcast change in one transaction, so every node, this one included, sees
   * the changes of a topic in the order Redis applied them and ends on the same message.
   */
  private writeRetained(change: RetainedChange): void {
    const key = this.key('retained');
    const tx = this.cmd.multi();
    if (change.body === null) tx.hdel(key, change.topic);
    else tx.hset(key, change.topic, change.body);
    tx.publish(key, packRetained(change))
      .exec()
      .catch((err: Error) => this.logger.warn({ err: err.message, topic: change.topic }, 'cluster: retained message not shared'));
  }

  claim(clientId: string, cleanStart: boolean): Promise<void> {
    this.claiming.set(clientId, (this.claiming.get(clientId) ?? 0) + 1);
    return this.takeClientId(clientId, cleanStart)
      .catch((err: Error) => this.logger.warn({ err: err.message, clientId }, 'cluster: client id not claimed'))
      .finally(() => {
        const n = (this.claiming.get(clientId) ?? 1) - 1;
        if (n > 0) this.claiming.set(clientId, n);
        else this.claiming.delete(clientId);
      });
  }

  private async takeClientId(clientId: string, cleanStart: boolean): Promise<void> {
    const previous = (await this.cmd.call('SET', this.key(`client:${clientId}`), this.nodeId, 'GET')) as string | null;
    if (previous === null || previous === this.nodeId) return;
    if (!this.live.has(previous)) {
      this.logger.info({ clientId, node: previous }, 'cluster: the node that held this client is gone; its session stays there');
      return;
    }
    const transfer = await this.request(previous, clientId, cleanStart);
    if (transfer !== null && adopt(this.core, clientId, transfer)) this.stats.sessionsTakenOver++;
  }

  private request(node: string, clientId: string, cleanStart: boolean): Promise<SessionTransfer | null> {
    const requestId = this.nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.requests.delete(requestId);
        this.logger.warn({ clientId, node }, 'cluster: no session handover in time; the client starts a new session');
        resolve(null);
      }, this.options.handoverTimeoutMs);
      this.requests.set(requestId, (session) => {
        clearTimeout(timer);
        this.requests.delete(requestId);
        resolve(session);
      });
      const frame = packFrame({ kind: 'takeover', requestId, from: this.nodeId, clientId, cleanStart });
      this.cmd.publish(this.key(`node:${node}`), frame).catch(() => undefined);
    });
  }

  sessionEnded(clientId: string): void {
    // checked after the turn: a clean start ends a session and opens its successor in one go
    if (this.releases === undefined) {
      this.releases = new Set();
      setImmediate(() => this.flushReleases());
    }
    this.releases.add(clientId);
  }

  private flushReleases(): void {
    const ids = this.releases;
    this.releases = undefined;
    if (ids === undefined) return;
    for (const id of ids) {
      if (this.core.sessions.get(id) !== undefined || this.claiming.has(id)) continue;
      (this.cmd as unknown as Scripts).midgeRelease(this.key(`client:${id}`), this.nodeId).catch(() => undefined);
    }
  }

  // ---- RouteObserver --------------------------------------------------------------------------

  added(filter: string): void {
    this.index.add(this.nodeId, filter);
    if (this.started) this.announce('+', filter);
  }

  removed(filter: string): void {
    this.index.remove(this.nodeId, filter);
    if (this.started && !this.stopping) this.announce('-', filter);
  }

  private announce(op: '+' | '-', filter: string): void {
    const key = this.key(`routes:${this.nodeId}`);
    const tx = this.cmd.multi();
    if (op === '+') tx.sadd(key, filter);
    else tx.srem(key, filter);
    tx.publish(this.key('routes'), `${op}${this.nodeId}\n${filter}`)
      .exec()
      .catch((err: Error) => this.logger.warn({ err: err.message, filter }, 'cluster: route change not shared'));
  }
}

interface Scripts {
  midgeHeartbeat(key: string, nodeId: string, timeoutMs: number, prefix: string): Promise<unknown>;
  midgeClaimIfFree(key: string, nodeId: string): Promise<string>;
  midgeRelease(key: string, nodeId: string): Promise<number>;
}

const NO_GROUPS = (): boolean => false;

/** $SYS topics are each node's own. */
function isLocalTopic(topic: string): boolean {
  return topic.startsWith('$SYS');
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
