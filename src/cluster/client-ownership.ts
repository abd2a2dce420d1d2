import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import { RC } from '../codec/reason-codes.js';
import type { RedisClient } from './redis-target.js';
import { adopt, handOver, resumeLate } from './session-handover.js';
import { RELEASE_WAIT_MS, type SessionMoves } from './session-moves.js';
import type { NodeFrame, SessionTransfer } from './wire.js';
import type { OrphanScripts } from './orphans.js';

/** Lets go of a client id only if this node still holds it. */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** The scripts above, as the command connection defines them. */
export interface OwnershipScripts extends Pick<OrphanScripts, 'midgeWithdrawSessions' | 'midgeNow'> {
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
  /** the prefix of the cluster's keys */
  readonly prefix: string;
  key(name: string): string;
  isLive(node: string): boolean;
  /**
   * a client connects here whose id `node` held: the will it left in Redis is settled (with
   * `earlierRuns`, only what earlier runs of that node left: the node is live and settles its own)
   */
  orphanedWill(node: string, clientId: string, cleanStart: boolean, earlierRuns: boolean): Promise<void>;
  /** a client connects here whose id `node` held and does not hand over: the session it left in Redis resumes here */
  orphanedSession(node: string, clientId: string, cleanStart: boolean): Promise<void>;
  /** a session brought back from the store is another node's now: what it holds goes there */
  gaveUp(clientId: string, holder: string): void;
  /** sends a frame to a node at once, over pub/sub */
  sendFrame(node: string, frame: NodeFrame): void;
  /**
   * a session settled with the node that took it up while this one was found dead, `at` (Redis's
   * clock): what waited in this node's inbox for it until then reached it there
   */
  sessionSettled(clientId: string, at: number): void;
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
  /**
   * requests given up on, for an answer that still comes (while the old node would wait for a
   * release); `redisAhead` for those of a readmission (reconcile), to settle the session by Redis's clock
   */
  private readonly late = new Map<number, { node: string; clientId: string; redisAhead: number | undefined }>();
  /** client ids being taken from other nodes: a session ending here meanwhile does not let go of them */
  private readonly claiming = new Map<string, number>();
  private readonly claims = new Map<string, Promise<void>>();
  private releases: Set<string> | undefined;
  private readonly moves: SessionMoves;

  constructor(node: OwnershipNode, moves: SessionMoves) {
    this.node = node;
    this.moves = moves;
  }

  /**
   * Sessions kept on disk are this node's again, and no longer orphans for other nodes to take
   * up; those whose client connected to another node while this one was down are that node's,
   * and what they held here follows them there.
   */
  async settle(): Promise<void> {
    const { core, scripts, nodeId } = this.node;
    const sessions = [...core.sessions.values()];
    for (let i = 0; i < sessions.length; i += 1000) {
      const slice = sessions.slice(i, i + 1000);
      const owners = await scripts.midgeWithdrawSessions(this.node.key('orphans'), this.node.prefix, nodeId, ...slice.map((s) => s.clientId));
      slice.forEach((s, k) => {
        const owner = owners[k] as string;
        if (owner === nodeId) return;
        core.wills.cancel(s.clientId);
        this.node.gaveUp(s.clientId, owner);
      });
    }
  }

