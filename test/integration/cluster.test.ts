import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, test } from 'node:test';
import { createBroker } from '../../src/index.js';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { MqttClient } from 'mqtt';
import { closeClients, collectFor, connackOf, connectClient, delay, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { killMidges, MIDGE_MAIN, spawnMidge } from '../helpers/cli.js';
import mqttPacket from 'mqtt-packet';
import { RawClient } from '../helpers/raw-client.js';
import { eventually, expectPacket, rawConnect, rawSubscribe, receiveAcking, type Loose } from '../helpers/raw-session.js';
import { skipWithoutRedis, startRedis, startRedisCluster, startSentinel, type TestRedis } from '../helpers/redis.js';

describe('cluster of nodes sharing a Redis server', { skip: skipWithoutRedis }, () => {
  let redis: TestRedis;
  const nodes: TestBroker[] = [];
  let prefixes = 0;

  before(async () => {
    redis = await startRedis();
  });
  /** Closes the tests' clients and nodes (before the Redis servers a test started itself). */
  async function closeNodes(): Promise<void> {
    await closeClients();
    await Promise.all(nodes.splice(0).map((n) => n.close()));
  }
  afterEach(closeNodes);
  after(async () => {
    killMidges();
    await redis?.stop();
  });

  /** `count` nodes of a cluster of their own (a fresh key prefix per test). */
  async function cluster(count: number, options: Record<string, unknown> = {}): Promise<TestBroker[]> {
    const prefix = `c${++prefixes}`;
    const out: TestBroker[] = [];
    for (let i = 0; i < count; i++) {
      const n = await startBroker({ clusterRedis: redis.url, clusterNodeId: `n${i}`, clusterPrefix: prefix, sysInterval: 0, ...options });
      nodes.push(n);
      out.push(n);
    }
    return out;
  }

  /** `rounds` times: `sub` subscribes to a new topic and `pub` publishes to it right after the SUBACK; returns the rounds whose message did not come. */
  async function missedAfterSuback(sub: MqttClient, pub: MqttClient, prefix: string, rounds: number): Promise<number[]> {
    const missed: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await sub.subscribeAsync(`${prefix}/${i}`, { qos: 1 });
      const got = nextMessages(sub, 1, 1000).catch(() => missed.push(i));
      await pub.publishAsync(`${prefix}/${i}`, String(i), { qos: 1 });
      await got;
    }
    return missed;
  }

  /** Polls an async check every 100 ms (a rejection counts as false) until it holds or `ms` pass. */
  async function poll(check: () => Promise<boolean>, ms: number): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end; await delay(100)) if (await check().catch(() => false)) return true;
    return false;
  }

  /**
   * Whether a message published on `node` reaches `sub` within 20 s, publishing again from a new
   * client each second, as clients cut off during a Redis failover connect again and resend.
   */
  function deliveredAgain(node: TestBroker, sub: MqttClient, topic: string): Promise<boolean> {
    return poll(async () => {
      const again = await connectClient(node.port, { clientId: `again-${Date.now()}` });
      const got = nextMessages(sub, 1, 1000).then(
        (m) => m[0]?.payload.toString() === 'after',
        () => false,
      );
      again.publish(topic, 'after', { qos: 1 });
      return got;
    }, 20_000);
  }

  /** Waits until `node` knows `count` routes of other nodes. */
  async function routesKnown(node: TestBroker, count: number): Promise<void> {
    assert.ok(await eventually(() => node.broker.stats.cluster?.remoteRoutes === count, 3000), `routes known: ${node.broker.stats.cluster?.remoteRoutes}, expected ${count}`);
  }

  test('[MQTT-4.5.0-1] a message published on one node reaches the matching subscribers on the others, QoS 0, 1 and 2, 3.1.1 and 5.0', async () => {
    const [a, b, c] = (await cluster(3)) as [TestBroker, TestBroker, TestBroker];
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

  test('[MQTT-4.6.0-6] messages from one publisher arrive at a subscriber on another node in the order they were published', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'ord-sub' });
    await sub.subscribeAsync('ord', { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'ord-pub' });
    const got = nextMessages(sub, 500, 10_000);
    for (let i = 0; i < 500; i++) pub.publish('ord', String(i), { qos: (i % 2) as 0 | 1 });
    assert.deepEqual((await got).map((m) => Number(m.payload.toString())), Array.from({ length: 500 }, (_, i) => i));
  });

  test('5.0 properties, message expiry and No Local ([MQTT-3.8.3-3]) hold across nodes', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
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

  test('a message goes only to nodes with a matching subscriber, and stops going once the last one unsubscribes', async () => {
    const [a, b, c] = (await cluster(3)) as [TestBroker, TestBroker, TestBroker];
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

  test('the admin API shows the cluster (every node, its filters, the bytes waiting for it) and which node holds a client id; a single node says it is none', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
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
    nodes.push(single);
    const h = await single.broker.listenHttp({ port: 0, adminToken: 'tok' });
    const none = await fetch(`http://127.0.0.1:${h.port}/api/v1/cluster`, { headers: { authorization: 'Bearer tok' } });
    assert.equal(none.status, 404);
    assert.match(((await none.json()) as { error: string }).error, /not a node of a cluster/);
  });

  test('[MQTT-3.8.4-1] a SUBACK comes once the other nodes know of the subscription: a message published on another node right after it is delivered', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const sub = await connectClient(b.port, { clientId: 'quick-sub', protocolVersion: 5 });
    const pub = await connectClient(a.port, { clientId: 'quick-pub', protocolVersion: 5 });
    assert.deepEqual(await missedAfterSuback(sub, pub, 'quick', 30), [], 'published right after the SUBACK and not delivered');
  });

  test('[MQTT-3.3.1-5] [MQTT-3.3.1-6] a retained message set on one node is sent to subscribers on any node, and cleared everywhere by an empty one', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
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

  test('a node that joins later has the retained messages set before it came', async () => {
    const [a] = (await cluster(1)) as [TestBroker];
    const pub = await connectClient(a.port, { clientId: 'join-pub' });
    for (let i = 0; i < 50; i++) await pub.publishAsync(`join/${i}`, `v${i}`, { qos: 1, retain: true });
    const prefix = `c${prefixes}`;
    const late = await startBroker({ clusterRedis: redis.url, clusterNodeId: 'late', clusterPrefix: prefix, sysInterval: 0 });
    nodes.push(late);
    assert.equal(late.broker.stats.retained, 50);
  });

  test('two nodes setting the same retained topic at once end on the same message', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
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

  test('a shared subscription with members on two nodes gets each message once, and both nodes take a share', async () => {
    const [a, b, c] = (await cluster(3)) as [TestBroker, TestBroker, TestBroker];
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

  test('[MQTT-3.1.4-3] a client connecting to another node closes its connection on the first (DISCONNECT 0x8E) and resumes its session there, subscriptions and queued messages with it', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const first = await connectClient(a.port, { clientId: 'mover', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    await first.subscribeAsync('move/#', { qos: 1 });
    const disconnected = new Promise<number | undefined>((resolve) => first.once('disconnect', (p) => resolve(p.reasonCode)));
    const second = await connectClient(b.port, { clientId: 'mover', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(connackOf(second).sessionPresent, true, '[MQTT-3.2.2-3] the session moved with the client');
    assert.equal(await disconnected, 0x8e);
    assert.ok(await eventually(() => a.broker.stats.sessions === 0), 'the session left the first node');
    await routesKnown(a, 1);
    const got = nextMessages(second, 1);
    const pub = await connectClient(a.port, { clientId: 'move-pub' });
    await pub.publishAsync('move/1', 'after', { qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'after');
    // offline on b with queued messages, then back on a: the queue comes along
    await second.endAsync();
    for (let i = 0; i < 5; i++) await pub.publishAsync('move/2', `q${i}`, { qos: 1 });
    assert.ok(await eventually(() => b.broker.stats.queued === 5));
    // raw: the queued messages follow the CONNACK at once
    const back = await rawConnect(a.port, 5, { clientId: 'mover', clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(back.connack.sessionPresent, true);
    assert.deepEqual(await receiveAcking(back.raw, 5, 5), ['q0', 'q1', 'q2', 'q3', 'q4']);
    back.raw.close();
    assert.ok(await eventually(() => b.broker.stats.sessions === 0), 'the session left the second node');
    assert.equal(a.broker.stats.cluster?.sessionsTakenOver, 1);
    assert.equal(b.broker.stats.cluster?.sessionsHandedOver, 1);
  });

  /**
   * Moves a session from one node to another while a publisher on a third node and one on the
   * new node publish to it (QoS 1, 10 in flight each), and checks that the client gets every
   * message once, in each publisher's order. With `bystander`, the new node has a subscriber of
   * the same filter already, so messages went there before the session did.
   */
  async function moveWhilePublishing(bystander: boolean): Promise<void> {
    const [a, b, c] = (await cluster(3)) as [TestBroker, TestBroker, TestBroker];
    const options = { clientId: 'moving', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await connectClient(a.port, options);
    await first.subscribeAsync('moving/#', { qos: 1 });
    if (bystander) await (await connectClient(b.port, { clientId: 'moving-bystander' })).subscribeAsync('moving/#', { qos: 1 });
    await routesKnown(c, bystander ? 2 : 1);
    await routesKnown(b, 1);
    const received = new Set<string>();
    // what the client got, in the order it got it (resends of what was in flight left out)
    const arrivals: string[] = [];
    first.on('message', (_t, payload) => {
      received.add(payload.toString());
      arrivals.push(payload.toString());
    });
    // one publisher on a third node, one on the node the session moves to: before the move, the
    // latter's messages reach the session through the old node; after it, only where it is
    const publishers = await Promise.all([connectClient(c.port, { clientId: 'moving-pub-c' }), connectClient(b.port, { clientId: 'moving-pub-b' })]);
    const sent = [0, 0];
    let publishing = true;
    // 10 messages in flight per publisher: some are always on their way while the session moves
    const publishing$ = publishers.map(async (pub, k) => {
      const inFlight = new Set<Promise<unknown>>();
      while (publishing) {
        const p = pub.publishAsync('moving/x', `${k}:${sent[k]!++}`, { qos: 1 }).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= 10) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    });
    await delay(200);
    let doubled = 0;
    // what the old node sent on comes right behind the CONNACK
    const second = await connectClient(b.port, options, (client) =>
      client.on('message', (_t, payload, packet) => {
        const n = payload.toString();
        // a resend of what was in flight to the first connection says so (DUP); anything else came twice
        if (received.has(n) && !packet.dup) doubled++;
        if (!packet.dup) arrivals.push(n);
        received.add(n);
      }),
    );
    assert.equal(connackOf(second).sessionPresent, true);
    await delay(300);
    publishing = false;
    await Promise.all(publishing$);
    // past the old node's linger (1 s), when what reached only it has followed the session
    await delay(1500);
    const missing = sent.flatMap((count, k) => Array.from({ length: count }, (_, i) => `${k}:${i}`)).filter((m) => !received.has(m));
    assert.deepEqual(missing, [], `lost of ${sent.join(' + ')}`);
    assert.equal(doubled, 0, 'delivered twice without DUP: a message that reached both nodes was sent on from the old one');
    const late = arrivals.filter((m, i) => {
      const [k, n] = m.split(':');
      return arrivals.slice(0, i).some((before) => before.split(':')[0] === k && Number(before.split(':')[1]) > Number(n));
    });
    assert.deepEqual(late, [], 'arrived after a later message of the same publisher');
  }

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] no QoS 1 message published on a third node, or on the node a session moves to, while it moves is lost, delivered twice or out of order', async () => {
    await moveWhilePublishing(false);
  });

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] the same when the node the session moves to already had a subscriber of its filter (the messages went there before the session did)', async () => {
    await moveWhilePublishing(true);
  });

  test('[MQTT-4.6.0-6] a node that learns late of a session move (it was stopped) still has its earlier messages for the session delivered ahead of its later ones', async () => {
    const prefix = `c${++prefixes}`;
    const [a, b] = await Promise.all(['n0', 'n1'].map((id) => startBroker({ clusterRedis: redis.url, clusterNodeId: id, clusterPrefix: prefix, sysInterval: 0 })));
    nodes.push(a!, b!);
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', redis.url, '--cluster-node-id', 'n2', '--cluster-prefix', prefix]);
    const options = { clientId: 'late-learner', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } };
    const arrivals: string[] = [];
    const first = await connectClient(a!.port, options, (client) => client.on('message', (_t, payload) => arrivals.push(payload.toString())));
    await first.subscribeAsync('late-order/#', { qos: 1 });
    const pub = await connectClient(port, { clientId: 'late-order-pub' });
    // the third node knows the route once a message published there arrives
    const known = nextMessages(first, 1);
    await pub.publishAsync('late-order/x', '-1', { qos: 1 });
    await known;
    let sent = 0;
    let publishing = true;
    const inFlight = new Set<Promise<unknown>>();
    const publishing$ = (async () => {
      while (publishing) {
        const p = pub.publishAsync('late-order/x', String(sent++), { qos: 1 }).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= 10) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    })();
    await delay(200);
    // stopped while the session moves: its next messages are routed by what it knew before
    child.kill('SIGSTOP');
    let second: Awaited<ReturnType<typeof connectClient>>;
    try {
      const connecting = connectClient(b!.port, options, (client) => client.on('message', (_t, payload, packet) => !packet.dup && arrivals.push(payload.toString())));
      await delay(300);
      child.kill('SIGCONT');
      second = await connecting;
    } finally {
      child.kill('SIGCONT');
    }
    assert.equal(connackOf(second).sessionPresent, true);
    await delay(300);
    publishing = false;
    await publishing$;
    await delay(1500);
    const got = arrivals.map(Number).filter((n) => n >= 0);
    assert.deepEqual(Array.from({ length: sent }, (_, i) => i).filter((i) => !got.includes(i)), [], `lost of ${sent}`);
    const late = got.filter((n, i) => got.slice(0, i).some((before) => before > n));
    assert.deepEqual(late, [], 'arrived after a later message');
  });

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] 50 sessions moving to another node at once, while messages for all of them are published there and on a third node, lose, repeat and reorder none', async () => {
    const [a, b, c] = (await cluster(3)) as [TestBroker, TestBroker, TestBroker];
    const count = 50;
    const session = (i: number) => ({ clientId: `mass-${i}`, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } });
    // per client: the messages it got (publisher:number), in order, resends of what was in flight left out
    const got: string[][] = Array.from({ length: count }, () => []);
    const record = (i: number) => (client: MqttClient) => client.on('message', (_t, payload, packet) => !packet.dup && got[i]!.push(payload.toString()));
    await Promise.all(Array.from({ length: count }, async (_, i) => (await connectClient(a.port, session(i), record(i))).subscribeAsync(`mass/${i}`, { qos: 1 })));
    await routesKnown(c, count);
    await routesKnown(b, count);
    const publishers = await Promise.all([connectClient(c.port, { clientId: 'mass-pub-c' }), connectClient(b.port, { clientId: 'mass-pub-b' })]);
    const sent = publishers.map(() => new Array<number>(count).fill(0));
    let publishing = true;
    const publishing$ = publishers.map(async (pub, p) => {
      const inFlight = new Set<Promise<unknown>>();
      for (let k = 0; publishing; k = (k + 1) % count) {
        const done = pub.publishAsync(`mass/${k}`, `${p}:${sent[p]![k]!++}`, { qos: 1 }).finally(() => inFlight.delete(done));
        inFlight.add(done);
        if (inFlight.size >= 20) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    });
    await delay(200);
    const moved = await Promise.all(Array.from({ length: count }, (_, i) => connectClient(b.port, session(i), record(i))));
    assert.ok(moved.every((client) => connackOf(client).sessionPresent));
    await delay(300);
    publishing = false;
    await Promise.all(publishing$);
    await delay(2000);
    const wrong = got.flatMap((messages, i) =>
      sent.flatMap((counts, p) => {
        const numbers = messages.filter((m) => m.startsWith(`${p}:`)).map((m) => Number(m.slice(2)));
        const seen = new Set(numbers);
        const lost = Array.from({ length: counts[i]! }, (_, n) => n).filter((n) => !seen.has(n)).length;
        const twice = numbers.length - seen.size;
        const late = numbers.filter((n, k) => k > 0 && n < numbers[k - 1]!).length;
        return lost + twice + late > 0 ? [`mass-${i} from ${p}: ${lost} lost, ${twice} twice, ${late} out of order of ${counts[i]}`] : [];
      }),
    );
    assert.deepEqual(wrong, []);
  });

  test('[MQTT-4.3.3-10] QoS 2 messages published on the new node as a session moves there reach it once, not also through the old node', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const first = await connectClient(a.port, { clientId: 'self-mover', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    await first.subscribeAsync('self/#', { qos: 2 });
    await routesKnown(b, 1);
    // CONNECT and publishes to its own filter in one write: b routes them as soon as the session
    // is there, while a still holds it subscribed and b's messages still go to a as well
    const raw = await RawClient.open(b.port, 5);
    const count = 20;
    const publishes = Array.from({ length: count }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: 'self/x', payload: Buffer.from(String(i)), qos: 2, messageId: i + 1, retain: false, dup: false }, { protocolVersion: 5 }));
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'self-mover', clean: false, keepalive: 0, properties: { sessionExpiryInterval: 300 } }, { protocolVersion: 5 });
    raw.send(Buffer.concat([connect, ...publishes]));
    const connack = await expectPacket(raw, 'connack');
    assert.equal(connack.sessionPresent, true);
    const times = new Map<string, number>();
    const deadline = Date.now() + 2500;
    for (;;) {
      let p: Loose;
      try {
        p = (await raw.next(Math.max(1, deadline - Date.now()))) as Loose;
      } catch {
        break;
      }
      if (p.cmd === 'pubrec') raw.sendPacket({ cmd: 'pubrel', messageId: p.messageId }, 5);
      if (p.cmd === 'pubrel') raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, 5);
      if (p.cmd !== 'publish') continue;
      const n = p.payload?.toString() ?? '';
      times.set(n, (times.get(n) ?? 0) + 1);
      if (p.qos === 2) raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, 5);
    }
    raw.close();
    const wrong = Array.from({ length: count }, (_, i) => String(i)).filter((n) => times.get(n) !== 1).map((n) => `${n}: ${times.get(n) ?? 0}`);
    assert.deepEqual(wrong, [], 'each message delivered exactly once');
  });

  test('[MQTT-3.1.2-5] a session handed over after the new node gave up waiting (3 s) still delivers its queued messages there', async () => {
    const prefix = `c${++prefixes}`;
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', redis.url, '--cluster-node-id', 'slow', '--cluster-prefix', prefix]);
    const b = await startBroker({ clusterRedis: redis.url, clusterNodeId: 'quick', clusterPrefix: prefix, sysInterval: 0 });
    nodes.push(b);
    const session = { clientId: 'late-mover', clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await rawConnect(port, 5, session);
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'late/#', qos: 1 }]);
    first.raw.close();
    const pub = await connectClient(port, { clientId: 'late-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('late/x', `q${i}`, { qos: 1 });
    const raw = await RawClient.open(b.port, 5);
    // stopped for longer than the handover wait, less than the node timeout
    child.kill('SIGSTOP');
    try {
      raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, keepalive: 0, ...session }, 5);
      const connack = await expectPacket(raw, 'connack', 6000);
      assert.equal(connack.sessionPresent, false, 'no session came in time');
    } finally {
      child.kill('SIGCONT');
    }
    assert.deepEqual(await receiveAcking(raw, 5, 5, 5000), ['q0', 'q1', 'q2', 'q3', 'q4']);
    raw.close();
  });

  test('[MQTT-3.1.2-4] Clean Start on another node ends the session on the first; its will is published ([MQTT-3.1.2-8])', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const watcher = await connectClient(a.port, { clientId: 'will-watch' });
    await watcher.subscribeAsync('wills/#', { qos: 1 });
    await routesKnown(b, 1);
    const first = await connectClient(b.port, { clientId: 'cleaner', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 }, will: { topic: 'wills/cleaner', payload: Buffer.from('gone'), qos: 1, retain: false } });
    await first.subscribeAsync('old/#', { qos: 1 });
    const will = nextMessages(watcher, 1);
    const second = await connectClient(a.port, { clientId: 'cleaner', protocolVersion: 5, clean: true });
    assert.equal((await will)[0]?.payload.toString(), 'gone');
    assert.equal(connackOf(second).sessionPresent, false);
    assert.ok(await eventually(() => b.broker.stats.sessions === 0));
    assert.equal(a.broker.stats.cluster?.sessionsTakenOver, 0);
  });

  test('a will published when a client drops on one node reaches subscribers on another', async () => {
    const [a, b] = (await cluster(2)) as [TestBroker, TestBroker];
    const watcher = await connectClient(b.port, { clientId: 'w2' });
    await watcher.subscribeAsync('status/#', { qos: 1 });
    await routesKnown(a, 1);
    const dev = await connectClient(a.port, { clientId: 'dev', will: { topic: 'status/dev', payload: Buffer.from('offline'), qos: 1, retain: false } });
    const got = nextMessages(watcher, 1);
    (dev as unknown as { stream: { destroy(): void } }).stream.destroy();
    assert.equal((await got)[0]?.payload.toString(), 'offline');
  });

  test('a node that stops leaves at once; a node that dies is dropped after the node timeout, and its clients can connect elsewhere', async () => {
    const prefix = `c${++prefixes}`;
    const a = await startBroker({ clusterRedis: redis.url, clusterNodeId: 'stay', clusterPrefix: prefix, sysInterval: 0 });
    nodes.push(a);
    const b = await startBroker({ clusterRedis: redis.url, clusterNodeId: 'leave', clusterPrefix: prefix, sysInterval: 0 });
    const sb = await connectClient(b.port, { clientId: 'on-leave' });
    await sb.subscribeAsync('leave/#');
    await routesKnown(a, 1);
    assert.equal(a.broker.stats.cluster?.nodes, 2);
    await b.close();
    await routesKnown(a, 0);
    assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 1));

    // a process killed outright says nothing; the heartbeat timeout (5 s) finds it out
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', redis.url, '--cluster-node-id', 'doomed', '--cluster-prefix', prefix, '--log-level', 'info']);
    const sd = await connectClient(port, { clientId: 'on-doomed' });
    await sd.subscribeAsync('doomed/#');
    await routesKnown(a, 1);
    child.kill('SIGKILL');
    assert.ok(await eventually(() => a.broker.stats.cluster?.remoteRoutes === 0 && a.broker.stats.cluster.nodes === 1, 9000), 'dead node dropped');
    // its client id pointed at the dead node: connecting here does not wait for it
    const started = Date.now();
    await connectClient(a.port, { clientId: 'on-doomed' });
    assert.ok(Date.now() - started < 1000);
  });

  test('a node restarted with its store keeps the sessions no other node took, and gives up those whose client connected elsewhere', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'midge-cluster-'));
    const prefix = `c${++prefixes}`;
    const opts = { clusterRedis: redis.url, clusterPrefix: prefix, sysInterval: 0 };
    try {
      const a = await startBroker({ ...opts, clusterNodeId: 'keeper', persistence: 'lmdb', dataDir: dir });
      const b = await startBroker({ ...opts, clusterNodeId: 'other' });
      nodes.push(b);
      for (const id of ['stays', 'moves']) {
        const c = await connectClient(a.port, { clientId: id, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
        await c.subscribeAsync(`${id}/#`, { qos: 1 });
        await c.endAsync();
      }
      await a.close();
      // while the keeper is down, one client connects to the other node: a new session there
      const moved = await connectClient(b.port, { clientId: 'moves', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.equal(connackOf(moved).sessionPresent, false, 'its node is down: a new session');
      const again = await startBroker({ ...opts, clusterNodeId: 'keeper', persistence: 'lmdb', dataDir: dir });
      nodes.push(again);
      assert.equal(again.broker.stats.sessions, 1, 'only the session no other node took');
      const back = await connectClient(again.port, { clientId: 'stays', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.equal(connackOf(back).sessionPresent, true);
      // and a message for it from the other node still finds it
      await routesKnown(b, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a node that falls behind holds the acknowledgements of publishers to it at clusterMaxBacklog, then delivers everything; QoS 0 for it is dropped meanwhile, and counted', async () => {
    const prefix = `c${++prefixes}`;
    const maxBacklog = 65_536;
    // a 3.1.1 publisher cannot be told a Receive Maximum: Midge stops reading it at 20 unacknowledged
    const a = await startBroker({ clusterRedis: redis.url, clusterNodeId: 'ahead', clusterPrefix: prefix, sysInterval: 0, clusterMaxBacklog: maxBacklog, limits: { receiveMaximum: 20 } });
    nodes.push(a);
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', redis.url, '--cluster-node-id', 'behind', '--cluster-prefix', prefix]);
    const sub = await connectClient(port, { clientId: 'fc-sub', protocolVersion: 5 });
    await sub.subscribeAsync('fc/#', { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'fc-pub', protocolVersion: 4 });
    const peek = new Redis(redis.url);
    const count = 800;
    const got = nextMessages(sub, count, 20_000);
    let acked = 0;
    let all: Promise<unknown> | undefined;
    // stopped for less than the node timeout: alive, but reading nothing
    child.kill('SIGSTOP');
    try {
      const payload = Buffer.alloc(512, 0x61);
      all = Promise.all(Array.from({ length: count }, (_, i) => pub.publishAsync('fc/q1', Buffer.concat([Buffer.from(`${i}:`), payload]), { qos: 1 }).then(() => acked++)));
      assert.ok(await eventually(() => (a.broker.stats.cluster?.backlogWaits ?? 0) > 0, 3000), 'the publisher waits');
      await delay(500);
      const waiting = Number(await peek.get(`${prefix}:inbox-bytes:behind`));
      assert.ok(acked < count / 2, `acknowledged while the node read nothing: ${acked} of ${count}`);
      // past the limit, only what the publisher's 20 unacknowledged messages let in
      assert.ok(waiting > maxBacklog && waiting < maxBacklog + 20 * 1024, `bytes waiting for the node: ${waiting}`);
      // from another client: the first one is read no further until its acknowledgements go
      const pub0 = await connectClient(a.port, { clientId: 'fc-pub0' });
      await pub0.publishAsync('fc/q0', 'dropped', { qos: 0 });
      assert.ok(await eventually(() => (a.broker.stats.cluster?.forwardDropped ?? 0) === 1), 'QoS 0 for the node behind is dropped');
    } finally {
      child.kill('SIGCONT');
      peek.disconnect();
    }
    await all;
    assert.equal(acked, count);
    const msgs = await got;
    assert.deepEqual(msgs.map((m) => m.topic), Array.from({ length: count }, () => 'fc/q1'));
    assert.deepEqual(msgs.map((m) => Number(m.payload.toString().split(':')[0])), Array.from({ length: count }, (_, i) => i));
    assert.equal((await collectFor(sub, 200)).length, 0, 'no duplicates');
    const http = await a.broker.listenHttp({ port: 0 });
    const text = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
    assert.match(text, /^midge_cluster_forwards_dropped_total 1$/m);
    assert.match(text, /^midge_cluster_backlog_waits_total [1-9]\d*$/m);
    child.kill('SIGKILL');
  });

  test('messages sent to a node while it restarts wait in Redis and reach its persistent sessions after the restart; their expiry counts the wait', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'midge-cluster-'));
    const prefix = `c${++prefixes}`;
    const nodeArgs = ['--port', '0', '--persistence', 'lmdb', '--data-dir', dir, '--cluster-redis', redis.url, '--cluster-node-id', 'restarts', '--cluster-prefix', prefix];
    try {
      const a = (await cluster(1, { clusterPrefix: prefix }))[0] as TestBroker;
      const first = await spawnMidge(nodeArgs);
      const sessionOptions = { clientId: 'away', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
      const sub = await connectClient(first.port, sessionOptions);
      await sub.subscribeAsync('away/#', { qos: 1 });
      await sub.endAsync();
      await routesKnown(a, 1);
      first.child.kill('SIGKILL');
      const pub = await connectClient(a.port, { clientId: 'away-pub', protocolVersion: 5 });
      await pub.publishAsync('away/short', 'expires', { qos: 1, properties: { messageExpiryInterval: 1 } });
      for (let i = 0; i < 50; i++) await pub.publishAsync('away/kept', String(i), { qos: 1 });
      await delay(1500);
      const second = await spawnMidge(nodeArgs);
      // raw: the queued messages follow the CONNACK at once
      const back = await rawConnect(second.port, 5, { clientId: 'away', clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.equal(back.connack.sessionPresent, true);
      const expected = Array.from({ length: 50 }, (_, i) => String(i));
      assert.deepEqual(await receiveAcking(back.raw, 5, 50), expected, 'all 50 acknowledged messages, and not the expired one');
      back.raw.close();
      second.child.kill('SIGKILL');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('after Redis restarts empty, the nodes register their routes again and put their retained messages back', async () => {
    const own = await startRedis();
    const prefix = `c${++prefixes}`;
    const opts = { clusterRedis: own.url, clusterPrefix: prefix, sysInterval: 0 };
    const a = await startBroker({ ...opts, clusterNodeId: 'ra' });
    nodes.push(a);
    const b = await startBroker({ ...opts, clusterNodeId: 'rb' });
    nodes.push(b);
    let again: TestRedis | undefined;
    try {
      const sub = await connectClient(b.port, { clientId: 'r-sub' });
      await sub.subscribeAsync('r/#', { qos: 1 });
      const pub = await connectClient(a.port, { clientId: 'r-pub' });
      await pub.publishAsync('r/kept', 'k', { qos: 1, retain: true });
      await routesKnown(a, 1);
      assert.ok(await eventually(() => b.broker.stats.retained === 1));
      await own.stop();
      again = await startRedis(own.port);
      // routes come back from both nodes' own sets
      assert.ok(await eventually(() => a.broker.stats.cluster?.remoteRoutes === 1 && a.broker.stats.cluster.nodes === 2, 8000), 'routes after the restart');
      const got = nextMessages(sub, 1);
      await pub.publishAsync('r/live', 'after', { qos: 1 });
      assert.equal((await got)[0]?.payload.toString(), 'after');
      assert.equal(a.broker.stats.retained, 1);
      assert.equal(b.broker.stats.retained, 1);
      const late = await startBroker({ ...opts, clusterNodeId: 'rc' });
      nodes.push(late);
      assert.equal(late.broker.stats.retained, 1, 'the retained message is in Redis again');
    } finally {
      await closeNodes();
      await again?.stop();
    }
  });

  test('[MQTT-4.3.2-4] while Redis is down a QoS 1 message for another node is not acknowledged: the publisher is disconnected (0x80) and its resend after Redis is back is delivered', async () => {
    const own = await startRedis();
    const [a, b] = (await cluster(2, { clusterRedis: own.url })) as [TestBroker, TestBroker];
    let again: TestRedis | undefined;
    try {
      const sub = await connectClient(b.port, { clientId: 'd-sub', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
      await sub.subscribeAsync('d/#', { qos: 1 });
      await routesKnown(a, 1);
      const first = await rawConnect(a.port, 5, { clientId: 'd-pub', clean: false, properties: { sessionExpiryInterval: 300 } });
      await own.stop();
      first.raw.sendPacket({ cmd: 'publish', topic: 'd/1', payload: Buffer.from('kept'), qos: 1, messageId: 7, retain: false, dup: false }, 5);
      const answer = await expectPacket(first.raw, 'disconnect', 10_000);
      assert.equal(answer.reasonCode, 0x80);
      assert.match(String(answer.properties?.reasonString), /^not acknowledged: cluster: /);
      assert.ok((a.broker.stats.cluster?.forwardFailed ?? 0) >= 1);
      again = await startRedis(own.port);
      // the restarted Redis is empty: the publishing node keeps the other's routes until it has registered again
      assert.equal(a.broker.stats.cluster?.remoteRoutes, 1);
      // the client resends what was never acknowledged, as [MQTT-4.4.0-1] has it
      const got = nextMessages(sub, 1, 5000);
      const second = await rawConnect(a.port, 5, { clientId: 'd-pub', clean: false, properties: { sessionExpiryInterval: 300 } });
      second.raw.sendPacket({ cmd: 'publish', topic: 'd/1', payload: Buffer.from('kept'), qos: 1, messageId: 7, retain: false, dup: true }, 5);
      const ack = await expectPacket(second.raw, 'puback', 5000);
      assert.equal(ack.messageId, 7);
      assert.equal((await got)[0]?.payload.toString(), 'kept');
      second.raw.close();
    } finally {
      await closeNodes();
      await again?.stop();
    }
  });

  test('[MQTT-4.3.2-4] with clusterWaitReplicas a QoS 1 message for another node is acknowledged only once a Redis replica has it: with the replica stopped the publisher is disconnected (0x80), and its resend is acknowledged once it runs again', async () => {
    const master = await startRedis();
    const replica = await startRedis(undefined, ['--replicaof', '127.0.0.1', String(master.port)]);
    const askReplica = new Redis(replica.port, '127.0.0.1');
    try {
      assert.ok(await poll(async () => (await askReplica.info('replication')).includes('master_link_status:up'), 10_000), 'the replica is in sync');
      const prefix = `c${++prefixes}`;
      const common = { clusterRedis: master.url, clusterPrefix: prefix, sysInterval: 0 };
      const a = await startBroker({ ...common, clusterNodeId: 'durable', clusterWaitReplicas: 1 });
      // with more replicas required than the master has, the node says so as it starts
      const lines: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      await (await createBroker({ ...common, clusterNodeId: 'too-demanding', clusterWaitReplicas: 2, logger: log })).close();
      assert.ok(lines.some((l) => l.includes('fewer replicas than clusterWaitReplicas') && l.includes('"replicas":1')), lines.join(''));
      const c = await startBroker({ ...common, clusterNodeId: 'quick' });
      const b = await startBroker({ ...common, clusterNodeId: 'subscriber' });
      nodes.push(a, b, c);
      const sub = await connectClient(b.port, { clientId: 'w-sub', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
      await sub.subscribeAsync('w/#', { qos: 1 });
      const got: string[] = [];
      sub.on('message', (_t, payload) => got.push(payload.toString()));
      await routesKnown(a, 1);
      await routesKnown(c, 1);
      const session = { clientId: 'w-pub', clean: false, properties: { sessionExpiryInterval: 300 } };
      const publish = (raw: RawClient, messageId: number, payload: string, dup = false): void =>
        raw.sendPacket({ cmd: 'publish', topic: 'w/1', payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup }, 5);
      const first = await rawConnect(a.port, 5, session);
      publish(first.raw, 1, 'replicated');
      assert.equal((await expectPacket(first.raw, 'puback')).messageId, 1);
      replica.signal('SIGSTOP');
      try {
        publish(first.raw, 2, 'kept');
        const answer = await expectPacket(first.raw, 'disconnect', 5000);
        assert.equal(answer.reasonCode, 0x80);
        assert.match(String(answer.properties?.reasonString), /^not acknowledged: cluster: /);
        assert.equal(a.broker.stats.cluster?.replicaWaitsFailed, 1);
        // a node that does not wait for replicas acknowledges at once meanwhile
        const quick = await rawConnect(c.port, 5, { clientId: 'w-quick' });
        quick.raw.sendPacket({ cmd: 'publish', topic: 'w/2', payload: Buffer.from('unreplicated'), qos: 1, messageId: 9, retain: false, dup: false }, 5);
        assert.equal((await expectPacket(quick.raw, 'puback', 500)).messageId, 9);
        quick.raw.close();
      } finally {
        replica.signal('SIGCONT');
      }
      // the client resends what was never acknowledged, as [MQTT-4.4.0-1] has it
      const second = await rawConnect(a.port, 5, session);
      publish(second.raw, 2, 'kept', true);
      assert.equal((await expectPacket(second.raw, 'puback', 5000)).messageId, 2);
      second.raw.close();
      assert.ok(await eventually(() => got.includes('kept')), got.join());
    } finally {
      askReplica.disconnect();
      await closeNodes();
      await Promise.all([replica.stop(), master.stop()]);
    }
  });

  test('with Redis Sentinel (redis+sentinel://) the nodes follow a failover to the promoted replica and go on routing', async () => {
    const master = await startRedis();
    const replica = await startRedis(undefined, ['--replicaof', '127.0.0.1', String(master.port)]);
    const sentinel = await startSentinel(master.port, 'main');
    const askSentinel = new Redis(sentinel.port, '127.0.0.1');
    const askReplica = new Redis(replica.port, '127.0.0.1', { lazyConnect: true });
    try {
      // a sentinel fails over only to a replica it has found in the master's INFO
      assert.ok(await poll(async () => ((await askSentinel.call('SENTINEL', 'REPLICAS', 'main')) as unknown[]).length === 1, 15_000), 'the sentinel knows the replica');
      const prefix = `c${++prefixes}`;
      const [a, b] = (await cluster(2, { clusterRedis: `redis+sentinel://127.0.0.1:${sentinel.port}/main`, clusterPrefix: prefix })) as [TestBroker, TestBroker];
      const sub = await connectClient(b.port, { clientId: 's-sub' });
      await sub.subscribeAsync('s/#', { qos: 1 });
      await routesKnown(a, 1);
      const before = nextMessages(sub, 1);
      const pub = await connectClient(a.port, { clientId: 's-pub' });
      await pub.publishAsync('s/1', 'before', { qos: 1 });
      assert.equal((await before)[0]?.payload.toString(), 'before');

      await master.stop();
      assert.ok(await poll(async () => ((await askReplica.call('ROLE')) as string[])[0] === 'master', 20_000), 'the replica is promoted');
      assert.ok(await deliveredAgain(a, sub, 's/2'), 'routing goes on through the new master');
      // a failover slower than the node timeout has the nodes dropped and registered again: eventually
      assert.ok(await poll(async () => (await askReplica.smembers(`${prefix}:routes:n1`)).join() === 's/#', 10_000), 'the routes are in the new master');
    } finally {
      askSentinel.disconnect();
      askReplica.disconnect();
      await closeNodes();
      await Promise.all([sentinel.stop(), replica.stop(), master.stop()]);
    }
  });

  test('with a Redis Cluster (redis+cluster://) the nodes keep their keys in one hash slot, route, share retained messages and move sessions, and go on after that slot fails over', async () => {
    const rc = await startRedisCluster(3, 1);
    const ask = new Redis(rc.nodes[0]!.port, '127.0.0.1');
    try {
      const [a, b] = (await cluster(2, { clusterRedis: rc.url })) as [TestBroker, TestBroker];
      const tag = `{c${prefixes}}`;
      const sub = await connectClient(b.port, { clientId: 'rc-sub' });
      const pub = await connectClient(a.port, { clientId: 'rc-pub' });
      // [MQTT-3.8.4-1] as with one server, the SUBACK comes once the other node knows of the route
      // (the channels are sharded: a channel's subscribers are on the master Redis publishes from)
      assert.deepEqual(await missedAfterSuback(sub, pub, 'rc', 20), [], 'published right after the SUBACK and not delivered');
      await sub.subscribeAsync('rc/#', { qos: 1 });
      // every key of the cluster hashes to the slot of its tag
      const slot = await ask.cluster('KEYSLOT', tag);
      const masterPort = await rc.masterOf(tag);
      const owner = new Redis(masterPort, '127.0.0.1');
      const keys = (await owner.keys(`${tag}:*`)).sort();
      owner.disconnect();
      assert.ok(keys.includes(`${tag}:nodes`) && keys.includes(`${tag}:routes:n1`) && keys.includes(`${tag}:inbox:n1`), keys.join());
      for (const k of keys) assert.equal(await ask.cluster('KEYSLOT', k), slot, k);

      // a node that waits for a replica (clusterWaitReplicas) waits for that of the slot's master
      const w = await startBroker({ clusterRedis: rc.url, clusterNodeId: 'w', clusterPrefix: `c${prefixes}`, sysInterval: 0, clusterWaitReplicas: 1 });
      nodes.push(w);
      await routesKnown(w, 21);
      const waiting = await rawConnect(w.port, 5, { clientId: 'rc-w' });
      waiting.raw.sendPacket({ cmd: 'publish', topic: 'rc/w', payload: Buffer.from('w'), qos: 1, messageId: 1, retain: false, dup: false }, 5);
      assert.equal((await expectPacket(waiting.raw, 'puback')).messageId, 1);
      const replica = rc.replicaOf(masterPort);
      replica.signal('SIGSTOP');
      try {
        waiting.raw.sendPacket({ cmd: 'publish', topic: 'rc/w', payload: Buffer.from('w'), qos: 1, messageId: 2, retain: false, dup: false }, 5);
        assert.equal((await expectPacket(waiting.raw, 'disconnect', 5000)).reasonCode, 0x80);
      } finally {
        replica.signal('SIGCONT');
      }

      await pub.publishAsync('rc/retained', 'kept', { qos: 1, retain: true });
      const late = await connectClient(b.port, { clientId: 'rc-late' });
      const retained = nextMessages(late, 1);
      await late.subscribeAsync('rc/retained', { qos: 1 });
      assert.equal((await retained)[0]?.payload.toString(), 'kept');

      const mover = { clientId: 'rc-mover', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } };
      await (await connectClient(a.port, mover)).subscribeAsync('rc-move/#', { qos: 1 });
      const moved = await connectClient(b.port, mover);
      assert.equal(connackOf(moved).sessionPresent, true, 'the session moved between the nodes');

      // the master serving the slot dies; its replica takes over
      const master = rc.nodes.find((n) => n.port === masterPort) as TestRedis;
      await master.stop();
      assert.ok(await poll(async () => (await rc.masterOf(tag)) !== masterPort, 20_000), 'the replica is promoted');
      assert.ok(await deliveredAgain(a, sub, 'rc/2'), 'routing goes on through the promoted replica');
    } finally {
      ask.disconnect();
      await closeNodes();
      await rc.stop();
    }
  });

  test('a Redis URL that cannot be reached is a one-line error at start; a malformed one a config error', async () => {
    await assert.rejects(createBroker({ clusterRedis: 'redis://127.0.0.1:1', clusterNodeId: 'x' }), /^Error: cluster: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    // a server that is not a Redis Cluster says so
    await assert.rejects(createBroker({ clusterRedis: `redis+cluster://127.0.0.1:${redis.port}`, clusterNodeId: 'x' }), /^Error: cluster: cannot reach Redis at redis\+cluster:\/\/127\.0\.0\.1:\d+: Failed to refresh slots cache: ERR This instance has cluster support disabled$/);
    await assert.rejects(createBroker({ clusterRedis: 'http://example' }), /clusterRedis must be a redis:\/\/, rediss:\/\/, redis\+sentinel:\/\/host:port\[,host:port...\]\/master-name or redis\+cluster:\/\/host:port\[,host:port...\] URL \(got "http:\/\/example"\)$/);
    await assert.rejects(createBroker({ clusterRedis: 'redis+sentinel://:secret@s1:26379,s2/main' }), /clusterRedis names a sentinel "s2" that is not host:port \(got "redis\+sentinel:\/\/\*\*\*@s1:26379,s2\/main"\)$/);
    await assert.rejects(createBroker({ clusterRedis: redis.url, clusterNodeId: 'bad id' }), /clusterNodeId must be/);
    await assert.rejects(createBroker({ clusterRedis: redis.url, clusterMaxBacklog: 10 }), /clusterMaxBacklog must be an integer between 65536 and/);
    await assert.rejects(createBroker({ clusterRedis: redis.url, clusterWaitReplicas: -1 }), /clusterWaitReplicas must be an integer between 0 and 16/);
    const cli = spawnSync(process.execPath, [MIDGE_MAIN, '--port', '0', '--cluster-redis', redis.url, '--cluster-max-backlog', 'lots'], { encoding: 'utf8' });
    assert.equal(cli.status, 2);
    assert.match(cli.stderr, /^midge: command line: clusterMaxBacklog must be an integer between 65536 and \d+ \(got "lots"\)\n$/);
  });
});
