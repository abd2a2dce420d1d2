import type { Logger } from 'pino';
import type { Will } from '../codec/packets.js';
import type { RedisClient } from './redis-target.js';
import { packWillEntry, type WillEntry } from './wire.js';

interface Held {
  /** the connection whose will it is; undefined once it waits out its delay, with no connection */
  owner: object | undefined;
  entry: WillEntry;
}

/**
 * The wills this node answers for, kept in a Redis hash (`wills:<node>`, client id -> entry), so
 * that when this node dies the others send them (orphan-wills.ts): a node's death closes every
 * connection it held without a DISCONNECT, which is what a will is for. Changes are written at the
 * end of the turn, each client id's last state only: a client that connects and disconnects within
 * one turn costs nothing in Redis.
 */
export class WillMirror {
  private readonly held = new Map<string, Held>();
  private dirty: Set<string> | undefined;
  private readonly cmd: RedisClient;
  private readonly key: string;
  private readonly logger: Logger;
  private readonly flushLater = (): void => void this.flush();

  constructor(cmd: RedisClient, key: string, logger: Logger) {
    this.cmd = cmd;
    this.key = key;
    this.logger = logger;
  }

  get size(): number {
    return this.held.size;
  }

  /** A client connected here with a will, due `afterS` seconds after its connection is lost. */
  armed(owner: object, clientId: string, username: string | undefined, will: Will, afterS: number): void {
    this.set(clientId, { owner, entry: { username, will, due: { afterS } } });
  }

  /** The connection ended: its will was sent, dropped, or now waits out its delay (pending). */
  disarmed(owner: object, clientId: string): void {
    // a newer connection of the same client id may have armed its own will already
    if (this.held.get(clientId)?.owner !== owner) return;
    this.held.delete(clientId);
    this.mark(clientId);
  }

  /** A will waits here, with no connection, until `at`. */
  pending(clientId: string, username: string | undefined, will: Will, at: number): void {
    this.set(clientId, { owner: undefined, entry: { username, will, due: { at } } });
  }

  /** The waiting will was sent, or its client came back in time. */
  done(clientId: string): void {
    if (this.held.get(clientId)?.owner !== undefined) return;
    if (!this.held.delete(clientId)) return;
    this.mark(clientId);
  }

  private set(clientId: string, held: Held): void {
    this.held.set(clientId, held);
    this.mark(clientId);
  }

  private mark(clientId: string): void {
    if (this.dirty === undefined) {
      this.dirty = new Set();
      setImmediate(this.flushLater);
    }
    this.dirty.add(clientId);
  }

  /** Writes this turn's changes; a failure is made good by `resync` once Redis is back. */
  async flush(): Promise<void> {
    const ids = this.dirty;
    this.dirty = undefined;
    if (ids === undefined) return;
    const pipeline = this.cmd.pipeline();
    for (const id of ids) {
      const h = this.held.get(id);
      if (h === undefined) pipeline.hdel(this.key, id);
      else pipeline.hset(this.key, id, packWillEntry(h.entry));
    }
    try {
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (failed !== undefined) throw failed[0] as Error;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'cluster: wills not written to Redis; written again once it is back');
    }
  }

  /** Writes every will again in place of what Redis holds (it may have lost it, or hold another incarnation's). */
  async resync(): Promise<void> {
    this.dirty = undefined;
    const tx = this.cmd.multi().del(this.key);
    for (const [id, h] of this.held) tx.hset(this.key, id, packWillEntry(h.entry));
    await tx.exec();
  }

  clear(): void {
    this.held.clear();
    this.dirty = undefined;
  }
}
