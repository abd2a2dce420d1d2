import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { RedisClient } from './redis-target.js';

/**
 * Keeps a Redis hash (field per client id) in line with state this node holds, for the other
 * nodes to take up should this node die. Changes are written at the end of the turn, each field's
 * state as it is then: a client that connects and goes within one turn costs nothing in Redis.
 */
export class HashMirror {
  private dirty: Set<string> | undefined;
  /** a write failed since the last resync: what Redis holds may be short of what it should */
  broken = false;
  /** the fields written: most clients have neither a will nor a persistent session, and cost no HDEL */
  private readonly present = new Set<string>();
  private readonly flushLater = (): void => void this.flush();

  /**
   * `read` gives a field's value now (undefined: no field), `all` every field there is; `what`
   * names them in the log.
   */
  constructor(
    private readonly cmd: RedisClient,
    readonly key: string,
    private readonly logger: Logger,
    private readonly what: string,
    private readonly read: (id: string) => Buffer | undefined,
    private readonly all: () => Iterable<[string, Buffer]>,
  ) {}

  /** The field's state changed: written at the end of the turn. */
  mark(id: string): void {
    if (this.dirty === undefined) {
      this.dirty = new Set();
      setImmediate(this.flushLater);
    }
    this.dirty.add(id);
  }

  /** Writes the changes so far; a failure is made good by `resync` once Redis is back. */
  async flush(): Promise<void> {
    const ids = this.dirty;
    this.dirty = undefined;
    if (ids === undefined) return;
    const pipeline = this.cmd.pipeline();
    for (const id of ids) {
      const value = this.read(id);
      if (value !== undefined) {
        pipeline.hset(this.key, id, value);
        this.present.add(id);
      } else if (this.present.delete(id)) {
        pipeline.hdel(this.key, id);
      }
    }
    if (pipeline.length === 0) return;
    try {
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (failed !== undefined) throw failed[0] as Error;
    } catch (err) {
      this.broken = true;
      this.logger.warn({ err: (err as Error).message }, `cluster: ${this.what} not written to Redis; written again once it is back`);
    }
  }

  /** Writes every field again in place of what Redis holds (it may have lost it, or hold another run's). */
  async resync(): Promise<void> {
    this.dirty = undefined;
    this.broken = false;
    const tx = this.cmd.multi().del(this.key);
    this.present.clear();
    for (const [id, value] of this.all()) {
      tx.hset(this.key, id, value);
      this.present.add(id);
    }
    try {
      await tx.exec();
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }
}
