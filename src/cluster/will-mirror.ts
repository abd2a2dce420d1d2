import type { Logger } from 'pino';
import type { Will } from '../codec/packets.js';
import { HashMirror } from './hash-mirror.js';
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
 * connection it held without a DISCONNECT, which is what a will is for.
 */
export class WillMirror {
  private readonly held = new Map<string, Held>();
  private readonly hash: HashMirror;

  constructor(cmd: RedisClient, key: string, logger: Logger) {
    this.hash = new HashMirror(
      cmd,
      key,
      logger,
      'wills',
      (id) => {
        const h = this.held.get(id);
        return h === undefined ? undefined : packWillEntry(h.entry);
      },
      () => [...this.held].map(([id, h]) => [id, packWillEntry(h.entry)]),
    );
  }

  /** A client connected here with a will, due `afterS` seconds after its connection is lost. */
  armed(owner: object, clientId: string, username: string | undefined, will: Will, afterS: number): void {
    this.held.set(clientId, { owner, entry: { username, will, due: { afterS } } });
    this.hash.mark(clientId);
  }

  /** The connection ended: its will was sent, dropped, or now waits out its delay (pending). */
  disarmed(owner: object, clientId: string): void {
    // a newer connection of the same client id may have armed its own will already
    if (this.held.get(clientId)?.owner !== owner) return;
    this.held.delete(clientId);
    this.hash.mark(clientId);
  }

  /** A will waits here, with no connection, until `at`. */
  pending(clientId: string, username: string | undefined, will: Will, at: number): void {
    this.held.set(clientId, { owner: undefined, entry: { username, will, due: { at } } });
    this.hash.mark(clientId);
  }

  /** The waiting will was sent, or its client came back in time. */
  done(clientId: string): void {
    if (this.held.get(clientId)?.owner !== undefined) return;
    if (!this.held.delete(clientId)) return;
    this.hash.mark(clientId);
  }

  /** a write failed since the last resync */
  get broken(): boolean {
    return this.hash.broken;
  }

  flush(): Promise<void> {
    return this.hash.flush();
  }

  resync(): Promise<void> {
    return this.hash.resync();
  }
}
