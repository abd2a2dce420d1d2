import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { createBroker } from '../../src/index.js';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RawClient } from '../helpers/raw-client.js';
import { connackOf, connectClient, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';
import { MIDGE_MAIN } from '../helpers/cli.js';
import { eventually, expectPacket, rawConnect } from '../helpers/raw-session.js';
import { skipWithoutRedis, startRedis, startRedisCluster, startSentinel, type TestRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, deliveredAgain, missedAfterSuback, poll, routesKnown } from '../helpers/cluster.js';

describe('a cluster on Redis replicas, Sentinel and Redis Cluster, and bad Redis settings', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('[MQTT-4.3.2-4] (5.0) with clusterWaitReplicas a QoS 1 message for another node, or a retained one, is acknowledged only once a Redis replica has it: with the replica stopped the publisher is disconnected (0x80), and its resend is acknowledged once it runs again', CLUSTER_TEST, async () => {
    const master = await startRedis();
    const replica = await startRedis(undefined, ['--replicaof', '127.0.0.1', String(master.port)]);
    const askReplica = new Redis(replica.port, '127.0.0.1');
    try {
      assert.ok(await poll(async () => (await askReplica.info('replication')).includes('master_link_status:up'), 10_000), 'the replica is in sync');
      const prefix = h.prefix();
      const common = { clusterRedis: master.url, clusterPrefix: prefix, sysInterval: 0 };
      const a = await startBroker({ ...common, clusterNodeId: 'durable', clusterWaitReplicas: 1 });
      // with more replicas required than the master has, the node says so as it starts
      const lines: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      await (await createBroker({ ...common, clusterNodeId: 'too-demanding', clusterWaitReplicas: 2, logger: log })).close();
      assert.ok(lines.some((l) => l.includes('fewer replicas than clusterWaitReplicas') && l.includes('"replicas":1')), lines.join(''));
      const c = await startBroker({ ...common, clusterNodeId: 'quick' });
      const b = await startBroker({ ...common, clusterNodeId: 'subscriber' });
      h.nodes.push(a, b, c);
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
        // a retained message is shared through Redis: not acknowledged either, though no other node subscribes to it
        const keeper = await rawConnect(a.port, 5, { clientId: 'w-keeper' });
        keeper.raw.sendPacket({ cmd: 'publish', topic: 'w-kept/x', payload: Buffer.from('kept'), qos: 1, messageId: 3, retain: true, dup: false }, 5);
        const refused = await expectPacket(keeper.raw, 'disconnect', 5000);
        assert.equal(refused.reasonCode, 0x80);
        assert.equal(refused.properties?.reasonString, 'not acknowledged: cluster: fewer Redis replicas than clusterWaitReplicas had it in time');
        assert.equal(a.broker.stats.cluster?.replicaWaitsFailed, 2);
      } finally {
        replica.signal('SIGCONT');
      }
      // the client resends what was never acknowledged, as [MQTT-4.4.0-1] has it
      const second = await rawConnect(a.port, 5, session);
      publish(second.raw, 2, 'kept', true);
      assert.equal((await expectPacket(second.raw, 'puback', 5000)).messageId, 2);
      second.raw.close();
      const keeper = await rawConnect(a.port, 5, { clientId: 'w-keeper' });
      keeper.raw.sendPacket({ cmd: 'publish', topic: 'w-kept/x', payload: Buffer.from('kept'), qos: 1, messageId: 3, retain: true, dup: true }, 5);
      assert.equal((await expectPacket(keeper.raw, 'puback', 5000)).messageId, 3);
      keeper.raw.close();
      assert.ok(await eventually(() => got.includes('kept')), got.join());
    } finally {
      askReplica.disconnect();
      await h.closeNodes();
      await Promise.all([replica.stop(), master.stop()]);
    }
  });

  test('with Redis Sentinel (redis+sentinel://) the nodes follow a failover to the promoted replica and go on routing', CLUSTER_TEST, async () => {
    const master = await startRedis();
    const replica = await startRedis(undefined, ['--replicaof', '127.0.0.1', String(master.port)]);
    const sentinel = await startSentinel(master.port, 'main');
    const askSentinel = new Redis(sentinel.port, '127.0.0.1');
    const askReplica = new Redis(replica.port, '127.0.0.1', { lazyConnect: true });
    try {
      // a sentinel fails over only to a replica it has found in the master's INFO
      assert.ok(await poll(async () => ((await askSentinel.call('SENTINEL', 'REPLICAS', 'main')) as unknown[]).length === 1, 15_000), 'the sentinel knows the replica');
      const prefix = h.prefix();
      const [a, b] = (await h.cluster(2, { clusterRedis: `redis+sentinel://127.0.0.1:${sentinel.port}/main`, clusterPrefix: prefix })) as [TestBroker, TestBroker];
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
      await h.closeNodes();
      await Promise.all([sentinel.stop(), replica.stop(), master.stop()]);
    }
  });

  test('with a Redis Cluster (redis+cluster://) the nodes keep their keys in one hash slot, route, share retained messages, move sessions, publish the waiting wills of a node that stops, keep what is published for its session until it resumes elsewhere, and go on after that slot fails over', CLUSTER_TEST, async () => {
    const rc = await startRedisCluster(3, 1);
    const ask = new Redis(rc.nodes[0]!.port, '127.0.0.1');
    try {
      const [a, b] = (await h.cluster(2, { clusterRedis: rc.url })) as [TestBroker, TestBroker];
      const tag = `{${h.lastPrefix()}}`;
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
      const w = await startBroker({ clusterRedis: rc.url, clusterNodeId: 'w', clusterPrefix: h.lastPrefix(), sysInterval: 0, clusterWaitReplicas: 1 });
      h.nodes.push(w);
      await routesKnown(w, 21);
      const wsub = await connectClient(w.port, { clientId: 'rc-wsub' });
      await wsub.subscribeAsync('rcw/#', { qos: 1 });
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

      // a will waiting out its delay when its node stops is published by another node: the wills'
      // keys and scripts are in the slot too
      const x = await startBroker({ clusterRedis: rc.url, clusterNodeId: 'x', clusterPrefix: h.lastPrefix(), sysInterval: 0 });
      await late.subscribeAsync('rc-will/#', { qos: 1 });
      const willing = { clientId: 'rc-will', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 60 }, will: { topic: 'rc-will/x', payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } } };
      await (await connectClient(x.port, willing)).subscribeAsync('rc-gone/#', { qos: 1 });
      const kept = new Redis(await rc.masterOf(tag), '127.0.0.1');
      assert.ok(await poll(async () => (await kept.hexists(`${tag}:wills:x`, 'rc-will')) === 1, 3000), 'the will is kept in the slot');
      kept.disconnect();
      const will = nextMessages(late, 1, 8000);
      await x.close();
      // the node that stopped left a persistent session: its routes are kept a while, and what is
      // published for it meanwhile is read from its inbox where the session resumes
      assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 3, 3000), 'the node that stopped has left');
      await pub.publishAsync('rc-gone/1', 'while gone', { qos: 1 });
      assert.equal((await will)[0]?.payload.toString(), 'gone');
      let missed: Promise<Array<{ payload: Buffer }>> | undefined;
      const resumed = await connectClient(b.port, { ...willing, will: undefined }, (c) => (missed = nextMessages(c, 1)));
      assert.equal(connackOf(resumed).sessionPresent, true);
      assert.equal((await missed)?.[0]?.payload.toString(), 'while gone');

      // the master serving the slot dies; its replica takes over
      const master = rc.nodes.find((n) => n.port === masterPort) as TestRedis;
      await master.stop();
      assert.ok(await poll(async () => (await rc.masterOf(tag)) !== masterPort, 20_000), 'the replica is promoted');
      assert.ok(await deliveredAgain(a, sub, 'rc/2'), 'routing goes on through the promoted replica');
      // the node that joined last reads its inbox on as well
      assert.ok(await deliveredAgain(b, wsub, 'rcw/x'), 'routing to the third node goes on');
    } finally {
      ask.disconnect();
      await h.closeNodes();
      await rc.stop();
    }
  });

  test('a Redis URL that cannot be reached is a one-line error at start; a malformed one a config error', CLUSTER_TEST, async () => {
    await assert.rejects(createBroker({ clusterRedis: 'redis://127.0.0.1:1', clusterNodeId: 'x' }), /^Error: cluster: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    // a server that is not a Redis Cluster says so
    await assert.rejects(createBroker({ clusterRedis: `redis+cluster://127.0.0.1:${h.redis.port}`, clusterNodeId: 'x' }), /^Error: cluster: cannot reach Redis at redis\+cluster:\/\/127\.0\.0\.1:\d+: Failed to refresh slots cache: ERR This instance has cluster support disabled$/);
    await assert.rejects(createBroker({ clusterRedis: 'http://example' }), /clusterRedis must be a redis:\/\/, rediss:\/\/, redis\+sentinel:\/\/host:port\[,host:port...\]\/master-name or redis\+cluster:\/\/host:port\[,host:port...\] URL \(got "http:\/\/example"\)$/);
    await assert.rejects(createBroker({ clusterRedis: 'redis+sentinel://:secret@s1:26379,s2/main' }), /clusterRedis names a sentinel "s2" that is not host:port \(got "redis\+sentinel:\/\/\*\*\*@s1:26379,s2\/main"\)$/);
    await assert.rejects(createBroker({ clusterRedis: h.redis.url, clusterNodeId: 'bad id' }), /clusterNodeId must be/);
    await assert.rejects(createBroker({ clusterRedis: h.redis.url, clusterMaxBacklog: 10 }), /clusterMaxBacklog must be an integer between 65536 and/);
    await assert.rejects(createBroker({ clusterRedis: h.redis.url, clusterWaitReplicas: -1 }), /clusterWaitReplicas must be an integer between 0 and 16/);
    const cli = spawnSync(process.execPath, [MIDGE_MAIN, '--port', '0', '--cluster-redis', h.redis.url, '--cluster-max-backlog', 'lots'], { encoding: 'utf8' });
    assert.equal(cli.status, 2);
    assert.match(cli.stderr, /^midge: command line: --cluster-max-backlog must be an integer between 65536 and \d+ \(got "lots"\)\n$/);
  });
});
