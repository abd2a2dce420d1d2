import { publishCommand, publishOn, type RedisClient } from './redis-target.js';
import { INBOX_KEEP_MS, INBOX_KEYS_LUA, inboxKeys } from './inbox.js';
import type { RouteIndex } from './route-index.js';
import { LIST_ORPHANS_LUA, ORPHAN_LUA } from './orphans.js';
import { settlesWithin } from './settles-within.js';

/** How long the inbox gate waits at most for a readmission (one whose Redis commands never settle must not shut it for good). */
const READMISSION_WAIT_MS = 60_000;

/**
 * Registers this node (ARGV[1]) in the node set (KEYS[1]), scored with Redis's own clock, and
 * drops the nodes not heard from for ARGV[2] ms: their routes with them, their inboxes kept
 * ARGV[4] ms for a restart, their wills and sessions made orphans (orphans.ts), and says so with ARGV[5]
 * (PUBLISH, or SPUBLISH in a Redis Cluster), adding 'sessions' when the node left some. Returns
 * [was this node missing, live nodes, orphan sets, nodes whose orphan sessions are not all taken up yet].
 */
export const HEARTBEAT = `${ORPHAN_LUA}${LIST_ORPHANS_LUA}${INBOX_KEYS_LUA}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[3]
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
if added == 1 then
  redis.call('PERSIST', prefix .. ':inbox:' .. ARGV[1])
  redis.call('PERSIST', prefix .. ':inbox-bytes:' .. ARGV[1])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', prefix .. ':routes:' .. id)
  inboxKeysExist(prefix, id)
  redis.call('PEXPIRE', prefix .. ':inbox:' .. id, ARGV[4])
  redis.call('PEXPIRE', prefix .. ':inbox-bytes:' .. id, ARGV[4])
  if orphan(prefix, id, now, 'd') then
    redis.call(ARGV[5], prefix .. ':nodes', 'down ' .. id .. ' sessions')
  else
    redis.call(ARGV[5], prefix .. ':nodes', 'down ' .. id)
  end
end
local listed = orphans(prefix)
local untaken = {}
for _, m in ipairs(listed) do
  if redis.call('EXISTS', prefix .. ':orphan-sessions:' .. m) == 1 then table.insert(untaken, string.match(m, '^%d+|%a|(.*)$')) end
end
return {added, redis.call('ZRANGE', KEYS[1], 0, -1), listed, untaken}`;

export interface MembershipScripts {
  midgeHeartbeat(key: string, nodeId: string, timeoutMs: number, prefix: string, inboxKeepMs: number, publish: 'PUBLISH' | 'SPUBLISH'): Promise<[number, string[], string[], string[]?]>;
}

/** What membership tells the rest of the node. */
export interface MembershipEvents {
  /** a node this one did not know is live: its routes are to be read */
  joined(node: string): void;
  /** this node was registered again: it had been declared dead (it was unreachable), or Redis lost the node set; its routes were dropped with it */
  readmitted(): Promise<void>;
  /** the orphan sets Redis holds now (orphans.ts) */
  orphans(members: string[]): void;
  /** a node went (it stopped, or was found dead), and its routes were dropped or are lingering */
  gone(node: string): void;
}

/** The other nodes' routes, which go with the nodes that go. */
export type KnownRoutes = Pick<RouteIndex, 'nodes' | 'removeNode' | 'removeShared'>;

export interface MembershipOptions {
  readonly nodeId: string;
  readonly prefix: string;
  readonly nodeTimeoutMs: number;
  /** how long the routes of a node that went leaving sessions are kept (gone-inboxes.ts) */
  readonly routeLingerMs: number;
  /** how long at most they are kept past that while some of its sessions are still not taken up */
  readonly maxRouteLingerMs: number;
  now(): number;
}

/**
 * Which nodes are in the cluster: each node's heartbeat keeps it in a sorted set, and drops (and
 * announces, 'down') any node not heard from for the node timeout. Nodes also say themselves when
 * they come ('up') and go ('down') on the `nodes` channel.
 *
 * A node that went leaving persistent sessions ('down <node> sessions') keeps its routes here a
 * while: messages for its sessions then wait in its inbox, for the node coming back or for the
 * nodes that take its sessions up, instead of reaching no one until the sessions are taken up.
 */
