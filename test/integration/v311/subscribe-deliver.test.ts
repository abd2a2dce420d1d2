import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, receiveAcking, rawSubscribe, type Loose } from '../../helpers/raw-session.js';

/** A QoS 1 or 2 PUBLISH of payload "p" with the given packet identifier. */
function mqttPublish(topic: string, qos: 1 | 2, id: number): Buffer {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([0, t.length]), t, Buffer.from([id >> 8, id & 0xff]), Buffer.from('p')]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1), body.length]), body]);
}

describe('MQTT 3.1.1 subscriptions and delivery (3.1.1)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker();
  });
  after(() => b.close());

  async function client(id = `c-${++n}`, clean = true): Promise<RawClient> {
    return (await rawConnect(b.port, 4, { clientId: id, clean })).raw;
  }

  function publish(raw: RawClient, topic: string, payload: string, qos: 0 | 1 | 2 = 0, messageId?: number): void {
    raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, ...(qos > 0 ? { messageId } : {}) }, 4);
  }

  async function publishes(raw: RawClient, ms = 250): Promise<Loose[]> {
    return (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');
  }

  test('[MQTT-3.8.4-1] [MQTT-3.8.4-5] [MQTT-3.8.3-2] SUBACK has a code per filter, in order, wildcards granted and an invalid filter 0x80', async () => {
    const raw = await client();
    const ack = await rawSubscribe(raw, 4, 7, [
      { topic: 'a/+/c', qos: 1 },
      { topic: 'a/#', qos: 2 },
      { topic: 'a/b#', qos: 1 },
      { topic: 'plain', qos: 0 },
    ]);
    assert.deepEqual(ack.granted, [1, 2, 0x80, 0]);
    raw.close();
  });

  test('[MQTT-3.8.3-4] a SUBSCRIBE with requested QoS 3 is malformed and closes the connection', async () => {
    const raw = await client();
    raw.send('8206 0001 0001 61 03'.replace(/ /g, ''));
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.8.3-4] a SUBSCRIBE with reserved bits set in the options byte closes the connection', async () => {
    const raw = await client();
    raw.send('8206 0001 0001 61 41'.replace(/ /g, ''));
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.3.2-3] [MQTT-4.5.0-1] a subscriber gets messages whose topic matches its filter, and only those', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'm/+/x', qos: 0 }, { topic: 'm/deep/#', qos: 0 }]);
    const pub = await client();
    for (const t of ['m/a/x', 'm/a/y', 'm/deep', 'm/deep/1/2', 'm/a/x/z', 'n/a/x']) publish(pub, t, t);
    const got = (await publishes(sub)).map((p) => p.topic).sort();
    assert.deepEqual(got, ['m/a/x', 'm/deep', 'm/deep/1/2']);
    sub.close();
    pub.close();
  });

  test('[MQTT-4.7.2-1] filters starting with a wildcard do not match topics starting with $', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: '#', qos: 0 }, { topic: '+/info', qos: 0 }]);
    const dollar = await client();
    await rawSubscribe(dollar, 4, 1, [{ topic: '$app/info', qos: 0 }]);
    await b.broker.publish({ topic: '$app/info', payload: 'internal' });
    assert.equal((await expectPacket(dollar, 'publish')).topic, '$app/info', 'an explicit $ filter matches');
    const got = (await publishes(sub)).filter((p) => p.topic?.startsWith('$'));
    assert.equal(got.length, 0);
    sub.close();
    dollar.close();
  });

  test('[MQTT-4.7.2-1] a client may publish to a $ topic other than $SYS: an explicit filter gets it, a leading wildcard does not; $SYS is refused', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: '#', qos: 0 }, { topic: '+/things/+/shadow/update', qos: 0 }]);
    const dollar = await client();
    await rawSubscribe(dollar, 4, 1, [{ topic: '$aws/things/+/shadow/update', qos: 1 }, { topic: '$SYS/forged', qos: 0 }]);
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: '$SYS/forged', payload: Buffer.from('forged'), qos: 1, messageId: 7 });
    assert.equal((await expectPacket(pub, 'puback')).messageId, 7, '3.1.1 has no refusal code: acknowledged, and dropped');
    pub.sendPacket({ cmd: 'publish', topic: '$aws/things/lamp/shadow/update', payload: Buffer.from('on'), qos: 1, messageId: 8 });
    assert.equal((await expectPacket(pub, 'puback')).messageId, 8);
    const got = await receiveAcking(dollar, 4, 1);
    assert.deepEqual(got, ['on'], 'delivered to the explicit filter; the forged $SYS message to no one');
    assert.deepEqual((await drainFor(dollar, 200)).map((p) => p.topic), []);
    assert.equal((await publishes(sub)).filter((p) => p.topic?.startsWith('$')).length, 0, 'not to # or +/...');
    sub.close();
    dollar.close();
    pub.close();
  });

  test('[MQTT-4.7.3-4] matching does not normalise case, spaces or Unicode forms', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'caf\u00e9/Room', qos: 0 }]);
    const pub = await client();
    publish(pub, 'cafe\u0301/Room', 'decomposed');
    publish(pub, 'caf\u00e9/room', 'lower');
    publish(pub, 'caf\u00e9/Room ', 'trailing space');
    publish(pub, 'caf\u00e9/Room', 'exact');
    const got = (await publishes(sub)).map((p) => p.payload?.toString());
    assert.deepEqual(got, ['exact']);
    sub.close();
    pub.close();
  });

  test('[MQTT-3.8.4-3] subscribing again to an identical filter replaces the subscription and resends retained messages', async () => {
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'rep/x', payload: Buffer.from('r'), qos: 1, messageId: 1, retain: true }, 4);
    await expectPacket(pub, 'puback');
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'rep/x', qos: 0 }]);
    assert.equal((await expectPacket(sub, 'publish')).qos, 0);
    await rawSubscribe(sub, 4, 2, [{ topic: 'rep/x', qos: 1 }]);
    const again = await expectPacket(sub, 'publish');
    assert.equal(again.retain, true);
    assert.equal(again.qos, 1, 'the new maximum QoS applies');
    sub.sendPacket({ cmd: 'puback', messageId: again.messageId }, 4);
    publish(pub, 'rep/x', 'live', 1, 2);
    const got = await publishes(sub);
    assert.equal(got.length, 1, 'one subscription, not two');
    assert.equal(got[0]?.qos, 1);
    sub.close();
    pub.close();
  });

  test('[MQTT-3.8.4-4] several filters in one SUBSCRIBE act like several SUBSCRIBEs (a repeated filter: the last wins)', async () => {
    const sub = await client();
    const ack = await rawSubscribe(sub, 4, 3, [{ topic: 'multi/a', qos: 0 }, { topic: 'multi/b', qos: 1 }, { topic: 'multi/a', qos: 2 }]);
    assert.deepEqual(ack.granted, [0, 1, 2]);
    const pub = await client();
    publish(pub, 'multi/a', 'a', 2, 9);
    publish(pub, 'multi/b', 'b', 1, 10);
    const got = (await publishes(sub)).map((p) => [p.topic, p.qos]);
    assert.deepEqual(got.sort(), [['multi/a', 2], ['multi/b', 1]]);
    sub.close();
    pub.close();
  });

  test('[MQTT-3.8.4-6] delivered QoS is the lower of the published QoS and the granted QoS', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'qmin/0', qos: 0 }, { topic: 'qmin/1', qos: 1 }, { topic: 'qmin/2', qos: 2 }]);
    const pub = await client();
    let id = 1;
    for (const sq of [0, 1, 2]) for (const pq of [0, 1, 2] as const) publish(pub, `qmin/${sq}`, `${pq}`, pq, pq > 0 ? id++ : undefined);
    const got = await publishes(sub, 400);
    for (const p of got) {
      const granted = Number(p.topic?.split('/')[1]);
      assert.equal(p.qos, Math.min(granted, Number(p.payload?.toString())), `${p.topic} published at ${p.payload?.toString()}`);
    }
    assert.equal(got.length, 9);
    sub.close();
    pub.close();
  });

  test('[MQTT-3.3.5-1] overlapping subscriptions: one copy at the highest granted QoS', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'ov/#', qos: 0 }, { topic: 'ov/+', qos: 2 }, { topic: 'ov/x', qos: 1 }]);
    const pub = await client();
    publish(pub, 'ov/x', 'once', 2, 4);
    const got = await publishes(sub);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.qos, 2);
    sub.close();
    pub.close();
  });

  test('[MQTT-3.10.4-1] [MQTT-3.10.4-4] UNSUBSCRIBE compares filters character by character and UNSUBACK has its packet id', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'un/b', qos: 0 }, { topic: 'un/+', qos: 0 }]);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 321, unsubscriptions: ['un/+'] }, 4);
    assert.equal((await expectPacket(sub, 'unsuback')).messageId, 321);
    const pub = await client();
    publish(pub, 'un/b', 'still');
    publish(pub, 'un/c', 'gone');
    const got = (await publishes(sub)).map((p) => p.topic);
    assert.deepEqual(got, ['un/b'], '"un/+" did not remove "un/b"');
    sub.close();
    pub.close();
  });

  test('[MQTT-3.10.4-5] [MQTT-3.10.4-6] an UNSUBSCRIBE of several filters, some unknown, gets one UNSUBACK', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'u6/a', qos: 0 }, { topic: 'u6/b', qos: 0 }]);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 5, unsubscriptions: ['u6/a', 'u6/none', 'u6/b'] }, 4);
    assert.equal((await expectPacket(sub, 'unsuback')).messageId, 5);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 6, unsubscriptions: ['never/subscribed'] }, 4);
    assert.equal((await expectPacket(sub, 'unsuback')).messageId, 6);
    const pub = await client();
    publish(pub, 'u6/a', 'x');
    publish(pub, 'u6/b', 'y');
    assert.deepEqual(await publishes(sub), [], 'both removed, and only one UNSUBACK each time');
    sub.close();
    pub.close();
  });

  test('[MQTT-3.10.4-2] [MQTT-3.10.4-3] after UNSUBSCRIBE no new messages arrive, but QoS 1 and 2 deliveries in progress complete', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'prog/1', qos: 1 }, { topic: 'prog/2', qos: 2 }]);
    const pub = await client();
    publish(pub, 'prog/1', 'one', 1, 1);
    publish(pub, 'prog/2', 'two', 2, 2);
    const inflight = await publishes(sub);
    assert.equal(inflight.length, 2);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['prog/1', 'prog/2'] }, 4);
    await expectPacket(sub, 'unsuback');
    const q2 = inflight.find((p) => p.qos === 2) as Loose;
    const q1 = inflight.find((p) => p.qos === 1) as Loose;
    sub.sendPacket({ cmd: 'puback', messageId: q1.messageId }, 4);
    sub.sendPacket({ cmd: 'pubrec', messageId: q2.messageId }, 4);
    const rel = await expectPacket(sub, 'pubrel');
    assert.equal(rel.messageId, q2.messageId);
    sub.sendPacket({ cmd: 'pubcomp', messageId: q2.messageId }, 4);
    publish(pub, 'prog/1', 'after', 1, 3);
    assert.deepEqual(await publishes(sub), []);
    sub.close();
    pub.close();
  });

  test('[MQTT-2.3.1-4] server packet identifiers of unacknowledged QoS 1 and 2 publishes are non-zero and distinct', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'ids/#', qos: 2 }]);
    const pub = await client();
    for (let i = 0; i < 40; i++) publish(pub, `ids/${i}`, 'x', (1 + (i % 2)) as 1 | 2, i + 1);
    const got = await publishes(sub, 400);
    assert.equal(got.length, 40);
    const ids = got.map((p) => p.messageId as number);
    assert.ok(ids.every((id) => id > 0 && id <= 65535));
    assert.equal(new Set(ids).size, ids.length);
    sub.close();
    pub.close();
  });

  test('[MQTT-2.3.1-2] (3.1.1) subscribers sent one message each get it under their own free packet identifier', async () => {
    // one encoded frame serves both; the first delivery writes its bytes, the second a copy
    const first = await client();
    await rawSubscribe(first, 4, 1, [{ topic: 'frame/#', qos: 1 }]);
    const pub = await client();
    // two deliveries to `first` left unacknowledged: its next free id is 3, while `second` starts at 1
    publish(pub, 'frame/busy', 'x', 1, 1);
    publish(pub, 'frame/busy', 'y', 1, 2);
    assert.deepEqual((await publishes(first, 200)).map((p) => p.messageId), [1, 2]);
    const second = await client();
    await rawSubscribe(second, 4, 1, [{ topic: 'frame/one', qos: 1 }]);
    for (let i = 0; i < 3; i++) publish(pub, 'frame/one', `m${i}`, 1, 10 + i);
    const [atFirst, atSecond] = await Promise.all([publishes(first, 300), publishes(second, 300)]);
    assert.deepEqual(atFirst.map((p) => [p.messageId, p.payload?.toString()]), [[3, 'm0'], [4, 'm1'], [5, 'm2']]);
    assert.deepEqual(atSecond.map((p) => [p.messageId, p.payload?.toString()]), [[1, 'm0'], [2, 'm1'], [3, 'm2']]);
    first.close();
    second.close();
    pub.close();
  });

  test('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not passed on to subscribers', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'dup/in', qos: 1 }]);
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'dup/in', payload: Buffer.from('d'), qos: 1, messageId: 77, dup: true }, 4);
    const got = await expectPacket(sub, 'publish');
    assert.equal(got.dup, false);
    sub.close();
    pub.close();
  });

  test('[MQTT-4.6.0-5] [MQTT-4.6.0-6] [MQTT-7.1.1-1] messages of one publisher reach a subscriber in the order sent, whatever their QoS', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'order/#', qos: 2 }]);
    const pub = await client();
    const count = 300;
    for (let i = 0; i < count; i++) publish(pub, `order/${i % 3}`, String(i), (i % 3) as 0 | 1 | 2, i % 3 === 0 ? undefined : i + 1);
    const got = (await receiveAcking(sub, 4, count)).map(Number);
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => i));
    sub.close();
    pub.close();
  });

  test('[MQTT-2.3.1-6] PUBACK, PUBREC and PUBREL carry the packet identifier of the PUBLISH they answer', async () => {
    const sub = await client();
    await rawSubscribe(sub, 4, 1, [{ topic: 'pid/q2', qos: 2 }]);
    const pub = await client();
    // identifiers out of order and at the ends of the range, QoS 1 and 2 interleaved in one write
    const sent: Array<[1 | 2, number]> = [[1, 700], [2, 12], [1, 3], [2, 40000], [1, 65535]];
    pub.send(Buffer.concat(sent.map(([qos, id]) => mqttPublish(qos === 2 ? 'pid/q2' : 'pid/q1', qos, id))));
    const acks = (await drainFor(pub, 300)).map((p) => [p.cmd, p.messageId]);
    assert.deepEqual(acks, [['puback', 700], ['pubrec', 12], ['puback', 3], ['pubrec', 40000], ['puback', 65535]]);
    pub.sendPacket({ cmd: 'pubrel', messageId: 40000 }, 4);
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 40000);
    pub.sendPacket({ cmd: 'pubrel', messageId: 12 }, 4);
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 12);
    // the server's own QoS 2 deliveries: its PUBREL names the PUBLISH it sent
    const delivered = await publishes(sub);
    assert.equal(delivered.length, 2);
    for (const d of [...delivered].reverse()) {
      sub.sendPacket({ cmd: 'pubrec', messageId: d.messageId }, 4);
      assert.equal((await expectPacket(sub, 'pubrel')).messageId, d.messageId);
      sub.sendPacket({ cmd: 'pubcomp', messageId: d.messageId }, 4);
    }
    sub.close();
    pub.close();
  });

  test('[MQTT-2.3.1-7] SUBACK and UNSUBACK carry the packet identifier of the SUBSCRIBE and UNSUBSCRIBE', async () => {
    const raw = await client();
    raw.sendPacket({ cmd: 'subscribe', messageId: 4242, subscriptions: [{ topic: 'ids7/a', qos: 1 }] }, 4);
    raw.sendPacket({ cmd: 'unsubscribe', messageId: 17, unsubscriptions: ['ids7/a'] }, 4);
    raw.sendPacket({ cmd: 'subscribe', messageId: 65535, subscriptions: [{ topic: 'ids7/b', qos: 0 }] }, 4);
    const answers = (await drainFor(raw, 300)).map((p) => [p.cmd, p.messageId]);
    assert.deepEqual(answers, [['suback', 4242], ['unsuback', 17], ['suback', 65535]]);
    raw.close();
  });
});
