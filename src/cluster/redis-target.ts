import { Redis, type RedisOptions } from 'ioredis';

/**
 * Where a cluster's Redis is: one server (`redis://`, `rediss://` with TLS), or a master that
 * Redis Sentinel watches and replaces when it fails
 * (`redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]`, the credentials
 * being the master's). With Sentinel, ioredis asks the sentinels for the master and follows a
 * failover to the replica they promote.
 */

const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^@/\s]+)\/([^/\s]+)(?:\/(\d+))?$/;
const SERVER_URL = /^rediss?:\/\/\S+$/;

/** Why `url` names no Redis Midge can use, or undefined when it names one. */
export function redisUrlProblem(url: string): string | undefined {
  if (SERVER_URL.test(url)) return undefined;
  const m = SENTINEL_URL.exec(url);
  if (m === null) return 'must be a redis://, rediss:// or redis+sentinel://host:port[,host:port...]/master-name URL';
  for (const hostPort of (m[3] as string).split(',')) {
    if (!/^[^:\s]+:\d{1,5}$/.test(hostPort)) return `names a sentinel "${hostPort}" that is not host:port`;
  }
  return undefined;
}

/** A connection to the Redis `url` names, with `options` of ioredis's own. */
export function connectRedis(url: string, options: RedisOptions): Redis {
  const m = SENTINEL_URL.exec(url);
  if (m === null) return new Redis(url, options);
  const sentinels = (m[3] as string).split(',').map((hp) => {
    const colon = hp.lastIndexOf(':');
    return { host: hp.slice(0, colon), port: Number(hp.slice(colon + 1)) };
  });
  return new Redis({
    ...options,
    sentinels,
    name: decodeURIComponent(m[4] as string),
    username: m[1] ? decodeURIComponent(m[1]) : undefined,
    password: m[2] !== undefined ? decodeURIComponent(m[2]) : undefined,
    db: m[5] === undefined ? 0 : Number(m[5]),
  });
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
