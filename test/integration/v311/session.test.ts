import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../../helpers/raw-session.js';

describe('MQTT 3.1.1 persistent sessions (3.1.1)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({
      hooks: {
        authorizePublish: (_client, message) => !message.topic.startsWith('forbidden/'),
      },
    });
  });
  after(() => b.close());

  const pause = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('[MQTT-3.1.2-5] [MQTT-4.5.0-1] QoS 1 and 2 messages for an offline persistent session are stored and delivered on return', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'offline-1', clean: false });
    await rawSubscribe(first.raw, 4, 1, [{ topic: 'off/#', qos: 2 }]);
    first.raw.send('e000');
    await first.raw.waitClosed();
    const pub = await rawConnect(b.port, 4, { clientId: 'offline-pub' });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'off/1', payload: Buffer.from('q1'), qos: 1, messageId: 1 }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'off/2', payload: Buffer.from('q2'), qos: 2, messageId: 2 }, 4);
    await expectPacket(pub.raw, 'puback');
    await expectPacket(pub.raw, 'pubrec');
    pub.raw.sendPacket({ cmd: 'pubrel', messageId: 2 }, 4);
    await expectPacket(pub.raw, 'pubcomp');
    const back = await rawConnect(b.port, 4, { clientId: 'offline-1', clean: false });
    assert.equal(back.connack.sessionPresent, true);
    const got = (await drainFor(back.raw, 300)).filter((p) => p.cmd === 'publish');
    assert.deepEqual(got.map((p) => [p.topic, p.payload?.toString(), p.qos]), [['off/1', 'q1', 1], ['off/2', 'q2', 2]]);
    back.raw.close();
    pub.raw.close();
  });

  test('[MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-2.3.1-4] unacknowledged publishes are re-sent on reconnect with DUP set and the same packet id', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'redeliver', clean: false });
    await rawSubscribe(first.raw, 4, 1, [{ topic: 'redo/#', qos: 2 }]);
    await b.broker.publish({ topic: 'redo/1', payload: 'one', qos: 1 });
    await b.broker.publish({ topic: 'redo/2', payload: 'two', qos: 2 });
    const original = (await drainFor(first.raw, 200)).filter((p) => p.cmd === 'publish');
    assert.equal(original.length, 2);
    assert.ok(original.every((p) => p.dup === false));
    first.raw.close();
    await pause();
    const back = await rawConnect(b.port, 4, { clientId: 'redeliver', clean: false });
    const again = (await drainFor(back.raw, 300)).filter((p) => p.cmd === 'publish');
    assert.deepEqual(again.map((p) => [p.topic, p.messageId, p.dup]), original.map((p) => [p.topic, p.messageId, true]));
    back.raw.close();
  });

  test('[MQTT-4.4.0-1] a PUBREL not yet completed is re-sent on reconnect', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'rel-again', clean: false });
    await rawSubscribe(first.raw, 4, 1, [{ topic: 'rel/x', qos: 2 }]);
    await b.broker.publish({ topic: 'rel/x', payload: 'p', qos: 2 });
    const p = await expectPacket(first.raw, 'publish');
    first.raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, 4);
    await expectPacket(first.raw, 'pubrel');
    first.raw.close();
    await pause();
    const back = await rawConnect(b.port, 4, { clientId: 'rel-again', clean: false });
    const rel = await expectPacket(back.raw, 'pubrel');
    assert.equal(rel.messageId, p.messageId);
    back.raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, 4);
    assert.deepEqual((await drainFor(back.raw, 200)).filter((x) => x.cmd === 'publish'), [], 'the message itself is not sent again');
    back.raw.close();
  });

  test('a QoS 2 message is delivered once even when the publisher re-sends it with DUP before PUBREL', async () => {
    const sub = await rawConnect(b.port, 4, { clientId: 'once-sub' });
    await rawSubscribe(sub.raw, 4, 1, [{ topic: 'exactly/once', qos: 0 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'once-pub' });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'exactly/once', payload: Buffer.from('1'), qos: 2, messageId: 42 }, 4);
    await expectPacket(pub.raw, 'pubrec');
    pub.raw.sendPacket({ cmd: 'publish', topic: 'exactly/once', payload: Buffer.from('1'), qos: 2, messageId: 42, dup: true }, 4);
    await expectPacket(pub.raw, 'pubrec');
    pub.raw.sendPacket({ cmd: 'pubrel', messageId: 42 }, 4);
    await expectPacket(pub.raw, 'pubcomp');
    const got = (await drainFor(sub.raw, 200)).filter((p) => p.cmd === 'publish');
    assert.equal(got.length, 1);
    sub.raw.close();
    pub.raw.close();
  });

  test('[MQTT-3.3.5-2] a publish the server does not authorise is acknowledged as usual and not delivered', async () => {
    const sub = await rawConnect(b.port, 4, { clientId: 'auth-sub' });
    await rawSubscribe(sub.raw, 4, 1, [{ topic: 'forbidden/#', qos: 1 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'auth-pub' });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'forbidden/x', payload: Buffer.from('no'), qos: 1, messageId: 3 }, 4);
    const ack = await expectPacket(pub.raw, 'puback');
    assert.equal(ack.messageId, 3);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'forbidden/y', payload: Buffer.from('no'), qos: 2, messageId: 4 }, 4);
    assert.equal((await expectPacket(pub.raw, 'pubrec')).messageId, 4);
    assert.deepEqual((await drainFor(sub.raw, 200)).filter((p: Loose) => p.cmd === 'publish'), []);
    assert.ok(!pub.raw.closed);
    sub.raw.close();
    pub.raw.close();
  });
});
