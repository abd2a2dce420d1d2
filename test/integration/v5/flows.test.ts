import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../../helpers/raw-session.js';

const PUBACK_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_PUBCOMP_CODES = [0x00, 0x92];
const DISCONNECT_CODES = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2];
const reasonOf = (p: Loose): string | undefined => (p.properties as { reasonString?: string } | undefined)?.reasonString;

describe('MQTT 5.0 QoS flows and reason codes (5.0)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker({ hooks: { authorizePublish: (_c, m) => !m.topic.startsWith('deny/') } });
  });
  after(() => b.close());
  const client = async (options: Record<string, unknown> = {}): Promise<RawClient> => (await rawConnect(b.port, 5, { clientId: `f5-${++n}`, ...options })).raw;
  const publishes = async (raw: RawClient, ms = 250): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');

  test('[MQTT-3.3.4-1] [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-2.2.1-5] the server answers QoS 1 with PUBACK and QoS 2 with PUBREC, with the same packet id', async () => {
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'f/1', payload: Buffer.from('x'), qos: 1, messageId: 101 }, 5);
    assert.equal((await expectPacket(pub, 'puback')).messageId, 101);
    pub.sendPacket({ cmd: 'publish', topic: 'f/2', payload: Buffer.from('x'), qos: 2, messageId: 102 }, 5);
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 102);
    pub.sendPacket({ cmd: 'pubrel', messageId: 102 }, 5);
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 102);
    pub.close();
  });

  test('[MQTT-4.3.2-5] after PUBACK the same packet id is a new message', async () => {
    const sub = await client();
    await rawSubscribe(sub, 5, 1, [{ topic: 'f/new', qos: 0 }]);
    const pub = await client();
    for (const body of ['first', 'second']) {
      pub.sendPacket({ cmd: 'publish', topic: 'f/new', payload: Buffer.from(body), qos: 1, messageId: 5 }, 5);
      await expectPacket(pub, 'puback');
    }
    assert.deepEqual((await publishes(sub)).map((p) => p.payload?.toString()), ['first', 'second']);
    sub.close();
    pub.close();
  });

  test('[MQTT-4.3.3-9] [MQTT-4.3.3-10] [MQTT-4.3.3-11] [MQTT-4.3.3-12] [MQTT-4.3.3-13] QoS 2 receiver: one delivery until PUBREL, then the id is new again', async () => {
    const sub = await client();
    await rawSubscribe(sub, 5, 1, [{ topic: 'f/q2', qos: 0 }]);
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'f/q2', payload: Buffer.from('a'), qos: 2, messageId: 9 }, 5);
    await expectPacket(pub, 'pubrec');
    pub.sendPacket({ cmd: 'publish', topic: 'f/q2', payload: Buffer.from('a'), qos: 2, messageId: 9, dup: true }, 5);
    await expectPacket(pub, 'pubrec');
    pub.sendPacket({ cmd: 'pubrel', messageId: 9 }, 5);
    await expectPacket(pub, 'pubcomp');
    pub.sendPacket({ cmd: 'pubrel', messageId: 9 }, 5);
    const again = await expectPacket(pub, 'pubcomp');
    assert.ok(PUBREL_PUBCOMP_CODES.includes(again.reasonCode ?? 0), 'a PUBREL is always answered');
    // the exchange is over: its PUBREL sent again, as after a PUBCOMP lost with the connection, ends well
    assert.equal(again.reasonCode ?? 0, 0);
    pub.sendPacket({ cmd: 'publish', topic: 'f/q2', payload: Buffer.from('b'), qos: 2, messageId: 9 }, 5);
    await expectPacket(pub, 'pubrec');
    pub.sendPacket({ cmd: 'pubrel', messageId: 9 }, 5);
    await expectPacket(pub, 'pubcomp');
    // a PUBREC of 0x80 or more: the next PUBLISH with that id is a new message
    pub.sendPacket({ cmd: 'publish', topic: 'deny/q2', payload: Buffer.from('refused'), qos: 2, messageId: 20 }, 5);
    assert.equal((await expectPacket(pub, 'pubrec')).reasonCode, 0x87);
    pub.sendPacket({ cmd: 'publish', topic: 'f/q2', payload: Buffer.from('c'), qos: 2, messageId: 20 }, 5);
    assert.equal((await expectPacket(pub, 'pubrec')).reasonCode ?? 0, 0);
    assert.deepEqual((await publishes(sub)).map((p) => p.payload?.toString()), ['a', 'b', 'c']);
    sub.close();
    pub.close();
  });

  test('[MQTT-4.3.2-1] [MQTT-4.3.2-2] [MQTT-4.3.2-3] [MQTT-4.3.3-1] [MQTT-4.3.3-2] [MQTT-4.3.3-3] the server as sender: unused ids, DUP 0, kept until acknowledged', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'sender5', clean: false, properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'f/send/#', qos: 2 }]);
    await b.broker.publish({ topic: 'f/send/1', payload: 'one', qos: 1 });
    await b.broker.publish({ topic: 'f/send/2', payload: 'two', qos: 2 });
    const sent = await publishes(first.raw);
    assert.deepEqual(sent.map((p) => [p.qos, p.dup]), [[1, false], [2, false]]);
    assert.notEqual(sent[0]?.messageId, sent[1]?.messageId);
    first.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    const back = await rawConnect(b.port, 5, { clientId: 'sender5', clean: false, properties: { sessionExpiryInterval: 60 } });
    const resent = await publishes(back.raw);
    assert.deepEqual(resent.map((p) => [p.messageId, p.dup]), sent.map((p) => [p.messageId, true]), 'unacknowledged: sent again');
    back.raw.sendPacket({ cmd: 'puback', messageId: resent[0]?.messageId }, 5);
    back.raw.sendPacket({ cmd: 'pubrec', messageId: resent[1]?.messageId }, 5);
    await expectPacket(back.raw, 'pubrel');
    back.raw.sendPacket({ cmd: 'pubcomp', messageId: resent[1]?.messageId }, 5);
    back.raw.close();
  });

  test('[MQTT-4.3.3-4] [MQTT-4.3.3-5] [MQTT-4.3.3-6] [MQTT-4.3.3-7] after PUBREC the server sends PUBREL, resends PUBREL (not PUBLISH) on reconnect, and applies no expiry', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'rel5', clean: false, properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'f/rel', qos: 2 }]);
    await b.broker.publish({ topic: 'f/rel', payload: 'p', qos: 2, properties: { messageExpiryInterval: 1 } });
    const p = await expectPacket(first.raw, 'publish');
    first.raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, 5);
    assert.equal((await expectPacket(first.raw, 'pubrel')).messageId, p.messageId);
    first.raw.close();
    await new Promise((r) => setTimeout(r, 1200));
    const back = await rawConnect(b.port, 5, { clientId: 'rel5', clean: false, properties: { sessionExpiryInterval: 60 } });
    const got = await drainFor(back.raw, 300);
    assert.deepEqual(got.map((x) => [x.cmd, x.messageId]), [['pubrel', p.messageId]]);
    back.raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, 5);
    back.raw.close();
  });

  test('[MQTT-4.4.0-2] a PUBACK or PUBREC of 0x80 or more ends the delivery: nothing is resent', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'rej5', clean: false, properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'f/rej/#', qos: 2 }]);
    await b.broker.publish({ topic: 'f/rej/1', payload: 'x', qos: 1 });
    await b.broker.publish({ topic: 'f/rej/2', payload: 'y', qos: 2 });
    const [q1, q2] = await publishes(first.raw);
    first.raw.sendPacket({ cmd: 'puback', messageId: q1?.messageId, reasonCode: 0x80 }, 5);
    first.raw.sendPacket({ cmd: 'pubrec', messageId: q2?.messageId, reasonCode: 0x80 }, 5);
    assert.equal((await drainFor(first.raw, 200)).filter((x) => x.cmd === 'pubrel').length, 0);
    first.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    const back = await rawConnect(b.port, 5, { clientId: 'rej5', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal((await drainFor(back.raw, 300)).length, 0);
    back.raw.close();
  });

  test('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not passed on', async () => {
    const sub = await client();
    await rawSubscribe(sub, 5, 1, [{ topic: 'f/dup', qos: 1 }]);
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'f/dup', payload: Buffer.from('d'), qos: 1, messageId: 3, dup: true }, 5);
    assert.equal((await expectPacket(sub, 'publish')).dup, false);
    sub.close();
    pub.close();
  });

  test('[MQTT-4.1.0-1] the session lasts while the connection is open, whatever its expiry', async () => {
    const sub = await client({ properties: { sessionExpiryInterval: 1 } });
    await rawSubscribe(sub, 5, 1, [{ topic: 'f/alive', qos: 1 }]);
    await new Promise((r) => setTimeout(r, 1500));
    await b.broker.publish({ topic: 'f/alive', payload: 'still here', qos: 1 });
    assert.equal((await expectPacket(sub, 'publish')).payload?.toString(), 'still here');
    sub.close();
  });

  test('[MQTT-3.3.2-2] [MQTT-4.7.0-1] a topic name with a wildcard gets DISCONNECT 0x90', async () => {
    for (const topic of ['f/+', 'f/#']) {
      const pub = await client();
      pub.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0 }, 5);
      assert.equal((await expectPacket(pub, 'disconnect')).reasonCode, 0x90, topic);
      assert.ok(await pub.waitClosed());
    }
  });

  test('[MQTT-3.3.2-14] a Response Topic with a wildcard is a protocol error', async () => {
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'f/req', payload: Buffer.from('x'), qos: 0, properties: { responseTopic: 'reply/#' } }, 5);
    assert.equal((await expectPacket(pub, 'disconnect')).reasonCode, 0x82);
  });

  test('[MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] filters: "#" last and alone in its level, "+" alone in its level, not empty', async () => {
    const sub = await client();
    const ack = await rawSubscribe(sub, 5, 1, [
      { topic: '#', qos: 0 }, { topic: 'a/#', qos: 0 }, { topic: '+', qos: 0 }, { topic: '+/a/+', qos: 0 },
      { topic: 'a#', qos: 0 }, { topic: 'a/#/b', qos: 0 }, { topic: 'a+/b', qos: 0 }, { topic: '', qos: 0 },
    ]);
    assert.deepEqual(ack.granted, [0, 0, 0, 0, 0x8f, 0x8f, 0x8f, 0x8f]);
    sub.close();
  });

  test('[MQTT-4.7.3-1] a PUBLISH with an empty topic and no alias is a protocol error', async () => {
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0 }, 5);
    assert.equal((await expectPacket(pub, 'disconnect')).reasonCode, 0x82);
  });

  /** Makes the server answer with an error code on each of PUBACK, PUBREC, PUBREL and DISCONNECT. */
  async function provokeErrors(c: RawClient): Promise<Loose[]> {
    c.sendPacket({ cmd: 'publish', topic: 'deny/x', payload: Buffer.from('x'), qos: 1, messageId: 1 }, 5);
    const puback = await expectPacket(c, 'puback');
    c.sendPacket({ cmd: 'publish', topic: 'deny/x', payload: Buffer.from('x'), qos: 2, messageId: 2 }, 5);
    const pubrec = await expectPacket(c, 'pubrec');
    c.sendPacket({ cmd: 'pubrec', messageId: 998 }, 5);
    const pubrel = await expectPacket(c, 'pubrel');
    c.sendPacket({ cmd: 'publish', topic: 'a/+', payload: Buffer.from('x'), qos: 0 }, 5);
    return [puback, pubrec, pubrel, await expectPacket(c, 'disconnect')];
  }

  test('[MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.14.2-1] reason codes the server sends come from each packet list', async () => {
    const [puback, pubrec, pubrel, disconnect] = (await provokeErrors(await client())) as [Loose, Loose, Loose, Loose];
    assert.ok(PUBACK_CODES.includes(puback.reasonCode ?? 0) && puback.reasonCode === 0x87);
    assert.ok(PUBACK_CODES.includes(pubrec.reasonCode ?? 0) && pubrec.reasonCode === 0x87);
    assert.equal(pubrel.reasonCode, 0x92);
    assert.ok(DISCONNECT_CODES.includes(disconnect.reasonCode ?? 0));
  });

  test('[MQTT-4.3.3-11] [MQTT-4.4.0-1] a PUBREL sent again on a resumed session after its PUBCOMP was lost is answered with success: the exchange ended', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'f5-lost-pubcomp', clean: false, properties: { sessionExpiryInterval: 60 } });
    first.raw.sendPacket({ cmd: 'publish', topic: 'f/lost', payload: Buffer.from('x'), qos: 2, messageId: 77 }, 5);
    await expectPacket(first.raw, 'pubrec');
    first.raw.sendPacket({ cmd: 'pubrel', messageId: 77 }, 5);
    await expectPacket(first.raw, 'pubcomp');
    // the PUBCOMP is taken as lost: the client resends its PUBREL on the resumed session
    first.raw.close();
    const back = await rawConnect(b.port, 5, { clientId: 'f5-lost-pubcomp', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(back.connack.sessionPresent, true);
    back.raw.sendPacket({ cmd: 'pubrel', messageId: 77 }, 5);
    const pubcomp = await expectPacket(back.raw, 'pubcomp');
    assert.equal(pubcomp.messageId, 77);
    assert.equal(pubcomp.reasonCode ?? 0, 0);
    assert.equal(reasonOf(pubcomp), undefined);
    back.raw.close();
  });

  test('[MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.5.2-2] [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3] [MQTT-3.7.2-2] [MQTT-3.7.2-3] [MQTT-3.14.2-3] [MQTT-3.14.2-4] diagnostics are left out when they would exceed the client Maximum Packet Size', async () => {
    for (const max of [1000, 8]) {
      for (const p of await provokeErrors(await client({ properties: { maximumPacketSize: max } }))) {
        if (max === 1000) assert.ok(reasonOf(p) !== undefined, `${p.cmd} has a reason string when it fits`);
        else assert.equal(reasonOf(p), undefined, `${p.cmd} has none when it would not fit`);
        assert.equal((p.properties as { userProperties?: unknown } | undefined)?.userProperties, undefined);
      }
    }
  });
});
