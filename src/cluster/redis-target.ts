import type { Buffer } from 'node:buffer';
import { Cluster, Redis, type RedisOptions } from 'ioredis';

/**
 * Where a cluster's Redis is:
 * - one server: `redis://`, or `rediss://` with TLS;
 * - a master that Redis Sentinel watches and replaces when it fails:
 *   `redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]`, the credentials
 *   being the master's; ioredis asks the sentinels for the master and follows a failover to the
 *   replica they promote;
 * - a Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://`
 *   with TLS), any of its nodes; ioredis learns the rest, and follows slots as they move and
 *   replicas as they are promoted.
 */

const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^@/\s]+)\/([^/\s]+)(?:\/(\d+))?$/;
const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^@/\s]+)\/?$/;
const SERVER_URL = /^rediss?:\/\/\S+$/;

/** A connection to the Redis a cluster shares: one server (through Sentinel or not), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** Why `url` names no Redis Midge can use, or undefined when it names one. */
export function redisUrlProblem(url: string): string | undefined {
  if (SERVER_URL.test(url)) return undefined;
  const hosts = SENTINEL_URL.exec(url)?.[3] ?? CLUSTER_URL.exec(url)?.[4];
  if (hosts === undefined) return 'must be a redis://, rediss://, redis+sentinel://host:port[,host:port...]/master-name or redis+cluster://host:port[,host:port...] URL';
  for (const hostPort of hosts.split(',')) {
    if (!/^[^:\s]+:\d{1,5}$/.test(hostPort)) return `names a ${url.startsWith('redis+sentinel') ? 'sentinel' : 'node'} "${hostPort}" that is not host:port`;
  }
  return undefined;
}

/** What PUBLISH goes through: a connection, or a transaction (MULTI) on one. */
interface Publisher<R> {
  publish(channel: string, message: string | Buffer): R;
  spublish(channel: string, message: string | Buffer): R;
}

/**
 * Publishes on one of the cluster's channels through `target` (`conn` or a transaction on it). In
 * a Redis Cluster the channels are sharded (SPUBLISH, SSUBSCRIBE): a message is published on the
 * master of its channel's slot, to the subscribers connected there, by the time the command
 * returns, as on one server. A plain PUBLISH would reach other masters' subscribers later, over
 * the cluster bus, and a SUBACK could go before the other nodes know of its route.
 */
export function publishOn<R>(conn: RedisClient, target: Publisher<R>, channel: string, message: string | Buffer): R {
  return conn.isCluster ? target.spublish(channel, message) : target.publish(channel, message);
}

/**
 * The connection that carries the writes to hash slot `slot`: the client itself, or in a Redis
 * Cluster its connection to the master serving the slot now (undefined while none is known).
 */
export function connectionForSlot(conn: RedisClient, slot: number): Redis | undefined {
  if (!(conn instanceof Cluster)) return conn;
  const master = conn.slots[slot]?.[0];
  return conn.nodes('master').find((r) => `${r.options.host}:${r.options.port}` === master);
}

/** PUBLISH or SPUBLISH, for scripts that publish. */
export function publishCommand(conn: RedisClient): 'PUBLISH' | 'SPUBLISH' {
  return conn.isCluster ? 'SPUBLISH' : 'PUBLISH';
}

/** Whether `url` names a Redis Cluster, whose multi-key commands need their keys in one hash slot. */
export function isRedisCluster(url: string): boolean {
  return CLUSTER_URL.test(url);
}

function hostPorts(list: string): Array<{ host: string; port: number }> {
  return list.split(',').map((hp) => {
    const colon = hp.lastIndexOf(':');
    return { host: hp.slice(0, colon), port: Number(hp.slice(colon + 1)) };
  });
}

const decoded = (s: string | undefined): string | undefined => (s ? decodeURIComponent(s) : undefined);

/**
 * A connection to the Redis `url` names, with `options` of ioredis's own (for a Redis Cluster,
 * those of each node's connection; retries and pipelining are the cluster client's).
 */
export function connectRedis(url: string, options: RedisOptions): RedisClient {
  const cluster = CLUSTER_URL.exec(url);
  if (cluster !== null) {
    const { lazyConnect, enableAutoPipelining, retryStrategy, maxRetriesPerRequest, ...perNode } = options;
    return new Cluster(hostPorts(cluster[4] as string), {
      lazyConnect,
      enableAutoPipelining,
      shardedSubscribers: true,
      clusterRetryStrategy: retryStrategy as ((times: number) => number) | undefined,
      redisOptions: {
        ...perNode,
        maxRetriesPerRequest,
        username: decoded(cluster[2]),
        password: decoded(cluster[3]),
        ...(cluster[1] === 'rediss' ? { tls: {} } : {}),
      },
    });
  }
  const m = SENTINEL_URL.exec(url);
  if (m === null) return new Redis(url, options);
  return new Redis({
    ...options,
    sentinels: hostPorts(m[3] as string),
    name: decodeURIComponent(m[4] as string),
    username: decoded(m[1]),
    password: m[2] !== undefined ? decodeURIComponent(m[2]) : undefined,
    db: m[5] === undefined ? 0 : Number(m[5]),
  });
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** What went wrong, in one line; a Redis Cluster client that reached no node says why the last one failed. */
export function redisErrorText(err: Error): string {
  const last = (err as Error & { lastNodeError?: unknown }).lastNodeError;
  return last instanceof Error ? `${err.message.replace(/\.$/, '')}: ${last.message}` : err.message;
}
