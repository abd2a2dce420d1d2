import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLUSTER_TEST, routesKnown } from '../helpers/cluster.js';
import { commitCluster } from '../helpers/commit-cluster.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';

/**
 * Exactly once for QoS 2 across a crash, between nodes: a QoS 2 message of a persistent publisher
 * reaches the subscribers of the other nodes, as it does those of its own node, only once the
 * commit that records it and its packet id is over. Sent on before, a node killed before that
 * commit would take the publisher's resend (it was never sent PUBREC) for a new message, and the
 * other nodes' subscribers would get it twice. The publisher's node has a store taken for one on
 * disk whose commits the test holds back.
 */

const V = 5;

function publish(raw: RawClient, topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number, dup = false): void {
  raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, ...(messageId === undefined ? {} : { messageId }), retain: false, dup }, V);
}

const got = (packets: Loose[]): Array<[string, number | undefined]> => packets.filter((p) => p.cmd === 'publish').map((p) => [p.payload?.toString() ?? '', p.qos]);
const acks = (packets: Loose[]): Array<[string, number | undefined]> => packets.map((p) => [p.cmd, p.messageId]);

describe('a QoS 2 message of a persistent session goes to the other nodes once its commit is over', { skip: skipWithoutRedis }, () => {
  const { twoNodes, client, raws } = commitCluster(V);

  async function subscriber(port: number, clientId: string): Promise<RawClient> {
    const raw = await client(port, clientId, false);
    await rawSubscribe(raw, V, 1, [{ topic: 'eo/#', qos: 2 }]);
    return raw;
  }

  test('[MQTT-4.3.3-10] (5.0) a persistent session\'s QoS 2 message reaches a subscriber on another node only once its node committed it, and only once; [MQTT-4.6.0-5] the QoS 1 message it sent next follows it there as it does on its own node', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const remote = await subscriber(b.port, 'remote-sub');
    const local = await subscriber(a.port, 'local-sub');
    await routesKnown(a, 1);
    const pub = await client(a.port, 'eo-pub', true);

    store.hold();
    const commits = store.commits;
    publish(pub, 'eo/x', 'exactly once', 2, 1);
    publish(pub, 'eo/x', 'then qos1', 1, 2);
    assert.deepEqual(await drainFor(remote, 500), [], 'nothing reaches the other node while the commit is under way');
    assert.equal(b.broker.stats.cluster?.received, 0, 'nothing was sent there');
    assert.deepEqual(await drainFor(local, 50), [], 'nor a subscriber of its own node');
    assert.deepEqual(await drainFor(pub, 50), [], 'nor is the publisher answered');
    assert.ok(store.commits > commits, 'the message is being committed');

    store.release();
    const there = await drainFor(remote, 500);
    assert.deepEqual(got(there), [['exactly once', 2], ['then qos1', 1]], 'then once, and in the order published');
    assert.deepEqual(got(await drainFor(local, 100)), [['exactly once', 2], ['then qos1', 1]], 'as on its own node');
    assert.deepEqual(acks(await drainFor(pub, 200)).sort(), [['puback', 2], ['pubrec', 1]]);

    // [MQTT-4.3.3-10] (5.0) a resend before PUBREL is acknowledged, not sent on again
    publish(pub, 'eo/x', 'exactly once', 2, 1, true);
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 1);
    assert.deepEqual(await drainFor(remote, 300), [], 'no second copy');
    pub.sendPacket({ cmd: 'pubrel', messageId: 1 }, V);
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 1);
    assert.equal(b.broker.stats.cluster?.received, 2);
  });

  test('QoS 1 messages, a clean session\'s QoS 2 messages and other publishers\' messages go to the other nodes at once while a persistent session\'s QoS 2 message waits for its commit', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const remote = await subscriber(b.port, 'remote-sub');
    await routesKnown(a, 1);
    const kept = await client(a.port, 'kept-pub', true);
    const clean = await client(a.port, 'clean-pub', false);

    store.hold();
    publish(kept, 'eo/kept', 'kept qos1', 1, 1);
    assert.deepEqual(got(await drainFor(remote, 300)), [['kept qos1', 1]], 'a QoS 1 message does not wait for the commit');
    publish(clean, 'eo/clean', 'clean qos2', 2, 1);
    assert.deepEqual(got(await drainFor(remote, 300)), [['clean qos2', 2]], 'nor does a clean session\'s QoS 2 message');
    publish(kept, 'eo/kept', 'kept qos2', 2, 2);
    publish(clean, 'eo/clean', 'clean qos1', 1, 2);
    assert.deepEqual(got(await drainFor(remote, 300)), [['clean qos1', 1]], 'another publisher\'s message is not kept back behind it');
    assert.deepEqual(await drainFor(kept, 50), [], 'the commit is still under way');

    store.release();
    assert.deepEqual(got(await drainFor(remote, 300)), [['kept qos2', 2]]);
    assert.deepEqual(acks(await drainFor(kept, 100)), [['puback', 1], ['pubrec', 2]]);
    assert.deepEqual(acks(await drainFor(clean, 100)), [['pubrec', 1], ['puback', 2]]);
  });

  test('QoS 0 kept back behind a QoS 2 message whose commit is under way is bounded (1 MB a publisher): the rest does not go to the other nodes, what goes keeps its order', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const remote = await subscriber(b.port, 'remote-sub');
    await routesKnown(a, 1);
    const pub = await client(a.port, 'flood-pub', true);

    store.hold();
    publish(pub, 'eo/x', 'first', 2, 1);
    const filler = 'x'.repeat(10_000);
    for (let i = 0; i < 150; i++) publish(pub, 'eo/x', `${String(i).padStart(3, '0')}:${filler}`, 0);
    assert.deepEqual(await drainFor(remote, 300), []);
    store.release();
    const there = got(await drainFor(remote, 1000));
    assert.deepEqual(there[0], ['first', 2]);
    const seq = there.slice(1).map(([p]) => Number(p.slice(0, 3)));
    assert.ok(seq.length >= 90 && seq.length < 110, `${seq.length} QoS 0 messages came: those within 1 MB`);
    assert.deepEqual(seq, Array.from({ length: seq.length }, (_, i) => i), 'the first ones, in the order published');
    assert.equal(a.broker.stats.cluster?.forwardDropped, 150 - seq.length);
  });

  test('[MQTT-4.3.3-10] (5.0) a persistent session\'s QoS 2 message whose commit fails still reaches the other nodes, once: its publisher is disconnected unacknowledged (0x83) and its resend is taken for a duplicate', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const remote = await subscriber(b.port, 'remote-sub');
    await routesKnown(a, 1);
    const pub = await client(a.port, 'fail-pub', true);

    store.failing = 'no space left on device';
    publish(pub, 'eo/x', 'once', 2, 1);
    assert.deepEqual((await drainFor(pub, 300)).map((p) => [p.cmd, p.reasonCode]), [['disconnect', 0x83]], 'no PUBREC');
    assert.deepEqual(got(await drainFor(remote, 200)), [['once', 2]], 'the packet id is marked in memory: kept back, it would be lost');

    store.failing = undefined;
    const { raw: back, connack } = await rawConnect(a.port, V, { clientId: 'fail-pub', clean: false, properties: { sessionExpiryInterval: 3600 } });
    raws.push(back);
    assert.equal(connack.sessionPresent, true);
    publish(back, 'eo/x', 'once', 2, 1, true);
    assert.equal((await expectPacket(back, 'pubrec')).messageId, 1);
    assert.deepEqual(await drainFor(remote, 300), [], 'no second copy');
  });
});