export class Membership {
  private readonly live = new Set<string>();
  /** nodes whose routes are known but that the last heartbeats did not list, since when */
  private readonly missingSince = new Map<string, number>();
  /** when this node's heartbeat last went through (its clock) */
  private lastBeat: number;
  /** waiting for the next heartbeat to go through */
  private beatWaiters: Array<() => void> = [];
  /** the readmission under way: whichever heartbeat found this node missing, the inbox gate waits for it */
  private readmission: Promise<void> | undefined;
  /** found missing again while a readmission was under way: its routes were dropped again, and it is made again */
  private readmitAgain = false;
  /** a heartbeat has registered this node: one that registers it again later readmits it */
  private registered = false;
  /** nodes gone whose routes are still kept, with the timer that drops them and since when */
  private readonly lingering = new Map<string, { timer: NodeJS.Timeout; since: number }>();
  /** gone nodes some of whose sessions are still orphans, not taken up (the last heartbeat's list) */
  private untaken: ReadonlySet<string> = new Set();
  private readonly cmd: RedisClient;
  private readonly scripts: MembershipScripts;
  private readonly options: MembershipOptions;
  private readonly routes: KnownRoutes;
  private readonly events: MembershipEvents;

  constructor(cmd: RedisClient, scripts: MembershipScripts, options: MembershipOptions, routes: KnownRoutes, events: MembershipEvents) {
    this.cmd = cmd;
    this.scripts = scripts;
    this.options = options;
    this.routes = routes;
    this.events = events;
    this.lastBeat = options.now();
  }

  /**
   * Whether this node may have been found dead: its heartbeat has not gone through for a node
   * timeout (it was stalled, or cut off from Redis), or it was and its readmission is under way.
   */
  get maybeDropped(): boolean {
    return this.readmission !== undefined || this.options.now() - this.lastBeat >= this.options.nodeTimeoutMs;
  }

  /** Settles once a heartbeat has gone through and no readmission is under way. */
  nextBeat(): Promise<void> {
    return new Promise((resolve) => this.beatWaiters.push(resolve));
  }

  /** Settles once the readmission under way, if any, is done. */
  readmitted(): Promise<void> {
    return this.readmission ?? Promise.resolve();
  }

  isLive(node: string): boolean {
    return this.live.has(node);
  }

  /** live nodes, this one included once it has registered */
  get size(): number {
    return this.live.size;
  }

  /** the live nodes other than this one */
  others(): string[] {
    return [...this.live].filter((n) => n !== this.options.nodeId);
  }

  /** Registers this node and reads the live set; `initial` (joining, or after an outage) throws when Redis cannot be reached. */
  async heartbeat(initial = false): Promise<void> {
    const { nodeId, prefix, nodeTimeoutMs } = this.options;
    let result: [number, string[], string[], string[]?];
    try {
      result = await this.scripts.midgeHeartbeat(`${prefix}:nodes`, nodeId, nodeTimeoutMs, prefix, INBOX_KEEP_MS, publishCommand(this.cmd));
    } catch (err) {
      if (initial) throw err;
      return;
    }
    const [added, listed, orphans, untaken = []] = result;
    this.untaken = new Set(untaken);
    // a node that went is live again when it says so ('up'), or once its routes are no longer
    // kept: a heartbeat answered just before it left would otherwise bring it back
    const live = this.lingering.size === 0 ? listed : listed.filter((n) => !this.lingering.has(n));
    // a node that (re)joined while this one's subscriber connection was down announced itself unheard
    const joined = initial ? [] : live.filter((n) => n !== nodeId && !this.live.has(n));
    this.live.clear();
    for (const n of live) this.live.add(n);
    this.forgetMissing();
    for (const n of joined) this.events.joined(n);
    if (added === 1 && this.registered) this.readmit();
    this.registered = true;
    this.lastBeat = this.options.now();
    // the inbox gate opens once the readmission is done, not before
    if (this.readmission === undefined) this.releaseWaiters();
    this.events.orphans(orphans);
  }