  /**
   * This node was found dead while it was only cut off from Redis, and is back: sessions another
   * node took up meanwhile are settled. One whose client is still connected here is taken back
   * with what reached it there (and its will there is dropped); one whose client is not is given
   * up to that node, as at a start. Resolves to the client ids of those sessions, with when each
   * was settled, by Redis's clock (that of inbox entries' ids): what waited in this node's inbox
   * for them until then reached them there.
   */
  async reconcile(): Promise<Map<string, number>> {
    const { core, cmd, nodeId } = this.node;
    const settled = new Map<string, number>();
    const redisAhead = (await this.node.scripts.midgeNow(this.node.key('orphans'))) - core.now();
    const sessions = [...core.sessions.values()].filter((s) => s.expiryInterval > 0 && !this.claiming.has(s.clientId));
    for (let i = 0; i < sessions.length; i += 1000) {
      const slice = sessions.slice(i, i + 1000);
      const holders = await cmd.mget(slice.map((s) => this.node.key(`client:${s.clientId}`)));
      await Promise.all(
        slice.map(async (s, k) => {
          const holder = holders[k];
          if (holder === null || holder === undefined || holder === nodeId || core.sessions.get(s.clientId) !== s) return;
          if (s.sink === undefined) {
            settled.set(s.clientId, core.now() + redisAhead);
            core.wills.cancel(s.clientId);
            this.node.gaveUp(s.clientId, holder);
            return;
          }
          await cmd.set(this.node.key(`client:${s.clientId}`), nodeId);
          const transfer = await this.request(holder, s.clientId, false, redisAhead);
          if (transfer === null || transfer === undefined) return;
          settled.set(s.clientId, core.now() + redisAhead);
          const count = resumeLate(core, s.clientId, transfer);
          this.node.logger.info({ clientId: s.clientId, node: holder, messages: count }, 'cluster: a session taken up elsewhere while this node was cut off from Redis is back here');
          this.moves.tookBack(holder, s.clientId);
        }),
      );
    }
    return settled;
  }

  /**
   * Back after a Redis outage: Redis may have restarted empty and lost which node holds each
   * client id. Every session here (connected or not) is this node's again, unless another node
   * took its id meanwhile: its client connected there, and that connection is the newer one
   * ([MQTT-3.1.4-3]). The connection here then closes with 0x8E (Session taken over), as if that
   * node's takeover request had come, and the session is given up to that node with what it holds.
   * Resolves to the client ids of the sessions given up, with when each was, by Redis's clock (that
   * of inbox entries' ids). Sessions other nodes took up while this node was found dead are not
   * this one's to settle: the readmission, which runs first, does.
   */
  async restore(): Promise<Map<string, number>> {
    const { core, cmd, nodeId } = this.node;
    const settled = new Map<string, number>();
    const redisAhead = (await this.node.scripts.midgeNow(this.node.key('orphans'))) - core.now();
    // a claim under way writes the id itself
    const sessions = [...core.sessions.values()].filter((s) => !this.claiming.has(s.clientId));
    for (let i = 0; i < sessions.length; i += 1000) {
      const slice = sessions.slice(i, i + 1000);
      const keys = slice.map((s) => this.node.key(`client:${s.clientId}`));
      const pipeline = cmd.pipeline();
      for (const key of keys) pipeline.set(key, nodeId, 'NX');
      const failed = (await pipeline.exec())?.find(([err]) => err !== null);
      if (failed !== undefined) throw failed[0] as Error;
      const holders = await cmd.mget(keys);
      slice.forEach((s, k) => {
        const holder = holders[k];
        if (holder === null || holder === undefined || holder === nodeId) return;
        if (core.sessions.get(s.clientId) !== s || this.claiming.has(s.clientId)) return;
        s.sink?.disconnect(RC.SessionTakenOver);
        settled.set(s.clientId, core.now() + redisAhead);
        core.wills.cancel(s.clientId);
        this.node.gaveUp(s.clientId, holder);
        this.node.logger.info({ clientId: s.clientId, node: holder }, 'cluster: a client connected to another node while this one was cut off from Redis; its session follows it there');
      });
    }
    return settled;
  }

  /** A client is connecting here: takes its id, and its session from the node that had it. */
  claim(clientId: string, cleanStart: boolean): Promise<void> {
    this.claiming.set(clientId, (this.claiming.get(clientId) ?? 0) + 1);
    const claim = this.take(clientId, cleanStart)
      .catch((err: Error) => this.node.logger.warn({ err: err.message, clientId }, 'cluster: client id not claimed'))
      .finally(() => {
        const n = (this.claiming.get(clientId) ?? 1) - 1;
        if (n > 0) this.claiming.set(clientId, n);
        else this.claiming.delete(clientId);
        if (this.claims.get(clientId) === claim) this.claims.delete(clientId);
      });
    this.claims.set(clientId, claim);
    return claim;
  }

  /** The claim of the client id under way here, if any: what is sent on for its session waits for the session. */
  claimOf(clientId: string): Promise<void> | undefined {
    return this.claims.get(clientId);
  }

