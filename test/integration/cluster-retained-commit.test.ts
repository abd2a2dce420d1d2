import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLUSTER_TEST, poll, routesKnown } from '../helpers/cluster.js';
import { commitCluster } from '../helpers/commit-cluster.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, rawSubscribeEarly, type Loose } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';

/**
 * Exactly once across a crash, for the cluster's retained messages: a retained QoS 2 message of a
 * persistent publisher becomes the retained message of the other nodes, as it reaches any
 * subscriber, only once the commit that records it and its packet id is over. Shared before, a
 * node killed before that commit would have had the other nodes serve their new subscribers a
 * message its publisher was never told was taken (no PUBREC) and sends again. Kept back, a retained
 * change is still never dropped, nor shared over a later one of its topic: every node ends on the
 * message the publisher's node applied last. The publisher's node has a store taken for one on
 * disk whose commits the test holds back.
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

  /** Waits until the node at `port` has every retained change its client `pub` shared so far: a change shared after them comes there. */
  async function sharedSoFar(pub: RawClient, port: number, messageId: number): Promise<void> {
    const topic = `rc/mark/${messageId}`;
    publish(pub, topic, 'mark', 1, messageId);
    assert.equal((await expectPacket(pub, 'puback')).messageId, messageId);
    assert.ok(await comesTo(port, topic, ['mark']), 'a retained change shared after them has come');
  }

  test('[MQTT-3.3.1-5] (5.0) a retained message another publisher sent on the topic while a persistent session\'s retained QoS 2 message waited for its commit is the one every node ends on, as the publishers\' node does', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const held = await client(a.port, 'rc-older', true);
    const other = await client(a.port, 'rc-newer', false);

    store.hold();
    const commits = store.commits;
    publish(held, 'rc/t', 'older', 2, 1);
    assert.ok(await poll(() => Promise.resolve(store.commits > commits), 3000), 'the first message is being committed');
    publish(other, 'rc/t', 'newer', 1, 1);
    assert.ok(await comesTo(b.port, 'rc/t', ['newer']), 'the later message of another publisher is shared at once');

    store.release();
    assert.equal((await expectPacket(held, 'pubrec')).messageId, 1);
    assert.equal((await expectPacket(other, 'puback')).messageId, 1);
    await sharedSoFar(held, b.port, 2);
    assert.deepEqual(await retainedAt(a.port, 'rc/t'), ['newer'], 'the publishers\' node applied the two in the order published');
    assert.deepEqual(await retainedAt(b.port, 'rc/t'), ['newer'], 'the older message, its commit over, does not replace the later one on the other node');
  });

  test('QoS 0 retained messages kept back behind a retained QoS 2 message whose commit is under way are all shared once it is over, past 1 MB too: a retained change is never dropped', CLUSTER_TEST, async () => {
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
    assert.ok(await poll(async () => (await retainedAt(b.port, 'rc/q/#', 1000)).length === 150, 5000), 'the other node has them all');
    assert.equal((await retainedAt(a.port, 'rc/q/#', 1000)).length, 150, 'as its own node does');
    assert.equal(a.broker.stats.cluster?.forwardDropped, 0, 'nothing was dropped');
  });

  test('QoS 0 retained messages of one topic kept back behind a commit are held as the latest alone: past 1 MB of them, every node ends on the last, and the publisher\'s QoS 0 messages after them still reach the other nodes', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const sub = await client(b.port, 'rc-live-sub', false);
    await rawSubscribe(sub, V, 1, [{ topic: 'rc/live', qos: 0 }]);
    await routesKnown(a, 1);
    const pub = await client(a.port, 'rc-same', true);

    store.hold();
    publish(pub, 'rc/first', 'first', 2, 1);
    // 3 MB of changes to one topic, then a message for the other node's subscriber
    for (let i = 0; i < 300; i++) publish(pub, 'rc/same', String(i).padEnd(10_000, '.'), 0);
    publish(pub, 'rc/live', 'after them', 0);
    await drainFor(pub, 300);
    store.release();
    const live = (await drainFor(sub, 1000)).filter((p) => p.cmd === 'publish').map((p) => p.payload?.toString());
    assert.deepEqual(live, ['after them'], 'not dropped: what is kept back did not grow past 1 MB');
    const trimmed = async (port: number): Promise<string[]> => (await retainedAt(port, 'rc/same')).map((p) => p.replace(/\.+$/, ''));
    assert.ok(await poll(async () => JSON.stringify(await trimmed(b.port)) === '["299"]', 3000), 'the other node ends on the last');
    assert.deepEqual(await trimmed(a.port), ['299'], 'as its own node does');
    assert.equal(a.broker.stats.cluster?.forwardDropped, 0);
  });

  test('a QoS 0 retained message kept back behind a commit and forwarded to another node counts once against the 1 MB bound: its forward is dropped past 1 MB of them, its retained change never is', CLUSTER_TEST, async () => {
    const { a, b, store } = await twoNodes();
    const sub = await client(b.port, 'rc-q-sub', false);
    await rawSubscribe(sub, V, 1, [{ topic: 'rc/q/#', qos: 0 }]);
    await routesKnown(a, 1);
    const pub = await client(a.port, 'rc-both', true);

    store.hold();
    publish(pub, 'rc/first', 'first', 2, 1);
    const filler = 'x'.repeat(10_000);
    for (let i = 0; i < 150; i++) publish(pub, `rc/q/${String(i).padStart(3, '0')}`, filler, 0);
    await drainFor(pub, 300);
    store.release();
    const forwarded = (await drainFor(sub, 1500)).filter((p) => p.cmd === 'publish').length;
    assert.ok(forwarded >= 90 && forwarded < 110, `${forwarded} QoS 0 messages were forwarded: those within 1 MB`);
    assert.equal(a.broker.stats.cluster?.forwardDropped, 150 - forwarded, 'the rest are counted');
    assert.ok(await poll(async () => (await retainedAt(b.port, 'rc/q/#', 1000)).length === 150, 5000), 'every retained change is shared');
  });
});
