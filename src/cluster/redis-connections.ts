import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { connectRedis, redactUrl, redisErrorText, type RedisClient } from './redis-target.js';

/**
 * The three connections a node keeps to Redis: one for commands and scripts (pipelined), one
 * subscribed to the cluster's channels, and one its inbox reader blocks on (XREAD BLOCK holds a
 * connection for the length of the block).
 */
export class RedisConnections {
  readonly cmd: RedisClient;
  readonly sub: RedisClient;
  readonly reader: RedisClient;
  private readonly url: string;
  /** the last connection error ('' once connected): an outage is one log line, not one per retry of each connection */
  private lastError = '';
  /** whether errors are logged: at start they are thrown instead, and at stop they are expected */
  private reporting = false;

  constructor(url: string, logger: Logger) {
    this.url = url;
    const common = { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 2, retryStrategy: (n: number) => Math.min(n * 200, 2000) };
    this.cmd = connectRedis(url, { ...common, enableAutoPipelining: true });
    this.sub = connectRedis(url, common);
    // a blocked read is not a request to give up on after two reconnects
    this.reader = connectRedis(url, { ...common, maxRetriesPerRequest: null });
    for (const conn of [this.cmd, this.sub, this.reader]) {
      conn.on('error', (err: Error) => {
        const text = redisErrorText(err);
        if (this.reporting && text !== this.lastError) logger.warn({ err: text }, 'cluster: Redis connection error');
        this.lastError = text;
      });
      conn.on('ready', () => {
        if (this.reporting && this.lastError !== '') logger.info('cluster: Redis connection back');
        this.lastError = '';
      });
    }
  }

  /** Connects all three and checks that the server is recent enough; on failure, a one-line error and no connection left. */
  async open(): Promise<void> {
    try {
      await Promise.all([this.cmd.connect(), this.sub.connect(), this.reader.connect()]);
    } catch (err) {
      this.drop();
      throw new Error(`cluster: cannot reach Redis at ${redactUrl(this.url)}: ${this.lastError || redisErrorText(err as Error)}`);
    }
    const version = /redis_version:(\d+)\.(\d+)/.exec(await this.cmd.info('server'));
    // inboxes are trimmed with XTRIM MINID, which came with 6.2; sharded pub/sub (a Redis Cluster's) with 7.0
    const needed = this.cmd.isCluster ? [7, 0] : [6, 2];
    if (version !== null && Number(version[1]) * 100 + Number(version[2]) < needed[0]! * 100 + needed[1]!) {
      this.drop();
      throw new Error(`cluster: Redis at ${redactUrl(this.url)} is ${version[1]}.${version[2]}; ${needed.join('.')} or later is needed`);
    }
  }

  /** Subscribes to `channels`, sharded in a Redis Cluster (see publishOn). */
  async listen(channels: string[], onMessage: (channel: string, message: Buffer) => void): Promise<void> {
    const deliver = (channel: Buffer, message: Buffer): void => onMessage(channel.toString(), message);
    if (this.sub.isCluster) {
      this.sub.on('smessageBuffer', deliver);
      await this.sub.ssubscribe(...channels);
    } else {
      this.sub.on('messageBuffer', deliver);
      await this.sub.subscribe(...channels);
    }
  }

  /** Logs connection errors from now on (once joined), or stops logging them (when leaving). */
  report(on: boolean): void {
    this.reporting = on;
  }

  /** Ends the command and subscriber connections once what was sent on them is answered. */
  async quit(): Promise<void> {
    await Promise.all([this.cmd.quit(), this.sub.quit()]);
  }

  /** Closes all three at once, dropping whatever waits for an answer. */
  drop(): void {
    this.cmd.disconnect();
    this.sub.disconnect();
    this.reader.disconnect();
  }
}
