import type { Buffer } from 'node:buffer';
import { publishOn, type RedisClient } from './redis-target.js';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { Message } from '../session/message.js';
import { packRetained, packStoredMessage, unpackRetained, unpackStoredMessage } from './wire.js';
import { isSysTopic } from '../topic/sys-topic.js';

/** $SYS topics are each node's own: not shared, not forwarded. */
export function isLocalTopic(topic: string): boolean {
  return isSysTopic(topic);
}

/**
 * Retained messages shared by the cluster: a Redis hash (`retained`, topic -> message) holds them,
 * and each change is broadcast on the channel of the same name in the same transaction. Every
 * node keeps a full copy and applies every broadcast, its own included, so that all of them see a
 * topic's changes in the order Redis applied them and end on the same message.
 *
 * A change made here may be kept back a while (behind a commit, see RedisCluster.routeKeptBack)
 * while later ones of the same topic made here are shared at once. Shared after them, it would be
 * what every node ends on, this one included, though this node applied it first: so a change
 * kept back is shared only if it is still the topic's latest made here (keep, shareKept).
 */
export class RetainedSync {
  private readonly core: ClusterHost;
  private readonly cmd: RedisClient;
  private readonly logger: Logger;
  private readonly key: (name: string) => string;
  /** the retained changes made on this node so far: each one's number */
  private changes = 0;
  /** by topic with changes kept back: the number of the latest change of it made here, and how many are kept back */
  private readonly kept = new Map<string, { latest: number; count: number }>();

  constructor(core: ClusterHost, cmd: RedisClient, key: (name: string) => string, logger: Logger) {
    this.core = core;
    this.cmd = cmd;
    this.key = key;
    this.logger = logger;
  }

  /** Reads every retained message of the cluster; what this node holds that Redis does not was cleared meanwhile. */
  async load(): Promise<void> {
    // A Redis without the cluster's marker is new, or lost its data (restarted without
    // persistence): what this node holds is put back rather than taken for cleared. The marker is
    // set once it is back, so that a node loading meanwhile does not take it for cleared either
    // (it puts its own back too).
    const fresh = (await this.cmd.exists(this.key('cluster'))) === 0;
    if (fresh) {
      const key = this.key('retained');
      const writes = [...this.core.retained.values()].filter((m) => !isLocalTopic(m.topic)).map((m) => this.cmd.hsetnx(key, m.topic, packStoredMessage(m)));
      await Promise.all(writes);
      await this.cmd.set(this.key('cluster'), String(Date.now()), 'NX');
    }
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, entries] = await this.cmd.hscanBuffer(this.key('retained'), cursor, 'COUNT', 1000);
      cursor = next.toString();
      for (let i = 0; i + 1 < entries.length; i += 2) {
        const topic = (entries[i] as Buffer).toString();
        seen.add(topic);
        this.apply(topic, entries[i + 1] as Buffer);
      }
    } while (cursor !== '0');
    if (fresh) return;
    for (const m of [...this.core.retained.values()]) {
      if (!seen.has(m.topic) && !isLocalTopic(m.topic)) this.core.applyRemoteRetained(m.topic, undefined);
    }
  }

  /** A change broadcast by some node. */
  received(bytes: Buffer): void {
    const change = unpackRetained(bytes);
    this.apply(change.topic, change.body);
  }

  /** A retained change made on this node (set, cleared or deleted), shared now or kept back; returns its number. */
  madeHere(topic: string): number {
    const n = ++this.changes;
    const kept = this.kept.get(topic);
    if (kept !== undefined) kept.latest = n;
    return n;
  }

  /** Change `n` (madeHere) of `topic` is kept back, to be shared later (shareKept) or given up (forget). */
  keep(topic: string, n: number): void {
    const kept = this.kept.get(topic);
    if (kept === undefined) this.kept.set(topic, { latest: n, count: 1 });
    else kept.count++;
  }

  /** A change kept back is given up: a later one of the same publisher and topic is shared instead. */
  forget(topic: string): void {
    const kept = this.kept.get(topic);
    if (kept !== undefined && --kept.count === 0) this.kept.delete(topic);
  }

  /**
   * Shares change `n` of `message`'s topic, kept back until now, unless a change of the topic
   * made here since (shared, or kept back still) replaced it: this node applied that one last.
   * Undefined when nothing is shared.
   */
  shareKept(message: Message, n: number): Promise<unknown> | undefined {
    const kept = this.kept.get(message.topic);
    const latest = kept === undefined || kept.latest === n;
    this.forget(message.topic);
    return latest ? this.changed(message) : undefined;
  }

  /** A retained message set, or cleared (empty payload), on this node; settles once Redis has it (undefined: a topic of this node's own). */
  changed(message: Message): Promise<unknown> | undefined {
    if (isLocalTopic(message.topic)) return undefined;
    return this.write(message.topic, message.payload.length === 0 ? null : packStoredMessage(message));
  }

  /** A retained message removed here by administration. */
  deleted(topic: string): void {
    if (!isLocalTopic(topic)) void this.write(topic, null);
  }

  private apply(topic: string, body: Buffer | null): void {
    this.core.applyRemoteRetained(topic, body === null ? undefined : unpackStoredMessage(body));
  }

  private write(topic: string, body: Buffer | null): Promise<unknown> {
    const key = this.key('retained');
    const tx = this.cmd.multi();
    if (body === null) tx.hdel(key, topic);
    else tx.hset(key, topic, body);
    const done = publishOn(this.cmd, tx, key, packRetained({ topic, body })).exec();
    done.catch((err: Error) => this.logger.warn({ err: err.message, topic }, 'cluster: retained message not shared'));
    return done;
  }
}
