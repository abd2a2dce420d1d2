import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import { HashMirror } from './hash-mirror.js';
import { OrphanSessions, type OrphanSessionNode } from './orphan-sessions.js';
import { OrphanWills, type OrphanNode } from './orphan-wills.js';
import { parseMember, type OrphanScripts } from './orphans.js';
import type { RedisClient } from './redis-target.js';
import { adopt, endsAt, giveUp } from './session-handover.js';
import { settlesWithin } from './settles-within.js';
import { WillMirror } from './will-mirror.js';
import { packSessionEntry, unpackSessionEntry, type NodeFrame } from './wire.js';

/** What the legacy needs of the node it belongs to. */
export interface LegacyNode {
  readonly nodeId: string;
  readonly prefix: string;
  readonly core: ClusterHost;
  readonly cmd: RedisClient;
  readonly scripts: OrphanScripts;
  readonly logger: Logger;
  readonly counters: { orphanWillsSent: number; orphanSessionsAdopted: number; sessionsResumedFromRedis: number };
  key(name: string): string;
  /** whether the session was handed to another node and stays here only a moment */
  leaving(clientId: string): boolean;
  /** settles the sessions other nodes took up while this one was found dead (client-ownership.ts) */
  reconcileSessions(): Promise<Map<string, number>>;
  sendFrame(node: string, frame: NodeFrame): void;
  /** a session was taken from `node`: what waits for it in that node's inbox is delivered (gone-inboxes.ts) */
  tookFrom(node: string, clientId: string): Promise<void>;
}

/**
 * How long the wills and sessions of a node found dead wait, in heartbeats, before they are sent
 * or taken up: a node that only lost Redis for a while (everyone's heartbeat is late once Redis is
 * back) shows it is live once its connection is back (ioredis retries every 2 s at most) and its
 * next heartbeat has run, and takes them back.
 */
const GRACE_HEARTBEATS = 5;
/**
 * How long the sessions of a node that stopped wait for it before another node takes them up
 * (their clients take them up at once wherever they connect): a node restarting takes back those
 * its store holds.
 */
export const RETURN_WAIT_MS = 10_000;
/** How long a client resuming a gone node's session waits for what that node's inbox held for it; the rest comes after its CONNACK. */
const INBOX_READ_WAIT_MS = 1000;

/**
 * What a node leaves the others in Redis should it go (its clients' wills and its persistent
 * sessions' subscriptions: will-mirror.ts, hash-mirror.ts), and what it does with what gone nodes
 * left (orphans.ts): it sends their wills when due, resumes their sessions for clients that
 * connect here, and takes up those whose clients do not come back.
 */
export class Legacy implements OrphanNode, OrphanSessionNode {
  /** the wills of this node's clients */
  readonly wills: WillMirror;
  /** this node's persistent sessions (subscriptions and expiry) */
  readonly sessions: HashMirror;
  private readonly orphanWills: OrphanWills;
  private readonly orphanSessions: OrphanSessions;
  /** a rewrite of this node's wills and sessions in Redis is under way (repair) */
  private repairing = false;
  private stopping = false;
  private readonly node: LegacyNode;

  constructor(node: LegacyNode, heartbeatMs: number) {
    this.node = node;
    this.wills = new WillMirror(node.cmd, node.key(`wills:${node.nodeId}`), node.logger);
    this.sessions = new HashMirror(node.cmd, node.key(`sessions:${node.nodeId}`), node.logger, 'sessions', (id) => this.sessionEntry(id), () => this.sessionEntries());
    this.orphanWills = new OrphanWills(this, GRACE_HEARTBEATS * heartbeatMs);
    this.orphanSessions = new OrphanSessions(this, GRACE_HEARTBEATS * heartbeatMs, RETURN_WAIT_MS);
  }

  // ---- what OrphanWills and OrphanSessions need of the node ----------------------------------

  get nodeId(): string {
    return this.node.nodeId;
  }

