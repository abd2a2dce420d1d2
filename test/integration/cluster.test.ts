import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeClients, connectClient, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';

describe('cluster over Redis', { skip: skipWithoutRedis }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await closeClients();
    await redis?.stop();
  });

  async function node(name: string, prefix: string): Promise<TestBroker> {
    return startBroker({ clusterRedis: redis.url, clusterNodeId: name, clusterPrefix: prefix, sysInterval: 0 });
  }

  test('a message published on one node reaches a subscriber on another', async () => {
    const a = await node('a', 't1');
    const b = await node('b', 't1');
    try {
      const sub = await connectClient(b.port, { clientId: 's1' });
      await sub.subscribeAsync('x/+', { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
      const pub = await connectClient(a.port, { clientId: 'p1' });
      const got = nextMessages(sub, 1);
      await pub.publishAsync('x/1', 'hello', { qos: 1 });
      const [m] = await got;
      assert.equal(m?.payload.toString(), 'hello');
    } finally {
      await closeClients();
      await a.close();
      await b.close();
    }
  });
});