  /**
   * Once, whether the periodic heartbeat or the resync after a reconnection found this node
   * registered again; heartbeats go on meanwhile (a readmission waits for other nodes, and this
   * node must not be found dead again for want of them). Found missing again meanwhile, it is made
   * again after; one that never settles is not waited for past READMISSION_WAIT_MS.
   */
  private readmit(): void {
    if (this.readmission !== undefined) {
      this.readmitAgain = true;
      return;
    }
    this.readmission = (async () => {
      do {
        this.readmitAgain = false;
        await settlesWithin(this.events.readmitted(), READMISSION_WAIT_MS);
      } while (this.readmitAgain);
    })().finally(() => {
      this.readmission = undefined;
      this.releaseWaiters();
    });
  }

  private releaseWaiters(): void {
    const waiters = this.beatWaiters;
    this.beatWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Forgets the routes of nodes missing from the live set for a node timeout. Not at once: after
   * Redis lost its data every node is missing until its next heartbeat registers it again, and its
   * subscribers must not miss messages meanwhile. A node that left or was found dead says so
   * ('down') and is dropped at once.
   */
  forgetMissing(): void {
    const now = this.options.now();
    for (const n of this.routes.nodes) {
      if (n === this.options.nodeId || this.live.has(n) || this.lingering.has(n)) {
        this.missingSince.delete(n);
        continue;
      }
      const since = this.missingSince.get(n);
      if (since === undefined) this.missingSince.set(n, now);
      else if (now - since >= this.options.nodeTimeoutMs) {
        this.missingSince.delete(n);
        this.routes.removeNode(n);
      }
    }
  }

  /** A message on the `nodes` channel: `up <node>`, or `down <node>` with ` sessions` when it left some. */
  nodeEvent(text: string): void {
    const [what, node, left] = text.split(' ') as [string, string, string | undefined];
    if (node === this.options.nodeId) return;
    if (what === 'down') {
      this.live.delete(node);
      this.missingSince.delete(node);
      if (left === 'sessions') this.linger(node);
      else this.routes.removeNode(node);
      this.events.gone(node);
    } else if (what === 'up') {
      this.live.add(node);
      this.stopLinger(node);
      this.events.joined(node);
    }
  }

  /** whether this node still routes to `node` */
  routesTo(node: string): boolean {
    return this.live.has(node) || this.lingering.has(node);
  }

  /**
   * Keeps the node's direct routes a while, and on while sessions it left are still not taken up
   * (there are many, or Redis is slow): what is published for them waits in its inbox for the
   * nodes that take them up. Its shares of shared groups go to the groups' other members at once.
   */
  private linger(node: string): void {
    this.routes.removeShared(node);
    if (this.lingering.has(node)) return;
    const since = this.options.now();
    const check = (): void => {
      const entry = this.lingering.get(node);
      if (entry === undefined) return;
      if (this.untaken.has(node) && this.options.now() - since < this.options.maxRouteLingerMs) {
        entry.timer = setTimeout(check, Math.min(1000, this.options.routeLingerMs));
        entry.timer.unref();
        return;
      }
      this.lingering.delete(node);
      if (!this.live.has(node)) this.routes.removeNode(node);
    };
    const timer = setTimeout(check, this.options.routeLingerMs);
    timer.unref();
    this.lingering.set(node, { timer, since });
  }

  /** The node is live again: its routes are its own to keep (it announces them). */
  private stopLinger(node: string): void {
    const entry = this.lingering.get(node);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.lingering.delete(node);
  }

  /**
   * Leaves the cluster: the others drop this node at once, or a while later when it leaves
   * sessions (`leftSessions`); its inbox is kept a while, for a restart with its store.
   */
  async leave(leftSessions: boolean): Promise<void> {
    const { nodeId, prefix } = this.options;
    const [stream, bytes] = inboxKeys(prefix, nodeId);
    const tx = this.cmd.multi().zrem(`${prefix}:nodes`, nodeId).del(`${prefix}:routes:${nodeId}`).pexpire(stream, INBOX_KEEP_MS).pexpire(bytes, INBOX_KEEP_MS);
    await publishOn(this.cmd, tx, `${prefix}:nodes`, leftSessions ? `down ${nodeId} sessions` : `down ${nodeId}`).exec();
  }
}
