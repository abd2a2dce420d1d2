import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { connackOf, connectClient, type TestBroker, startBroker } from '../helpers/broker.js';
import { eventually, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, poll, routesKnown } from '../helpers/cluster.js';

/** What of a node's cluster link the test below reaches into: a takeover request it ignores stands for one lost in an outage. */
interface ClusterLink {
  ownership: { handOver(...args: unknown[]): void };
}

function clusterOf(node: TestBroker): ClusterLink {
  return (node.broker as unknown as { cluster: ClusterLink }).cluster;
}

describe('after Redis restarts empty, the nodes record again which node holds each client id', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();
  const persistent = { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } } as const;

  test('[MQTT-3.1.4-3] [MQTT-3.2.2-3] a client whose node held it before Redis restarted empty resumes its session on another node, with what was queued for it; a client still connected there has that connection closed', CLUSTER_TEST, async () => {
    const own = await startRedis();
    const prefix = h.prefix();
    const opts = { clusterRedis: own.url, clusterPrefix: prefix, sysInterval: 0 };
    const a: TestBroker = await startBroker({ ...opts, clusterNodeId: 'oa' });
    h.nodes.push(a);
    const b: TestBroker = await startBroker({ ...opts, clusterNodeId: 'ob' });
    h.nodes.push(b);
    let again: TestRedis | undefined;
    let ask: Redis | undefined;
    try {
      const mover = await connectClient(a.port, { clientId: 'o-mover', ...persistent });
      await mover.subscribeAsync('o/#', { qos: 1 });
      const stayer = await connectClient(a.port, { clientId: 'o-stayer', ...persistent, reconnectPeriod: 0 });
      await stayer.subscribeAsync('o/#', { qos: 1 });
      let stayerClosed = false;
      stayer.once('close', () => (stayerClosed = true));
      await routesKnown(b, 1);
      await own.stop();
      again = await startRedis(own.port);
      // both nodes are back in the empty Redis, with their routes
      assert.ok(await eventually(() => b.broker.stats.cluster?.remoteRoutes === 1 && b.broker.stats.cluster.nodes === 2, 8000), 'routes after the restart');
      ask = new Redis(again.url);
      const holder = (id: string): Promise<string | null> => (ask as Redis).get(`${prefix}:client:${id}`);
      assert.ok(await poll(async () => (await holder('o-mover')) === 'oa' && (await holder('o-stayer')) === 'oa', 5000), 'Redis records again that the node holds its clients');

      await mover.endAsync();
      const pub = await connectClient(b.port, { clientId: 'o-pub', protocolVersion: 5 });
      for (let i = 0; i < 5; i++) await pub.publishAsync('o/1', `q${i}`, { qos: 1 });
      assert.ok(await eventually(() => a.broker.stats.queued >= 5, 3000), 'queued on the node that holds the offline session');
      const received: string[] = [];
      const moved = await connectClient(b.port, { clientId: 'o-mover', ...persistent }, (c) => c.on('message', (t, payload) => t === 'o/1' && received.push(payload.toString())));
      assert.equal(connackOf(moved).sessionPresent, true, 'the session moved with its client');
      assert.ok(await eventually(() => received.length >= 5, 3000), `received ${received.join()}`);
      assert.deepEqual(received, ['q0', 'q1', 'q2', 'q3', 'q4']);

      const takeover = await connectClient(b.port, { clientId: 'o-stayer', ...persistent });
      assert.equal(connackOf(takeover).sessionPresent, true);
      assert.ok(await eventually(() => stayerClosed, 3000), 'the connection on the other node is closed');
      assert.equal(await holder('o-stayer'), 'ob');
    } finally {
      ask?.disconnect();
      await h.closeNodes();
      await again?.stop();
    }
  });

  test('[MQTT-3.1.4-3] a client that connected to the other node during the outage keeps that connection; the old one here is closed with 0x8E and its queued messages follow it', CLUSTER_TEST, async () => {
    const own = await startRedis();
    const prefix = h.prefix();
    const opts = { clusterRedis: own.url, clusterPrefix: prefix, sysInterval: 0 };
    const a: TestBroker = await startBroker({ ...opts, clusterNodeId: 'na' });
    h.nodes.push(a);
    const b: TestBroker = await startBroker({ ...opts, clusterNodeId: 'nb' });
    h.nodes.push(b);
    const ask = new Redis(own.url);
    const { raw: old } = await rawConnect(a.port, 5, { clientId: 'n-dup', clean: false, properties: { sessionExpiryInterval: 300, receiveMaximum: 1 } });
    try {
      await rawSubscribe(old, 5, 1, [{ topic: 'n/#', qos: 1 }]);
      const pub = await connectClient(a.port, { clientId: 'n-pub', protocolVersion: 5 });
      for (let i = 0; i < 3; i++) await pub.publishAsync('n/1', `q${i}`, { qos: 1 });
      // q0 is in flight, unacknowledged; q1 and q2 wait behind it
      assert.equal((await expectPacket(old, 'publish')).payload?.toString(), 'q0');
      assert.ok(await eventually(() => a.broker.stats.queued >= 2, 3000), 'queued on the old connection\'s node');

      // the takeover request of the other node is lost, as in an outage of this node's Redis link
      const link = clusterOf(a);
      link.ownership.handOver = () => undefined;
      const received: string[] = [];
      const newer = await connectClient(b.port, { clientId: 'n-dup', ...persistent }, (c) => c.on('message', (t, payload) => t === 'n/1' && received.push(payload.toString())));
      let newerClosed = false;
      newer.once('close', () => (newerClosed = true));
      delete (link.ownership as Partial<ClusterLink['ownership']>).handOver;
      assert.equal(await ask.get(`${prefix}:client:n-dup`), 'nb');

      // the nodes' subscriber links drop and come back: each syncs again as after an outage
      const subscribers = (await ask.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
      for (const id of subscribers.split('\n').map((line) => /\bid=(\d+)/.exec(line)?.[1])) if (id !== undefined) await ask.call('CLIENT', 'KILL', 'ID', id);

      const disconnect = await expectPacket(old, 'disconnect', 8000);
      assert.equal(disconnect.reasonCode, 0x8e, 'the old connection is taken over');
      assert.ok(await old.waitClosed(3000), 'the old connection closes');
      assert.ok(await eventually(() => received.length >= 3, 5000), `received ${received.join()}`);
      assert.deepEqual(received, ['q0', 'q1', 'q2']);
      assert.equal(newerClosed, false, 'the newer connection stays');
      assert.equal(newer.connected, true);
      assert.equal(await ask.get(`${prefix}:client:n-dup`), 'nb', 'the other node holds the client id');
    } finally {
      old.close();
      ask.disconnect();
      await h.closeNodes();
      await own.stop();
    }
  });
});
