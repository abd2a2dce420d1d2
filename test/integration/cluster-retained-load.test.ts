import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { ClusterHost } from '../../src/broker/cluster-port.js';
import { RetainedSync } from '../../src/cluster/retained-sync.js';
import type { RedisClient } from '../../src/cluster/redis-target.js';
import { createMessage, type Message } from '../../src/session/message.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';

/** A node's retained messages, as RetainedSync sees them. */
function nodeHolding(...topics: string[]): { core: ClusterHost; retained: Map<string, Message> } {
  const retained = new Map<string, Message>();
  for (const t of topics) retained.set(t, createMessage(t, Buffer.from('kept'), 1, true, undefined, { now: () => Date.now() }, 'pub'));
  const core = {
    retained: { values: () => retained.values() },
    applyRemoteRetained: (topic: string, m: Message | undefined) => {
      if (m === undefined) retained.delete(topic);
      else retained.set(topic, m);
    },
  } as unknown as ClusterHost;
  return { core, retained };
}

/** A command connection whose HSETNX answers `ms` late: a node putting its retained messages back slowly. */
function slowPuts(cmd: Redis, ms: number): RedisClient {
  return new Proxy(cmd, {
    get(target, prop, receiver) {
      if (prop === 'hsetnx') return (...args: unknown[]) => new Promise((r) => setTimeout(r, ms)).then(() => (target.hsetnx as (...a: unknown[]) => Promise<number>)(...args));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as unknown as RedisClient;
}

describe('retained messages read again after Redis came back empty', { skip: skipWithoutRedis }, () => {
  let redis: TestRedis;
  const conns: Redis[] = [];
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const c of conns) c.disconnect();
    await redis.stop();
  });

  test('a node that reads them while another is still putting its own back does not take them for cleared', async () => {
    const [ca, cb] = [new Redis(redis.url), new Redis(redis.url)];
    conns.push(ca, cb);
    const a = nodeHolding('r/kept');
    const b = nodeHolding('r/kept');
    const key = (name: string): string => `p:${name}`;
    const log = pino({ level: 'silent' });
    const first = new RetainedSync(a.core, slowPuts(ca, 200), key, log).load();
    await new Promise((r) => setTimeout(r, 50));
    await new RetainedSync(b.core, cb as unknown as RedisClient, key, log).load();
    await first;
    assert.deepEqual([...b.retained.keys()], ['r/kept'], 'kept on the node that read meanwhile');
    assert.deepEqual([...a.retained.keys()], ['r/kept']);
    assert.deepEqual(await ca.hkeys('p:retained'), ['r/kept'], 'and in Redis');
    assert.equal(await ca.exists('p:cluster'), 1, 'marked once put back');
    // a topic cleared while a node was away is cleared there when it reads them again
    const c = nodeHolding('r/kept', 'r/gone');
    await new RetainedSync(c.core, ca as unknown as RedisClient, key, log).load();
    assert.deepEqual([...c.retained.keys()], ['r/kept']);
  });
});