  get prefix(): string {
    return this.node.prefix;
  }

  get core(): ClusterHost {
    return this.node.core;
  }

  get scripts(): OrphanScripts {
    return this.node.scripts;
  }

  get logger(): Logger {
    return this.node.logger;
  }

  get counters(): LegacyNode['counters'] {
    return this.node.counters;
  }

  sessionChanged(clientId: string): void {
    this.sessions.mark(clientId);
  }

  tookFrom(node: string, clientId: string): Promise<void> {
    return this.node.tookFrom(node, clientId);
  }

  async scanHash(key: string, each: (field: string, value: Buffer) => void): Promise<void> {
    let cursor = '0';
    do {
      const [next, items] = await this.node.cmd.hscanBuffer(key, cursor, 'COUNT', 1000);
      cursor = next.toString();
      for (let i = 0; i + 1 < items.length; i += 2) each((items[i] as Buffer).toString(), items[i + 1] as Buffer);
    } while (cursor !== '0');
  }

  // ---- this node's own ------------------------------------------------------------------------

  /** A session as the other nodes are to know it, or undefined when it is not this node's to keep there. */
  private sessionEntry(clientId: string): Buffer | undefined {
    const s = this.node.core.sessions.get(clientId);
    if (s === undefined || s.expiryInterval === 0 || this.node.leaving(clientId)) return undefined;
    return packSessionEntry({
      expiryInterval: s.expiryInterval,
      username: s.username,
      subscriptions: [...s.subscriptions.values()],
      expiresAt: s.sink === undefined ? (s.expiresAt ?? null) : null,
    });
  }

  private *sessionEntries(): Iterable<[string, Buffer]> {
    for (const s of this.node.core.sessions.values()) {
      const entry = this.sessionEntry(s.clientId);
      if (entry !== undefined) yield [s.clientId, entry];
    }
  }

  /**
   * Writes this node's wills and sessions again: after Redis lost them, or after another node
   * found this one dead (Redis was out of its reach) and made them orphans, which it takes back.
   */
  async rewrite(): Promise<void> {
    if (this.stopping) return;
    await this.node.scripts.midgeReclaim(this.node.key('orphans'), this.node.prefix, this.node.nodeId);
    // a stop meanwhile has made them orphans for the others: written again, they would be no one's
    if (this.stopping) return;
    await Promise.all([this.wills.resync(), this.sessions.resync()]);
  }

  /**
   * Starting: the sessions of this node's earlier runs that Redis keeps and no store brought back
   * (all of them, without a store) are its own again at once, offline until their clients return.
   */
  async takeBackOwn(): Promise<void> {
    const members = await this.node.cmd.zrange(this.node.key('orphans'), 0, -1);
    await this.orphanSessions.takeBack(members);
  }

  /** This node has joined: the wills of the sessions it took back as it started are scheduled. */
  joined(): void {
    this.orphanSessions.releaseWills();
  }

  /** Settles the sessions other nodes took up while this one was found dead; resolves to their client ids with when each was settled (none when it failed, which is logged). */
  reconcile(): Promise<Map<string, number>> {
    return this.node.reconcileSessions().catch((err: Error) => {
      this.node.logger.warn({ err: err.message }, 'cluster: sessions taken up elsewhere not settled');
      return new Map<string, number>();
    });
  }

  /**
   * What this node answered for (before it stopped or died, or now that it stops) is the
   * cluster's: its wills are due, its sessions for their clients, or another node, to take up.
   * Resolves to whether it left sessions.
   */
  async leaveBehind(): Promise<boolean> {
    await Promise.all([this.wills.flush(), this.sessions.flush()]);
    return (await this.node.scripts.midgeNodeGone(this.node.key('orphans'), this.node.prefix, this.node.nodeId)) === 1;
  }

  // ---- what gone nodes left -------------------------------------------------------------------

