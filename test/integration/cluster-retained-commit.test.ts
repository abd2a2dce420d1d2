import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLUSTER_TEST, poll } from '../helpers/cluster.js';
import { commitCluster } from '../helpers/commit-cluster.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribeEarly, type Loose } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';

/**
 * Exactly once across a crash, for the cluster's retained messages: a retained QoS 2 message of a
 * persistent publisher becomes the retained message of the other nodes, as it reaches any
 * subscriber, only once the commit that records it and its packet id is over. Shared before, a
 * node killed before that commit would have had the other nodes serve their new subscribers a
 * message its publisher was never told was taken (no PUBREC) and sends again. The publisher's node
 * has a store taken for one on disk whose commits the test holds back.
 */

const V = 5;

function publish(raw: RawClient, topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): void {
  raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, ...(messageId === undefined ? {} : { messageId }), retain: true, dup: false }, V);
}

const acks = (packets: Loose[]): Array<[string, number | undefined]> => packets.map((p) => [p.cmd, p.messageId]);

describe('a persistent session\'s retained QoS 2 message is shared with the other nodes once its commit is over', { skip: skipWithoutRedis }, () => {
  const { twoNodes, client, raws } = commitCluster(V);
  let probes = 0;

  /** The retained messages a new subscriber to `topic` on the node at `port` is sent. */
  async function retainedAt(port: number, topic: string, ms = 150): Promise<string[]> {
    const { raw } = await rawConnect(port, V, { clientId: `probe-${++probes}` });
    try {
      // on a node whose store is on disk, the SUBACK waits for a commit and retained messages may come first
      const { before } = await rawSubscribeEarly(raw, V, 1, [{ topic, qos: 2 }]);
      return [...before, ...(await drainFor(raw, ms))].filter((p) => p.cmd === 'publish' && p.retain === true).map((p) => p.payload?.toString() ?? '');
    } finally {
      raw.close();
    }
  }

  const comesTo = (port: number, topic: string, payloads: string[]): Promise<boolean> =>
    poll(async () => JSON.stringify(await retainedAt(port, topic)) === JSON.stringify(payloads), 3000);

  test('[MQTT-3.3.1-5] (5.0) a persistent session\'s retained QoS 2 message is the retained message of another node only once its node committed it; the retained message its publisher sent next on the topic is not overtaken by it', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const setter = await client(a.port, 'rc-setter', false);
    publish(setter, 'rc/t', 'old', 1, 1);
    assert.equal((await expectPacket(setter, 'puback')).messageId, 1);
    assert.ok(await comesTo(b.port, 'rc/t', ['old']), 'the other node has the first retained message');
    const pub = await client(a.port, 'rc-pub', true);

    store.hold();
    const commits = store.commits;
    publish(pub, 'rc/t', 'held', 2, 1);
    publish(pub, 'rc/t', 'next', 1, 2);
    await drainFor(pub, 300);
    assert.ok(store.commits > commits, 'the message is being committed');
    assert.deepEqual(await retainedAt(b.port, 'rc/t'), ['old'], 'the other node keeps the retained message it had while the commit is under way');

    store.release();
    assert.deepEqual(acks(await drainFor(pub, 300)).sort(), [['puback', 2], ['pubrec', 1]], 'acknowledged once committed and shared');
    assert.ok(await comesTo(b.port, 'rc/t', ['next']), 'then the other node has the later one');
    assert.deepEqual(await retainedAt(a.port, 'rc/t'), ['next'], 'as its own node does');
    assert.deepEqual(await retainedAt(b.port, 'rc/t'), ['next'], 'and ends on');
  });

  test('a clean session\'s retained QoS 2 message, a persistent session\'s retained QoS 1 message and other publishers\' are shared at once while a persistent session\'s retained QoS 2 message waits for its commit', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const kept = await client(a.port, 'rc-kept', true);
    const clean = await client(a.port, 'rc-clean', false);

    store.hold();
    publish(kept, 'rc/kept1', 'kept qos1', 1, 1);
    assert.ok(await comesTo(b.port, 'rc/kept1', ['kept qos1']), 'a QoS 1 retained message does not wait for the commit');
    publish(clean, 'rc/clean2', 'clean qos2', 2, 1);
    assert.ok(await comesTo(b.port, 'rc/clean2', ['clean qos2']), 'nor does a clean session\'s QoS 2 one');
    publish(kept, 'rc/kept2', 'kept qos2', 2, 2);
    publish(clean, 'rc/clean1', 'clean qos1', 1, 2);
    assert.ok(await comesTo(b.port, 'rc/clean1', ['clean qos1']), 'another publisher\'s retained message is not kept back behind it');
    assert.deepEqual(await retainedAt(b.port, 'rc/kept2'), [], 'the commit is still under way');

    store.release();
    assert.ok(await comesTo(b.port, 'rc/kept2', ['kept qos2']));
    assert.deepEqual(acks(await drainFor(kept, 200)), [['puback', 1], ['pubrec', 2]]);
  });

  test('[MQTT-3.3.1-5] (5.0) a persistent session\'s retained QoS 2 message whose commit fails is still shared, as it is still delivered: its packet id is marked in memory, and its resend is acknowledged as a duplicate', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const pub = await client(a.port, 'rc-fail', true);

    store.failing = 'no space left on device';
    publish(pub, 'rc/f', 'once', 2, 1);
    assert.deepEqual((await drainFor(pub, 300)).map((p) => [p.cmd, p.reasonCode]), [['disconnect', 0x83]], 'no PUBREC');
    assert.ok(await comesTo(b.port, 'rc/f', ['once']), 'kept back, it would be the retained message of its own node alone');
    assert.deepEqual(await retainedAt(a.port, 'rc/f'), ['once']);

    store.failing = undefined;
    const { raw: back, connack } = await rawConnect(a.port, V, { clientId: 'rc-fail', clean: false, properties: { sessionExpiryInterval: 3600 } });
    raws.push(back);
    assert.equal(connack.sessionPresent, true);
    back.sendPacket({ cmd: 'publish', topic: 'rc/f', payload: Buffer.from('once'), qos: 2, messageId: 1, retain: true, dup: true }, V);
    assert.equal((await expectPacket(back, 'pubrec')).messageId, 1);
  });

  test('QoS 0 retained messages kept back behind a retained QoS 2 message whose commit is under way are bounded (1 MB a publisher): the rest is not shared with the other nodes', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const pub = await client(a.port, 'rc-flood', true);

    store.hold();
    publish(pub, 'rc/first', 'first', 2, 1);
    const filler = 'x'.repeat(10_000);
    for (let i = 0; i < 150; i++) publish(pub, `rc/q/${String(i).padStart(3, '0')}`, filler, 0);
    await drainFor(pub, 300);
    assert.deepEqual(await retainedAt(b.port, 'rc/#'), [], 'nothing is shared while the commit is under way');
    store.release();
    assert.ok(await comesTo(b.port, 'rc/first', ['first']));
    const there = (await retainedAt(b.port, 'rc/q/#', 1000)).length;
    assert.ok(there >= 90 && there < 110, `${there} QoS 0 retained messages were shared: those within 1 MB`);
    assert.equal(a.broker.stats.cluster?.forwardDropped, 150 - there, 'the rest are counted');
    assert.equal((await retainedAt(a.port, 'rc/q/#', 1000)).length, 150, 'its own node has them all');
  });
});
