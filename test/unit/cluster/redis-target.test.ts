import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import { connectRedis, isRedisCluster, redactUrl, redisUrlProblem } from '../../../src/cluster/redis-target.js';

describe('the Redis a cluster uses, from its URL', () => {
  test('redis://, rediss://, redis+sentinel:// and redis+cluster:// URLs are taken; anything else says what is expected', () => {
    const good = ['redis://127.0.0.1:6379', 'rediss://:pw@redis.internal:6380/2', 'redis+sentinel://s1:26379/main', 'redis+sentinel://user:pw@s1:26379,10.0.0.2:26380/main/3', 'redis+cluster://10.0.0.1:7000', 'rediss+cluster://app:pw@n1:7000,n2:7001/'];
    for (const ok of good) assert.equal(redisUrlProblem(ok), undefined, ok);
    assert.match(redisUrlProblem('http://x') ?? '', /^must be a redis:\/\/, rediss:\/\/, redis\+sentinel:\/\/.* or redis\+cluster:\/\//);
    assert.match(redisUrlProblem('redis+sentinel://s1:26379') ?? '', /^must be/, 'a sentinel URL names its master');
    assert.match(redisUrlProblem('redis+cluster://n1:7000/main') ?? '', /^must be/, 'a cluster URL names no master');
    assert.equal(redisUrlProblem('redis+sentinel://s1:26379,s2/main'), 'names a sentinel "s2" that is not host:port');
    assert.equal(redisUrlProblem('redis+cluster://n1:7000,n2'), 'names a node "n2" that is not host:port');
    assert.deepEqual(good.map(isRedisCluster), [false, false, false, false, true, true]);
  });

  test('a Redis Cluster URL gives each node connection its credentials and TLS (the nodes themselves are found by the integration test)', () => {
    const cluster = connectRedis('rediss+cluster://app:p%40ss@n1:7000,10.0.0.2:7001', { lazyConnect: true, connectTimeout: 1234 }) as Cluster;
    const node = cluster.options.redisOptions ?? {};
    assert.equal(node.username, 'app');
    assert.equal(node.password, 'p@ss');
    assert.deepEqual(node.tls, {});
    assert.equal(node.connectTimeout, 1234);
    assert.equal(cluster.options.lazyConnect, true);
    cluster.disconnect();
    const plain = connectRedis('redis+cluster://n1:7000', { lazyConnect: true }) as Cluster;
    assert.equal(plain.options.redisOptions?.tls, undefined);
    plain.disconnect();
  });

  test('a sentinel URL becomes the sentinels, the master name, its credentials and database', () => {
    const redis = connectRedis('redis+sentinel://app:p%40ss@s1:26379,10.0.0.2:26380/main/3', { lazyConnect: true }) as Redis;
    const o = redis.options;
    assert.deepEqual(o.sentinels, [
      { host: 's1', port: 26379 },
      { host: '10.0.0.2', port: 26380 },
    ]);
    assert.equal(o.name, 'main');
    assert.equal(o.username, 'app');
    assert.equal(o.password, 'p@ss');
    assert.equal(o.db, 3);
    redis.disconnect();
    const plain = connectRedis('redis://:secret@h:6390/1', { lazyConnect: true }) as Redis;
    assert.equal(plain.options.port, 6390);
    assert.equal(plain.options.password, 'secret');
    assert.equal(plain.options.db, 1);
    plain.disconnect();
  });

  test('messages show a URL without its password', () => {
    assert.equal(redactUrl('redis+sentinel://app:pw@s1:26379/main'), 'redis+sentinel://***@s1:26379/main');
    assert.equal(redactUrl('redis://h:6379'), 'redis://h:6379');
  });
});
