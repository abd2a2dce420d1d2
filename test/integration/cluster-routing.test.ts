import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { collectFor, connectClient, faultLog, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { FaultyStore } from '../helpers/faulty-store.js';
import { eventually } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, missedAfterSuback, routesKnown } from '../helpers/cluster.js';

describe('a cluster routes messages, retained messages and shared subscriptions between nodes', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('[MQTT-4.5.0-1] a message published on one node reaches the matching subscribers on the others, QoS 0, 1 and 2, 3.1.1 and 5.0', CLUSTER_TEST, async () => {
    const [a, b, c] = (await h.cluster(3)) as [TestBroker, TestBroker, TestBroker];
    const s4 = await connectClient(b.port, { clientId: 'sub4', protocolVersion: 4 });
    const s5 = await connectClient(c.port, { clientId: 'sub5', protocolVersion: 5 });
    await s4.subscribeAsync('plant/+/temp', { qos: 2 });
    await s5.subscribeAsync('plant/#', { qos: 2 });
    await routesKnown(a, 2);
    const pub = await connectClient(a.port, { clientId: 'pub', protocolVersion: 5 });
    const got4 = nextMessages(s4, 3);
    const got5 = nextMessages(s5, 3);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync('plant/1/temp', `q${qos}`, { qos });
    for (const got of [await got4, await got5]) {
      assert.deepEqual(got.map((m) => m.payload.toString()), ['q0', 'q1', 'q2']);
      assert.deepEqual(got.map((m) => m.packet.qos), [0, 1, 2]);
    }
  });

  test('[MQTT-4.6.0-6] messages from one publisher arrive at a subscriber on another node in the order they were published', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'ord-sub' });
    await sub.subscribeAsync('ord', { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'ord-pub' });
    const got = nextMessages(sub, 500, 10_000);
    for (let i = 0; i < 500; i++) pub.publish('ord', String(i), { qos: (i % 2) as 0 | 1 });
    assert.deepEqual((await got).map((m) => Number(m.payload.toString())), Array.from({ length: 500 }, (_, i) => i));
  });

  test('5.0 properties, message expiry and No Local ([MQTT-3.8.3-3]) hold across nodes', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'props-sub', protocolVersion: 5 });
    await sub.subscribeAsync('req/#', { qos: 1 });
    // the same client id cannot be on two nodes, so No Local is checked with the publisher's id on the receiving node
    const self = await connectClient(b.port, { clientId: 'self', protocolVersion: 5 });
    await self.subscribeAsync('req/#', { qos: 1, nl: true });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'self-pub', protocolVersion: 5 });
    const got = nextMessages(sub, 1);
    const selfGot = collectFor(self, 300);
    await pub.publishAsync('req/1', 'x', {
      qos: 1,
      properties: { userProperties: { k: 'v' }, correlationData: Buffer.from([1, 2, 3]), responseTopic: 'resp/1', contentType: 'text/plain', messageExpiryInterval: 60, payloadFormatIndicator: true },
    });
    const [m] = await got;
    const p = m?.packet.properties;
    assert.deepEqual({ ...p?.userProperties }, { k: 'v' });
    assert.deepEqual(p?.correlationData, Buffer.from([1, 2, 3]));
    assert.equal(p?.responseTopic, 'resp/1');
    assert.equal(p?.contentType, 'text/plain');
    assert.ok(p?.messageExpiryInterval !== undefined && p.messageExpiryInterval <= 60 && p.messageExpiryInterval >= 59);
    // a subscriber without No Local on the receiving node gets it; only the publisher's own id is skipped
    assert.equal((await selfGot).length, 1);
  });

  test('a message goes only to nodes with a matching subscriber, and stops going once the last one unsubscribes', CLUSTER_TEST, async () => {
    const [a, b, c] = (await h.cluster(3)) as [TestBroker, TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'only-b' });
    await sub.subscribeAsync('only/#', { qos: 0 });
    await routesKnown(a, 1);
    await routesKnown(c, 1);
    const pub = await connectClient(a.port, { clientId: 'only-pub' });
    const got = nextMessages(sub, 10);
    for (let i = 0; i < 10; i++) await pub.publishAsync('only/x', String(i), { qos: 1 });
    await got;
    assert.equal(b.broker.stats.cluster?.received, 10);
    assert.equal(c.broker.stats.cluster?.received, 0, 'a node without subscribers is not sent the messages');
    assert.equal(a.broker.stats.cluster?.forwarded, 10);
    await sub.unsubscribeAsync('only/#');
    await routesKnown(a, 0);
    for (let i = 0; i < 10; i++) await pub.publishAsync('only/x', String(i), { qos: 1 });
    assert.equal(a.broker.stats.cluster?.forwarded, 10, 'nothing forwarded once no node subscribes');
    const http = await a.broker.listenHttp({ port: 0 });
    const text = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
    assert.match(text, /^midge_cluster_nodes 3$/m);
    assert.match(text, /^midge_cluster_messages_forwarded_total 10$/m);
    // docs/operations.md lists exactly the cluster metrics a node serves
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/operations.md', import.meta.url)), 'utf8');
    const table = doc.slice(doc.indexOf('## Cluster metrics'), doc.indexOf('## `$SYS` topics'));
    const documented = [...new Set([...table.matchAll(/`(midge_cluster_[a-z_]+)`/g)].map((m) => m[1]))].sort();
    const served = text.split('\n').filter((l) => l.startsWith('# TYPE midge_cluster_')).map((l) => l.split(' ')[2]).sort();
    assert.deepEqual(documented, served);
  });

  test('the admin API shows the cluster (every node, its filters, the bytes waiting for it) and which node holds a client id; a single node says it is none', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'where' });
    await sub.subscribeAsync(['w/#', 'x/+'], { qos: 1 });
    await routesKnown(a, 2);
    const http = await a.broker.listenHttp({ port: 0, adminToken: 'tok' });
    const get = (path: string): Promise<Response> => fetch(`http://127.0.0.1:${http.port}/api/v1${path}`, { headers: { authorization: 'Bearer tok' } });
    const view = (await (await get('/cluster')).json()) as { nodeId: string; nodes: Array<{ id: string; self: boolean; lastSeenMs: number; filters: number; inboxBytes: number }> };
    assert.equal(view.nodeId, 'n0');
    assert.deepEqual(view.nodes.map((n) => [n.id, n.self, n.filters, n.inboxBytes]).sort(), [
      ['n0', true, 0, 0],
      ['n1', false, 2, 0],
    ]);
    assert.ok(view.nodes.every((n) => n.lastSeenMs >= 0 && n.lastSeenMs < 3000), JSON.stringify(view.nodes));
    assert.deepEqual(await (await get('/cluster/clients/where')).json(), { clientId: 'where', node: 'n1' });
    const missing = await get('/cluster/clients/nobody');
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: 'no node holds client "nobody"' });
    const single = await startBroker();
    h.nodes.push(single);
    const singleHttp = await single.broker.listenHttp({ port: 0, adminToken: 'tok' });
    const none = await fetch(`http://127.0.0.1:${singleHttp.port}/api/v1/cluster`, { headers: { authorization: 'Bearer tok' } });
    assert.equal(none.status, 404);
    assert.match(((await none.json()) as { error: string }).error, /not a node of a cluster/);
  });

  test('[MQTT-3.8.4-1] a SUBACK comes once the other nodes know of the subscription: a message published on another node right after it is delivered', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'quick-sub', protocolVersion: 5 });
    const pub = await connectClient(a.port, { clientId: 'quick-pub', protocolVersion: 5 });
    assert.deepEqual(await missedAfterSuback(sub, pub, 'quick', 30), [], 'published right after the SUBACK and not delivered');
  });

  test('[MQTT-3.3.1-5] [MQTT-3.3.1-6] a retained message set on one node is sent to subscribers on any node, and cleared everywhere by an empty one', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const pub = await connectClient(a.port, { clientId: 'ret-pub' });
    await pub.publishAsync('ret/1', 'kept', { qos: 1, retain: true });
    await pub.publishAsync('ret/2', 'gone', { qos: 1, retain: true });
    assert.ok(await eventually(() => b.broker.stats.retained === 2));
    const sub = await connectClient(b.port, { clientId: 'ret-sub' });
    const got = nextMessages(sub, 2);
    await sub.subscribeAsync('ret/#', { qos: 1 });
    assert.deepEqual((await got).map((m) => m.payload.toString()).sort(), ['gone', 'kept']);
    // cleared on the other node
    const other = await connectClient(b.port, { clientId: 'ret-clear' });
    await other.publishAsync('ret/2', '', { qos: 1, retain: true });
    assert.ok(await eventually(() => a.broker.stats.retained === 1));
    const late = await connectClient(a.port, { clientId: 'ret-late' });
    const lateGot = collectFor(late, 300);
    await late.subscribeAsync('ret/#', { qos: 1 });
    assert.deepEqual((await lateGot).map((m) => m.payload.toString()), ['kept']);
  });

  test('a node that joins later has the retained messages set before it came', CLUSTER_TEST, async () => {
    const [a] = (await h.cluster(1)) as [TestBroker];
    const pub = await connectClient(a.port, { clientId: 'join-pub' });
    for (let i = 0; i < 50; i++) await pub.publishAsync(`join/${i}`, `v${i}`, { qos: 1, retain: true });
    const prefix = h.lastPrefix();
    const late = await startBroker({ clusterRedis: h.redis.url, clusterNodeId: 'late', clusterPrefix: prefix, sysInterval: 0 });
    h.nodes.push(late);
    assert.equal(late.broker.stats.retained, 50);
  });

  test('two nodes setting the same retained topic at once end on the same message', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const pa = await connectClient(a.port, { clientId: 'race-a' });
    const pb = await connectClient(b.port, { clientId: 'race-b' });
    await Promise.all(Array.from({ length: 50 }, (_, i) => [pa.publishAsync('race', `a${i}`, { qos: 1, retain: true }), pb.publishAsync('race', `b${i}`, { qos: 1, retain: true })]).flat());
    {
      // every node's retained message for the topic is the one Redis holds last
      const read = async (n: TestBroker): Promise<string> => {
        const c = await connectClient(n.port, { clientId: `race-read-${n.port}` });
        const got = nextMessages(c, 1);
        await c.subscribeAsync('race', { qos: 0 });
        return (await got)[0]?.payload.toString() ?? '';
      };
      await new Promise((r) => setTimeout(r, 200));
      const [va, vb] = [await read(a), await read(b)];
      assert.equal(va, vb);
      assert.ok(/^[ab]49$/.test(va), va);
    }
  });

  test('a shared subscription with members on two nodes gets each message once, and both nodes take a share', CLUSTER_TEST, async () => {
    const [a, b, c] = (await h.cluster(3)) as [TestBroker, TestBroker, TestBroker];
    const ma = await connectClient(a.port, { clientId: 'member-a', protocolVersion: 5 });
    const mb = await connectClient(b.port, { clientId: 'member-b', protocolVersion: 5 });
    await ma.subscribeAsync('$share/g/jobs/#', { qos: 1 });
    await mb.subscribeAsync('$share/g/jobs/#', { qos: 1 });
    await routesKnown(c, 2);
    await routesKnown(a, 1);
    const pub = await connectClient(c.port, { clientId: 'jobs-pub', protocolVersion: 5 });
    const gotA = collectFor(ma, 1500);
    const gotB = collectFor(mb, 1500);
    for (let i = 0; i < 100; i++) await pub.publishAsync('jobs/x', String(i), { qos: 1 });
    const [ra, rb] = [await gotA, await gotB];
    const all = [...ra, ...rb].map((m) => Number(m.payload.toString())).sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: 100 }, (_, i) => i), 'each message exactly once');
    assert.ok(ra.length > 0 && rb.length > 0, `a: ${ra.length}, b: ${rb.length}`);
  });

  test('a fault met routing one message from another node is logged; the messages after it in the same batch still arrive', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const log = faultLog();
    const store = new FaultyStore();
    const node = (id: string, extra: Record<string, unknown>) => startBroker({ clusterRedis: h.redis.url, clusterNodeId: id, clusterPrefix: prefix, sysInterval: 0, ...extra });
    const a = await node('n0', {});
    h.nodes.push(a);
    const b = await node('n1', { store, logger: log.logger });
    h.nodes.push(b);
    // an offline persistent session on b: what reaches it is stored, and that store fails
    const victim = await connectClient(b.port, { clientId: 'victim', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 } });
    await victim.subscribeAsync('v/#', { qos: 1 });
    await victim.endAsync();
    const watcher = await connectClient(b.port, { clientId: 'watcher' });
    await watcher.subscribeAsync('w/#', { qos: 1 });
    await routesKnown(a, 2);
    store.failMessageQueued = (clientId) => clientId === 'victim';
    const got = nextMessages(watcher, 1);
    // published in one turn, the two go to b in one batch, the faulty one first
    await Promise.all([a.broker.publish({ topic: 'v/1', payload: 'lost', qos: 1 }), a.broker.publish({ topic: 'w/1', payload: 'after', qos: 1 })]);
    assert.equal((await got)[0]?.payload.toString(), 'after');
    assert.ok(log.entries.some((l) => l.msg === 'internal error in delivering a message to the offline session victim; the broker goes on' && l.err?.message === 'store fault: messageQueued'), log.faults.join('\n'));
  });
});
