import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import { closeClients, collectFor, connectClient, delay, startBroker, type TestBroker } from '../../helpers/broker.js';
import { RawClient } from '../../helpers/raw-client.js';
import mqttPacketLib from 'mqtt-packet';

function mqttPacketBytes(packet: Record<string, unknown>): Buffer {
  return mqttPacketLib.generate(packet as unknown as mqttPacket.Packet, { protocolVersion: 5 });
}

describe('MQTT 5 shared subscriptions (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  after(async () => {
    await closeClients();
    await b.close();
  });

  test('[MQTT-4.8.2-1] [MQTT-4.8.2-2] each message goes to exactly one member of each group, round robin', async () => {
    const a1 = await connectClient(b.port, { protocolVersion: 5, clientId: 'ga-1' });
    const a2 = await connectClient(b.port, { protocolVersion: 5, clientId: 'ga-2' });
    const g2 = await connectClient(b.port, { protocolVersion: 5, clientId: 'gb-1' });
    await a1.subscribeAsync('$share/ga/work/+', { qos: 1 });
    await a2.subscribeAsync('$share/ga/work/+', { qos: 1 });
    await g2.subscribeAsync('$share/gb/work/+', { qos: 1 });
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'shared-pub' });
    const c1 = collectFor(a1, 800);
    const c2 = collectFor(a2, 800);
    const cb = collectFor(g2, 800);
    for (let i = 0; i < 20; i++) await pub.publishAsync('work/x', String(i), { qos: 1 });
    const [r1, r2, rb] = await Promise.all([c1, c2, cb]);
    assert.equal(r1.length + r2.length, 20, 'group ga got every message once');
    assert.ok(r1.length >= 5 && r2.length >= 5, `both members served (${r1.length}/${r2.length})`);
    const seen = new Set([...r1, ...r2].map((m) => m.payload.toString()));
    assert.equal(seen.size, 20, 'no message twice within a group');
    assert.equal(rb.length, 20, 'group gb got every message too');
  });

  test('a shared subscription receives no retained messages on subscribe', async () => {
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'shared-ret-pub' });
    await pub.publishAsync('kept/one', 'retained', { qos: 1, retain: true });
    const s = await connectClient(b.port, { protocolVersion: 5, clientId: 'shared-ret-sub' });
    await s.subscribeAsync('$share/g/kept/#', { qos: 1 });
    assert.equal((await collectFor(s, 300)).length, 0);
    await pub.publishAsync('kept/one', '', { qos: 1, retain: true });
  });

  test('invalid share names are refused with 0x8F Topic Filter invalid', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId: 'shared-bad' }, 5);
    await raw.next();
    let id = 1;
    for (const filter of ['$share//x', '$share/a+b/x', '$share/g', '$share/g#/x']) {
      raw.sendPacket({ cmd: 'subscribe', messageId: id++, subscriptions: [{ topic: filter, qos: 0 }] }, 5);
      const ack = (await raw.next()) as mqttPacket.ISubackPacket;
      assert.deepEqual(ack.granted, [0x8f], filter);
    }
    raw.close();
  });

  test('[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId: 'shared-nl' }, 5);
    await raw.next();
    raw.sendPacket({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: '$share/g/nl', qos: 0, nl: true }] }, 5);
    const d = (await raw.next()) as mqttPacket.IDisconnectPacket;
    assert.equal(d.cmd, 'disconnect');
    assert.equal(d.reasonCode, 0x82);
    assert.ok(await raw.waitClosed());
  });

  test('a member that leaves with unacknowledged QoS 1 messages: they go to another member', async () => {
    // a raw member that never acknowledges, with a small receive maximum
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId: 'lazy-member', properties: { receiveMaximum: 50 } }, 5);
    await raw.next();
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/jobs/job/#', qos: 1 }] }, 5);
    await raw.next();
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'jobs-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('job/1', `j${i}`, { qos: 1 });
    const held: string[] = [];
    for (let i = 0; i < 5; i++) held.push(((await raw.next()) as mqttPacket.IPublishPacket).payload.toString());
    assert.deepEqual(held, ['j0', 'j1', 'j2', 'j3', 'j4']);
    const worker = await connectClient(b.port, { protocolVersion: 5, clientId: 'busy-member' });
    await worker.subscribeAsync('$share/jobs/job/#', { qos: 1 });
    const got = collectFor(worker, 800);
    raw.close();
    await delay(100);
    const received = (await got).map((m) => m.payload.toString()).sort();
    assert.deepEqual(received, ['j0', 'j1', 'j2', 'j3', 'j4']);
  });

  test('members with a free inflight window are preferred over a member whose window is full', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId: 'full-member', properties: { receiveMaximum: 1 } }, 5);
    await raw.next();
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/pref/p', qos: 1 }] }, 5);
    await raw.next();
    const free = await connectClient(b.port, { protocolVersion: 5, clientId: 'free-member' });
    await free.subscribeAsync('$share/pref/p', { qos: 1 });
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'pref-pub' });
    const got = collectFor(free, 600);
    for (let i = 0; i < 10; i++) await pub.publishAsync('p', String(i), { qos: 1 });
    const toFree = (await got).length;
    // the raw member takes at most one (its window is 1 and it never acknowledges)
    assert.ok(toFree >= 9, `free member got ${toFree} of 10`);
    raw.close();
  });

  test('[MQTT-4.8.2-2] a member that stopped reading is not given the messages the others cannot take at once: they wait in the shortest queue, none is dropped', async () => {
    const small = await startBroker({ limits: { maxInflight: 10, maxQueuedMessages: 300 } });
    try {
      // never acknowledges: its window fills, then its queue
      const stuck = await RawClient.open(small.port, 5);
      stuck.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'stuck-member' }, 5);
      await stuck.next();
      stuck.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/busy/b', qos: 1 }] }, 5);
      await stuck.next();
      const healthy = await connectClient(small.port, { protocolVersion: 5, clientId: 'healthy-member' });
      await healthy.subscribeAsync('$share/busy/b', { qos: 1 });
      const got = collectFor(healthy, 3000);
      // bursts of 100, each more than the healthy member's window: alone it takes them all
      // (window and queue), but every other one given to the stuck member would overflow its queue
      const pub = await RawClient.open(small.port, 5);
      pub.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'busy-pub' }, 5);
      await pub.next();
      const total = 1000;
      for (let first = 1; first <= total; first += 100) {
        const burst: Buffer[] = [];
        for (let i = first; i < first + 100; i++) burst.push(mqttPacketBytes({ cmd: 'publish', topic: 'b', payload: Buffer.from(String(i)), qos: 1, messageId: i }));
        pub.send(Buffer.concat(burst));
        await delay(50);
      }
      const toHealthy = (await got).length;
      const dropped = small.broker.stats.droppedByReason.queueFull ?? 0;
      assert.equal(dropped, 0, `${dropped} dropped on a full queue while a member had room`);
      // the stuck member holds what it was given: a window and a queue at the most
      assert.ok(toHealthy >= total - 310, `the healthy member got ${toHealthy} of ${total}`);
      stuck.close();
      pub.close();
    } finally {
      await small.close();
    }
  });
});