  /** The orphan sets Redis lists at each heartbeat; `joined` once this node is in the cluster. */
  listed(members: readonly string[], joined: boolean): void {
    this.orphanWills.listed(members, joined);
    if (!joined) return;
    this.orphanSessions.listed(members);
    this.repair(members);
  }

  /**
   * A node found dead whose taking back failed (Redis went again), or whose writes to Redis
   * failed, tries again at each heartbeat, so that nothing of it is left to the others by mistake.
   */
  private repair(members: readonly string[]): void {
    if (this.repairing || this.stopping) return;
    const own = members.some((m) => {
      const p = parseMember(m);
      return p?.node === this.node.nodeId && p.kind === 'd';
    });
    if (!own && !this.wills.broken && !this.sessions.broken) return;
    this.repairing = true;
    this.rewrite()
      .catch((err: Error) => this.node.logger.warn({ err: err.message }, 'cluster: wills and sessions not written to Redis again; tried at the next heartbeat'))
      .finally(() => (this.repairing = false));
  }

  /** A client connects here whose id `node` held: the will it left in Redis (or, `earlierRuns`, that earlier runs of it left) is settled. */
  async orphanedWill(node: string, clientId: string, cleanStart: boolean, earlierRuns: boolean): Promise<void> {
    // only when such a node left anything: most reconnects cost nothing
    if (earlierRuns && !this.orphanWills.hasOrphansOf(node)) return;
    return this.orphanWills.claimed(node, clientId, cleanStart, earlierRuns);
  }

  /**
   * A client connects here whose id `node` held, and that node is gone or did not hand the
   * session over in time: the session it kept in Redis (subscriptions and expiry, not what was
   * queued there) resumes here, unless the client starts clean or the session has expired.
   */
  async orphanedSession(node: string, clientId: string, cleanStart: boolean): Promise<void> {
    const { core, scripts, nodeId } = this.node;
    if (node === nodeId && !this.orphanWills.hasOrphansOf(node)) return;
    const found = await scripts.midgeClaimOrphanedBuffer(this.node.key('orphans'), this.node.prefix, 'sessions', node, clientId, node === nodeId ? '1' : '0');
    if (found === null || cleanStart) return;
    const entry = unpackSessionEntry(found[0]);
    const orphanedAt = Number(found[1].toString());
    // connected when its node went: its expiry runs from then (from now, if its node was not found gone yet)
    const wentAt = orphanedAt < 0 ? core.now() : orphanedAt;
    if (endsAt(entry, wentAt) <= core.now()) return;
    if (adopt(core, clientId, { expiryInterval: entry.expiryInterval, username: entry.username ?? null, subscriptions: entry.subscriptions, queue: [], inflight: [], incomingQos2: [] })) {
      this.node.counters.sessionsResumedFromRedis++;
      // kept in Redis as this node's even if its client goes before its CONNACK
      this.sessions.mark(clientId);
      this.node.logger.info({ clientId, node }, 'cluster: a session its node did not hand over resumed here (its subscriptions, and what waits for it in that node\'s inbox; what was queued there follows if that node comes back)');
      // what was sent to that node for it comes ahead of the CONNACK, unless reading it takes long
      await settlesWithin(this.node.tookFrom(node, clientId), INBOX_READ_WAIT_MS);
    }
  }

  /** A session brought back from the store whose client went to another node: what it holds follows it there. */
  gaveUp(clientId: string, holder: string): void {
    const session = this.node.core.sessions.get(clientId);
    if (session === undefined) return;
    const queue = giveUp(this.node.core, session);
    if (queue.length > 0) this.node.sendFrame(holder, { kind: 'tail', clientId, queue });
  }

  /** Stops taking what gone nodes left; resolves once what was taken already is sent or kept. */
  stopTaking(): Promise<unknown> {
    this.stopping = true;
    return Promise.all([this.orphanWills.stop(), this.orphanSessions.stop()]);
  }
}
