import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connectRedis, redactUrl, redisUrlProblem } from '../../../src/cluster/redis-target.js';

describe('the Redis a cluster uses, from its URL', () => {
  test('redis://, rediss:// and redis+sentinel:// URLs are taken; anything else says what is expected', () => {
    for (const ok of ['redis://127.0.0.1:6379', 'rediss://:pw@redis.internal:6380/2', 'redis+sentinel://s1:26379/main', 'redis+sentinel://user:pw@s1:26379,10.0.0.2:26380/main/3']) {
      assert.equal(redisUrlProblem(ok), undefined, ok);
    }
    assert.match(redisUrlProblem('http://x') ?? '', /^must be a redis:\/\/, rediss:\/\/ or redis\+sentinel:\/\//);
    assert.match(redisUrlProblem('redis+sentinel://s1:26379') ?? '', /^must be/, 'a sentinel URL names its master');
    assert.equal(redisUrlProblem('redis+sentinel://s1:26379,s2/main'), 'names a sentinel "s2" that is not host:port');
  });

  test('a sentinel URL becomes the sentinels, the master name, its credentials and database', () => {
    const redis = connectRedis('redis+sentinel://app:p%40ss@s1:26379,10.0.0.2:26380/main/3', { lazyConnect: true });
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
    const plain = connectRedis('redis://:secret@h:6390/1', { lazyConnect: true });
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
