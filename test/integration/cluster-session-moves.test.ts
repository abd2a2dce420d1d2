import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { RawClient } from '../helpers/raw-client.js';
import { connackOf, connectClient, delay, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { spawnMidge } from '../helpers/cli.js';
import { eventually, expectPacket, type Loose, rawConnect, rawSubscribe, receiveAcking } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, routesKnown } from '../helpers/cluster.js';

describe('a cluster moves sessions, takeovers and wills between nodes', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('[MQTT-3.1.4-3] a client connecting to another node closes its connection on the first (DISCONNECT 0x8E) and resumes its session there, subscriptions and queued messages with it', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const first = await connectClient(a.port, { clientId: 'mover', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    await first.subscribeAsync('move/#', { qos: 1 });
    const disconnected = new Promise<number | undefined>((resolve) => first.once('disconnect', (p) => resolve(p.reasonCode)));
    const adminOf = async (n: TestBroker): Promise<(path: string, method?: string) => Promise<Response>> => {
      const http = await n.broker.listenHttp({ port: 0, adminToken: 'tok' });
      return (path, method = 'GET') => fetch(`http://127.0.0.1:${http.port}/api/v1${path}`, { method, headers: { authorization: 'Bearer tok' } });
    };
    const [adminA, adminB] = await Promise.all([adminOf(a), adminOf(b)]);
    const second = await connectClient(b.port, { clientId: 'mover', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(connackOf(second).sessionPresent, true, '[MQTT-3.2.2-3] the session moved with the client');
    assert.equal(await disconnected, 0x8e);
    // the first node still takes messages for it a moment, to send on what reached only it; it counts it no more
    assert.deepEqual([a.broker.stats.sessions, a.broker.stats.clientsDisconnected, a.broker.stats.cluster?.sessionsLeaving], [0, 0, 1], 'the session left the first node');
    assert.deepEqual([b.broker.stats.sessions, b.broker.stats.clientsConnected], [1, 1]);
    // nor does its admin API show it, or let it be ended there: it is the second node's now
    const listed = async (get: (path: string) => Promise<Response>): Promise<string[]> => ((await (await get('/sessions')).json()) as { items: Array<{ clientId: string }> }).items.map((r) => r.clientId);
    assert.deepEqual(await listed(adminA), []);
    assert.equal((await adminA('/clients/mover/subscriptions')).status, 404);
    assert.equal((await adminA('/sessions/mover', 'DELETE')).status, 404);
    assert.equal(a.broker.stats.cluster?.sessionsLeaving, 1, 'the checks above ran while the session lingered');
    assert.deepEqual(await listed(adminB), ['mover']);
    assert.ok(await eventually(() => a.broker.stats.cluster?.sessionsLeaving === 0), 'the first node let it go after lingering');
    assert.equal(a.broker.stats.sessions, 0);
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
    const [a, b, c] = (await h.cluster(3)) as [TestBroker, TestBroker, TestBroker];
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

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] no QoS 1 message published on a third node, or on the node a session moves to, while it moves is lost, delivered twice or out of order', CLUSTER_TEST, async () => {
    await moveWhilePublishing(false);
  });

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] the same when the node the session moves to already had a subscriber of its filter (the messages went there before the session did)', CLUSTER_TEST, async () => {
    await moveWhilePublishing(true);
  });

  test('[MQTT-4.6.0-6] a node that learns late of a session move (it was stopped) still has its earlier messages for the session delivered ahead of its later ones', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const [a, b] = await Promise.all(['n0', 'n1'].map((id) => startBroker({ clusterRedis: h.redis.url, clusterNodeId: id, clusterPrefix: prefix, sysInterval: 0 })));
    h.nodes.push(a!, b!);
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', h.redis.url, '--cluster-node-id', 'n2', '--cluster-prefix', prefix]);
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

  test('[MQTT-3.1.2-5] [MQTT-4.6.0-6] 50 sessions moving to another node at once, while messages for all of them are published there and on a third node, lose, repeat and reorder none', CLUSTER_TEST, async () => {
    const [a, b, c] = (await h.cluster(3)) as [TestBroker, TestBroker, TestBroker];
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

  test('[MQTT-4.3.3-10] (5.0) QoS 2 messages published on the new node as a session moves there reach it once, not also through the old node', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
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

  test('[MQTT-3.1.2-5] a session its node does not hand over in time (3 s) resumes from what Redis keeps of it, and its queued messages follow when the node does', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', h.redis.url, '--cluster-node-id', 'slow', '--cluster-prefix', prefix]);
    const b = await startBroker({ clusterRedis: h.redis.url, clusterNodeId: 'quick', clusterPrefix: prefix, sysInterval: 0 });
    h.nodes.push(b);
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
      assert.equal(connack.sessionPresent, true, 'resumed from Redis');
    } finally {
      child.kill('SIGCONT');
    }
    assert.deepEqual(await receiveAcking(raw, 5, 5, 5000), ['q0', 'q1', 'q2', 'q3', 'q4']);
    raw.close();
  });

  test('[MQTT-3.1.2-4] Clean Start on another node ends the session on the first; its will is published ([MQTT-3.1.2-8])', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
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

  test('a will published when a client drops on one node reaches subscribers on another', CLUSTER_TEST, async () => {
    const [a, b] = (await h.cluster(2)) as [TestBroker, TestBroker];
    const watcher = await connectClient(b.port, { clientId: 'w2' });
    await watcher.subscribeAsync('status/#', { qos: 1 });
    await routesKnown(a, 1);
    const dev = await connectClient(a.port, { clientId: 'dev', will: { topic: 'status/dev', payload: Buffer.from('offline'), qos: 1, retain: false } });
    const got = nextMessages(watcher, 1);
    (dev as unknown as { stream: { destroy(): void } }).stream.destroy();
    assert.equal((await got)[0]?.payload.toString(), 'offline');
  });
});