  private async take(clientId: string, cleanStart: boolean): Promise<void> {
    const { cmd, nodeId, logger } = this.node;
    const previous = (await cmd.call('SET', this.node.key(`client:${clientId}`), nodeId, 'GET')) as string | null;
    if (previous === null) return;
    if (previous === nodeId) {
      // held here by an earlier run of this node: the will it left is settled as on any node, and
      // the session too when this run did not bring it back from a store
      const local = this.node.core.sessions.get(clientId) !== undefined;
      await Promise.all([this.node.orphanedWill(nodeId, clientId, cleanStart, true), local ? undefined : this.node.orphanedSession(nodeId, clientId, cleanStart)]);
      return;
    }
    if (!this.node.isLive(previous)) {
      logger.info({ clientId, node: previous }, 'cluster: the node that held this client is gone; what it kept in Redis of the session resumes here');
      await Promise.all([this.node.orphanedWill(previous, clientId, cleanStart, false), this.node.orphanedSession(previous, clientId, cleanStart)]);
      return;
    }
    // the node is live: what an earlier run of it left is settled here, the rest by the node itself
    const [transfer] = await Promise.all([this.request(previous, clientId, cleanStart), this.node.orphanedWill(previous, clientId, cleanStart, true)]);
    if (transfer === undefined) {
      // no answer in time: the node is likely dead and not found so yet. The session's
      // subscriptions are taken from Redis; a will waiting on the connection there goes now if
      // the client starts clean (else it is left to the node, or to the others once it is found dead)
      await Promise.all([this.node.orphanedSession(previous, clientId, cleanStart), cleanStart ? this.node.orphanedWill(previous, clientId, true, false) : undefined]);
      return;
    }
    if (transfer === null) return;
    const adopted = adopt(this.node.core, clientId, transfer);
    if (adopted) this.node.counters.sessionsTakenOver++;
    await this.moves.arrived(previous, clientId, adopted, transfer.queue.length);
  }

  /** The session `node` hands over; null when it has none, undefined when it did not answer in time. */
  private request(node: string, clientId: string, cleanStart: boolean, redisAhead?: number): Promise<SessionTransfer | null | undefined> {
    const requestId = this.nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.requests.delete(requestId);
        this.node.logger.warn({ clientId, node }, 'cluster: no session handover in time; the session resumes from what Redis keeps of it');
        this.late.set(requestId, { node, clientId, redisAhead });
        setTimeout(() => this.late.delete(requestId), RELEASE_WAIT_MS).unref();
        resolve(undefined);
      }, this.node.handoverTimeoutMs);
      this.requests.set(requestId, (session) => {
        clearTimeout(timer);
        this.requests.delete(requestId);
        resolve(session);
      });
      this.node.sendFrame(node, { kind: 'takeover', requestId, from: this.node.nodeId, clientId, cleanStart });
    });
  }

  /** Another node asks for a client's connection and session: hand them over and answer. */
  handOver(requestId: number, from: string, clientId: string, cleanStart: boolean): void {
    const handed = handOver(this.node.core, clientId, cleanStart);
    if (handed !== null) this.node.counters.sessionsHandedOver++;
    this.moves.handedOver(clientId, handed?.session);
    this.node.sendFrame(from, { kind: 'session', requestId, session: handed?.transfer ?? null });
  }

  /** The answer to a request of this node. */
  answered(requestId: number, session: SessionTransfer | null): void {
    const waiting = this.requests.get(requestId);
    if (waiting !== undefined) return waiting(session);
    const late = this.late.get(requestId);
    if (late === undefined) return;
    this.late.delete(requestId);
    if (session === null) return;
    // The client was told it has no session (Session Present 0) and started another here, or (a
    // readmission) kept the one it had here; the messages the old one held were acknowledged to
    // their publishers, so they still reach it.
    if (late.redisAhead !== undefined) this.node.sessionSettled(late.clientId, this.node.core.now() + late.redisAhead);
    const count = resumeLate(this.node.core, late.clientId, session);
    this.node.logger.info({ clientId: late.clientId, node: late.node, messages: count }, 'cluster: a session handed over late; its messages go to the new session');
    this.moves.tookBack(late.node, late.clientId);
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
