import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { IClientOptions } from 'mqtt';
import { pino } from 'pino';
import { createBroker } from '../../src/index.js';
import { collectFor, connackOf, connectClient, delay, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { spawnMidge } from '../helpers/cli.js';
import { tcpCut } from '../helpers/tcp-cut.js';
import { eventually, expectPacket, rawConnect, receiveAcking } from '../helpers/raw-session.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, poll, routesKnown, spawnNode, watchWills } from '../helpers/cluster.js';

describe('a cluster outlives its nodes and its Redis server stopping, restarting and falling behind', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('a node that stops leaves at once; a node that dies is dropped after the node timeout, and its clients can connect elsewhere', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await startBroker({ clusterRedis: h.redis.url, clusterNodeId: 'stay', clusterPrefix: prefix, sysInterval: 0 });
    h.nodes.push(a);
    const b = await startBroker({ clusterRedis: h.redis.url, clusterNodeId: 'leave', clusterPrefix: prefix, sysInterval: 0 });
    const sb = await connectClient(b.port, { clientId: 'on-leave' });
    await sb.subscribeAsync('leave/#');
    await routesKnown(a, 1);
    assert.equal(a.broker.stats.cluster?.nodes, 2);
    await b.close();
    await routesKnown(a, 0);
    assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 1));

    // a process killed outright says nothing; the heartbeat timeout (5 s) finds it out
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', h.redis.url, '--cluster-node-id', 'doomed', '--cluster-prefix', prefix, '--log-level', 'info']);
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

  test('[MQTT-3.1.2-5] a client whose node is down resumes its session on another node (its subscriptions); the node restarted with its store keeps the sessions no other node took, and sends on what it held for the one that went', CLUSTER_TEST, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-cluster-'));
    const prefix = h.prefix();
    const opts = { clusterRedis: h.redis.url, clusterPrefix: prefix, sysInterval: 0 };
    const session = (id: string): IClientOptions => ({ clientId: id, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
    try {
      const a = await startBroker({ ...opts, clusterNodeId: 'keeper', persistence: 'lmdb', dataDir: dir });
      const b = await startBroker({ ...opts, clusterNodeId: 'other' });
      h.nodes.push(b);
      for (const id of ['stays', 'moves']) {
        const c = await connectClient(a.port, session(id));
        await c.subscribeAsync(`${id}/#`, { qos: 1 });
        await c.endAsync();
      }
      // queued on the keeper for the offline session, and kept in its store
      await routesKnown(b, 2);
      const pub = await connectClient(b.port, { clientId: 'keeper-pub' });
      await pub.publishAsync('moves/before', 'held by the keeper', { qos: 1 });
      assert.ok(await eventually(() => a.broker.stats.queued === 1), 'queued on the keeper');
      await a.close();
      // while the keeper is down, one client connects to the other node: its session resumes there
      const moved = await connectClient(b.port, session('moves'));
      assert.equal(connackOf(moved).sessionPresent, true, 'its subscriptions came with it');
      const live = nextMessages(moved, 1);
      await pub.publishAsync('moves/after', 'routed to its new node', { qos: 1 });
      assert.equal((await live)[0]?.topic, 'moves/after', 'no need to subscribe again');
      const held = nextMessages(moved, 1, 5000);
      const again = await startBroker({ ...opts, clusterNodeId: 'keeper', persistence: 'lmdb', dataDir: dir });
      h.nodes.push(again);
      assert.equal(again.broker.stats.sessions, 1, 'only the session no other node took');
      assert.equal((await held)[0]?.payload.toString(), 'held by the keeper', 'what the keeper held follows the session');
      const back = await connectClient(again.port, session('stays'));
      assert.equal(connackOf(back).sessionPresent, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('[MQTT-3.1.2-5] a client whose node died resumes its session on another node (its subscriptions, as long as the session has not expired), before the node is found dead too', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'lives');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'dies');
    const lasting = { clientId: 'lasting', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const brief = { clientId: 'brief', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 1 } };
    const quick = { clientId: 'quick', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
    for (const [options, filter] of [[lasting, 'lasting/#'], [brief, 'brief/#'], [quick, 'quick/#']] as const) {
      await (await connectClient(port, options)).subscribeAsync(filter, { qos: 1 });
    }
    await routesKnown(a, 3);
    const redis = new Redis(h.redis.url);
    try {
      assert.ok(await poll(async () => (await redis.hlen(`${prefix}:sessions:dies`)) === 3, 3000), 'the sessions are kept in Redis');
    } finally {
      redis.disconnect();
    }
    child.kill('SIGKILL');
    // at once, before the node is found dead: it does not hand the session over (3 s), which comes from Redis then
    const early = await connectClient(a.port, quick);
    assert.equal(connackOf(early).sessionPresent, true, 'resumed although its node was not found dead yet');
    assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 1, 9000), 'the dead node is dropped');
    const back = await connectClient(a.port, lasting);
    assert.equal(connackOf(back).sessionPresent, true, 'the session resumes here');
    assert.equal(a.broker.stats.cluster?.sessionsResumedFromRedis, 2, 'this one, and the one resumed before the node was found dead');
    const got = nextMessages(back, 1);
    const pub = await connectClient(a.port, { clientId: 'died-pub' });
    await pub.publishAsync('lasting/1', 'found', { qos: 1 });
    assert.equal((await got)[0]?.topic, 'lasting/1', 'subscribed as before, without subscribing again');
    // its expiry (1 s) ran from when its node was found dead
    await delay(1200);
    const late = await connectClient(a.port, brief);
    assert.equal(connackOf(late).sessionPresent, false, 'expired meanwhile: a new session');
  });

  /** A node without a store (`nodeId`) that stopped with one offline persistent session, subscribed to `<clientId>/#`; and another node of its cluster. */
  async function memoryNodeStopped(nodeId: string, otherId: string, clientId: string): Promise<{ opts: Record<string, unknown>; other: TestBroker; options: IClientOptions }> {
    const prefix = h.prefix();
    const opts = { clusterRedis: h.redis.url, clusterPrefix: prefix, clusterNodeId: nodeId, persistence: 'memory' as const, sysInterval: 0 };
    const other = await h.node(prefix, otherId);
    const first = await startBroker(opts);
    const options: IClientOptions = { clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const c = await connectClient(first.port, options);
    await c.subscribeAsync(`${clientId}/#`, { qos: 1 });
    await c.endAsync();
    await routesKnown(other, 1);
    await first.close();
    return { opts, other, options };
  }

  test('[MQTT-3.1.2-5] a node restarted without a store (persistence memory) takes its clients\' sessions back from Redis as it starts, with what was published for them while it was down and since', CLUSTER_TEST, async () => {
    const { opts, other, options } = await memoryNodeStopped('forgets', 'remembers', 'remembered');
    // the stopped node's routes are kept a while: this waits in its inbox
    const pub = await connectClient(other.port, { clientId: 'remembered-pub' });
    await pub.publishAsync('remembered/0', 'while down', { qos: 1 });
    const again = await startBroker(opts);
    h.nodes.push(again);
    assert.equal(again.broker.stats.sessions, 1, 'nothing in its own memory, the session taken back from Redis as it started');
    // its routes, announced anew, still hold the session's: what is published now reaches it there
    await delay(500);
    await routesKnown(other, 1);
    await pub.publishAsync('remembered/0', 'after the restart', { qos: 1 });
    let missed: Promise<Array<{ payload: Buffer }>> | undefined;
    const back = await connectClient(again.port, options, (cl) => (missed = nextMessages(cl, 2)));
    assert.equal(connackOf(back).sessionPresent, true);
    assert.deepEqual(
      (await missed)?.map((m) => m.payload.toString()),
      ['while down', 'after the restart'],
      'what its inbox held for the session of its earlier run, then what came since',
    );
    const got = nextMessages(back, 1);
    await pub.publishAsync('remembered/1', 'x', { qos: 1 });
    assert.equal((await got)[0]?.topic, 'remembered/1');
    assert.deepEqual(await collectFor(back, 500), [], 'each once');
  });

  test('[MQTT-3.1.2-5] a client of a node restarted without a store that connects to another node has its session handed over from there, with what was published for it meanwhile', CLUSTER_TEST, async () => {
    const { opts, other, options } = await memoryNodeStopped('forgets-2', 'elsewhere', 'wanderer');
    const again = await startBroker(opts);
    h.nodes.push(again);
    await delay(500);
    const pub = await connectClient(other.port, { clientId: 'wanderer-pub' });
    await pub.publishAsync('wanderer/1', 'queued on the restarted node', { qos: 1 });
    assert.ok(await eventually(() => again.broker.stats.queued === 1, 3000), 'queued for the session taken back');
    let got: Promise<Array<{ payload: Buffer }>> | undefined;
    const moved = await connectClient(other.port, options, (cl) => (got = nextMessages(cl, 1)));
    assert.equal(connackOf(moved).sessionPresent, true, 'handed over by the restarted node');
    assert.equal((await got)?.[0]?.payload.toString(), 'queued on the restarted node');
    assert.deepEqual(await collectFor(moved, 500), [], 'once');
    await Promise.all([moved.endAsync(), pub.endAsync()]);
  });

  test('[MQTT-3.1.2-5] the offline sessions of a node that died are taken up by another node: what is published for them meanwhile waits for their clients there, and their wills go with them', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'takes');
    const watcher = await watchWills(a);
    const { child, port } = await spawnNode(h.redis.url, prefix, 'leaves');
    const sleeper = { clientId: 'sleeper', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const s = await connectClient(port, sleeper);
    await s.subscribeAsync('sleeper/#', { qos: 1 });
    await s.endAsync();
    // connected when its node dies, and never back: its will (4 s delay) goes from the node that took its session up
    await connectClient(port, { clientId: 'gone', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 }, will: { topic: 'will/gone', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 4 } } });
    await routesKnown(a, 1);
    child.kill('SIGKILL');
    const will = nextMessages(watcher, 1, 15_000);
    assert.ok(await eventually(() => a.broker.stats.cluster?.orphanSessionsAdopted === 2, 12_000), 'both sessions taken up after the node timeout and the grace');
    assert.equal(a.broker.stats.sessions, 3, 'waiting here offline, beside the watcher');
    const pub = await connectClient(a.port, { clientId: 'takes-pub' });
    await pub.publishAsync('sleeper/1', 'kept for it', { qos: 1 });
    assert.equal((await will)[0]?.topic, 'will/gone');
    // what was queued comes right behind the CONNACK
    let got: Promise<Array<{ payload: Buffer }>> | undefined;
    const back = await connectClient(a.port, sleeper, (c) => (got = nextMessages(c, 1)));
    assert.equal(connackOf(back).sessionPresent, true);
    assert.equal((await got)?.[0]?.payload.toString(), 'kept for it');
    assert.deepEqual(await collectFor(watcher, 500), [], 'the will went once');
  });

  test('[MQTT-3.1.3-9] a node found dead while it was only stalled takes back the sessions of its still connected clients, with what reached them elsewhere, and their wills are not sent', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'watches');
    const watcher = await watchWills(a);
    const { child, port } = await spawnNode(h.redis.url, prefix, 'stalls');
    const c = await connectClient(port, { clientId: 'patient', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 }, will: { topic: 'will/patient', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 12 } } });
    await c.subscribeAsync('patient/#', { qos: 1 });
    await routesKnown(a, 1);
    child.kill('SIGSTOP');
    try {
      // found dead after 5 s, its session taken up here 5 s later, with its will (due 12 s after the node was found dead)
      assert.ok(await eventually(() => a.broker.stats.cluster?.orphanSessionsAdopted === 1, 15_000), 'taken up while the node is stalled');
      const pub = await connectClient(a.port, { clientId: 'stall-pub' });
      await pub.publishAsync('patient/1', 'reached the other node', { qos: 1 });
    } finally {
      child.kill('SIGCONT');
    }
    const got = await nextMessages(c, 1, 8000);
    assert.equal(got[0]?.payload.toString(), 'reached the other node', 'what was kept for it elsewhere follows it back');
    assert.deepEqual((await collectFor(c, 1500)).map((m) => m.payload.toString()), [], 'once: the copy sent to the stalled node\'s own inbox is not given again');
    assert.ok(await eventually(() => a.broker.stats.sessions === 2, 3000), 'the copy taken up here is gone (watcher and publisher are left)');
    const after = collectFor(c, 1500);
    const pub2 = await connectClient(a.port, { clientId: 'stall-pub-2' });
    await pub2.publishAsync('patient/2', 'after it was back', { qos: 1 });
    assert.deepEqual((await after).map((m) => m.payload.toString()), ['after it was back'], 'and what comes after, once');
    assert.deepEqual(await collectFor(watcher, 8000), [], 'the client never went: its will is not sent');
  });

  test('[MQTT-3.1.3-9] a node found dead while it was cut off from Redis (still serving its clients) settles with the node that took up its sessions once it reconnects: its connected client gets what was kept for it there, once, and its offline session goes there', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'reachable');
    const link = await tcpCut(h.redis.port);
    try {
      const b = await startBroker({ clusterRedis: link.url, clusterNodeId: 'cut-off', clusterPrefix: prefix, sysInterval: 0 });
      h.nodes.push(b);
      const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
      const c = await connectClient(b.port, { ...persistent, clientId: 'stays-on' });
      await c.subscribeAsync('cut/#', { qos: 1 });
      const away = await connectClient(b.port, { ...persistent, clientId: 'went-off' });
      await away.subscribeAsync('cut/#', { qos: 1 });
      await away.endAsync();
      await routesKnown(a, 1);
      link.cut();
      // found dead after 5 s, its two sessions taken up here 5 s later
      assert.ok(await eventually(() => a.broker.stats.cluster?.orphanSessionsAdopted === 2, 15_000), 'taken up while the node is cut off');
      const pub = await connectClient(a.port, { clientId: 'cut-pub' });
      await pub.publishAsync('cut/1', 'while cut off', { qos: 1 });
      link.restore();
      const got = await nextMessages(c, 1, 10_000);
      assert.equal(got[0]?.payload.toString(), 'while cut off', 'what was kept for it elsewhere follows it back');
      assert.deepEqual((await collectFor(c, 1500)).map((m) => m.payload.toString()), [], "once: the copy sent to the node's own inbox is not given again");
      assert.ok(await eventually(() => b.broker.stats.sessions === 1, 3000), 'the offline session is given up to the node that took it');
      const after = collectFor(c, 1500);
      await pub.publishAsync('cut/2', 'after it was back', { qos: 1 });
      assert.deepEqual((await after).map((m) => m.payload.toString()), ['after it was back'], 'and what comes after, once');
      let kept: Promise<Array<{ payload: Buffer }>> | undefined;
      const back = await connectClient(a.port, { ...persistent, clientId: 'went-off' }, (cl) => (kept = nextMessages(cl, 2)));
      assert.equal(connackOf(back).sessionPresent, true);
      assert.deepEqual((await kept)?.map((m) => m.payload.toString()), ['while cut off', 'after it was back']);
      assert.deepEqual(await collectFor(back, 500), [], 'each once');
    } finally {
      await link.close();
    }
  });

  test('a node that falls behind holds the acknowledgements of publishers to it at clusterMaxBacklog, then delivers everything; QoS 0 for it is dropped meanwhile, and counted', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const maxBacklog = 65_536;
    // a 3.1.1 publisher cannot be told a Receive Maximum: Midge stops reading it at 20 unacknowledged
    const a = await startBroker({ clusterRedis: h.redis.url, clusterNodeId: 'ahead', clusterPrefix: prefix, sysInterval: 0, clusterMaxBacklog: maxBacklog, limits: { receiveMaximum: 20 } });
    h.nodes.push(a);
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', h.redis.url, '--cluster-node-id', 'behind', '--cluster-prefix', prefix]);
    const sub = await connectClient(port, { clientId: 'fc-sub', protocolVersion: 5 });
    await sub.subscribeAsync('fc/#', { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'fc-pub', protocolVersion: 4 });
    const peek = new Redis(h.redis.url);
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

  test('messages sent to a node while it restarts wait in Redis and reach its persistent sessions after the restart; their expiry counts the wait', CLUSTER_TEST, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-cluster-'));
    const prefix = h.prefix();
    const nodeArgs = ['--port', '0', '--persistence', 'lmdb', '--data-dir', dir, '--cluster-redis', h.redis.url, '--cluster-node-id', 'restarts', '--cluster-prefix', prefix];
    try {
      const a = (await h.cluster(1, { clusterPrefix: prefix }))[0] as TestBroker;
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

  test('after Redis restarts empty, the nodes register their routes again and put their retained messages, their clients\' wills and persistent sessions back', CLUSTER_TEST, async () => {
    const own = await startRedis();
    const prefix = h.prefix();
    const opts = { clusterRedis: own.url, clusterPrefix: prefix, sysInterval: 0 };
    const a = await startBroker({ ...opts, clusterNodeId: 'ra' });
    h.nodes.push(a);
    const b = await startBroker({ ...opts, clusterNodeId: 'rb' });
    h.nodes.push(b);
    let again: TestRedis | undefined;
    try {
      const sub = await connectClient(b.port, { clientId: 'r-sub' });
      await sub.subscribeAsync('r/#', { qos: 1 });
      const pub = await connectClient(a.port, { clientId: 'r-pub', clean: false, will: { topic: 'r/will', payload: Buffer.from('w'), qos: 1, retain: false } });
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
      h.nodes.push(late);
      assert.equal(late.broker.stats.retained, 1, 'the retained message is in Redis again');
      // the will of a client still connected is kept again, for the other nodes should its node die
      const ask = new Redis(own.url);
      try {
        assert.ok(await poll(async () => (await ask.hkeys(`${prefix}:wills:ra`)).join() === 'r-pub', 3000), 'the will is written again');
        assert.ok(await poll(async () => (await ask.hkeys(`${prefix}:sessions:ra`)).join() === 'r-pub', 3000), 'and the persistent session');
      } finally {
        ask.disconnect();
      }
    } finally {
      await h.closeNodes();
      await again?.stop();
    }
  });

  test('a node whose Redis stops answering still stops, within 3 s, and says it left without telling Redis', CLUSTER_TEST, async () => {
    const own = await startRedis();
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    try {
      const prefix = h.prefix();
      const node = await createBroker({ clusterRedis: own.url, clusterNodeId: 'mute', clusterPrefix: prefix, sysInterval: 0, logger: log });
      const client = await connectClient((await node.listen({ port: 0 })).port, { clientId: 'on-mute' });
      await client.subscribeAsync('mute/#', { qos: 1 });
      // connected, but answering nothing: leaving the cluster (a transaction) gets no reply
      own.signal('SIGSTOP');
      const started = Date.now();
      await node.close();
      const took = Date.now() - started;
      assert.ok(took >= 2500 && took < 4500, `stopped after ${took} ms`);
      assert.ok(lines.some((l) => l.includes('left without telling Redis')), lines.join(''));
    } finally {
      own.signal('SIGCONT');
      await own.stop();
    }
  });

  test('[MQTT-4.3.2-4] (5.0) while Redis is down a QoS 1 message for another node, or a retained one, is not acknowledged: the publisher is disconnected (0x80) and its resend after Redis is back is delivered', CLUSTER_TEST, async () => {
    const own = await startRedis();
    const [a, b] = (await h.cluster(2, { clusterRedis: own.url })) as [TestBroker, TestBroker];
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
      // a retained message is shared through Redis: not acknowledged either, though no other node subscribes to it
      const keeper = await rawConnect(a.port, 5, { clientId: 'd-keeper' });
      keeper.raw.sendPacket({ cmd: 'publish', topic: 'kept/x', payload: Buffer.from('kept'), qos: 1, messageId: 1, retain: true, dup: false }, 5);
      const refused = await expectPacket(keeper.raw, 'disconnect', 10_000);
      assert.equal(refused.reasonCode, 0x80);
      assert.equal(refused.properties?.reasonString, 'not acknowledged: cluster: a retained message could not be shared with the other nodes');
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
      await h.closeNodes();
      await again?.stop();
    }
  });
});
