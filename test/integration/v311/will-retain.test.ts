import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../../helpers/raw-session.js';
import type { RawClient } from '../../helpers/raw-client.js';

const WILL = (topic: string, retain = false, qos: 0 | 1 | 2 = 0) => ({ topic, payload: Buffer.from('will'), qos, retain });

describe('MQTT 3.1.1 wills and retained messages (3.1.1)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker();
  });
  after(() => b.close());

  async function subscriber(topic: string, qos: 0 | 1 | 2 = 0): Promise<RawClient> {
    const { raw } = await rawConnect(b.port, 4, { clientId: `sub-${++n}` });
    await rawSubscribe(raw, 4, 1, [{ topic, qos }]);
    return raw;
  }

  async function publishes(raw: RawClient, ms = 250): Promise<Loose[]> {
    return (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');
  }

  test('[MQTT-3.1.2-8] [MQTT-3.1.2-16] the will is published, not retained, when the connection drops', async () => {
    const watcher = await subscriber('w/drop');
    const { raw } = await rawConnect(b.port, 4, { clientId: 'will-drop', will: WILL('w/drop') });
    raw.close();
    const got = await expectPacket(watcher, 'publish');
    assert.equal(got.payload?.toString(), 'will');
    assert.equal(got.retain, false);
    const late = await subscriber('w/drop');
    assert.equal((await publishes(late)).length, 0, 'not retained');
    watcher.close();
    late.close();
  });

  test('[MQTT-3.1.2-8] the will is published when keep alive expires', async () => {
    const watcher = await subscriber('w/ka');
    await rawConnect(b.port, 4, { clientId: 'will-ka', keepalive: 1, will: WILL('w/ka') });
    const got = await expectPacket(watcher, 'publish', 4000);
    assert.equal(got.topic, 'w/ka');
    watcher.close();
  });

  test('[MQTT-3.1.2-5] a will matching the client\'s own kept subscription waits in its session for its return', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'will-self', clean: false, will: WILL('w/self', false, 1) });
    await rawSubscribe(first.raw, 4, 1, [{ topic: 'w/self', qos: 1 }]);
    first.raw.close();
    await new Promise((r) => setTimeout(r, 100));
    const again = await rawConnect(b.port, 4, { clientId: 'will-self', clean: false });
    assert.equal(again.connack.sessionPresent, true);
    const got = await expectPacket(again.raw, 'publish');
    assert.equal(got.topic, 'w/self');
    assert.equal(got.payload?.toString(), 'will');
    assert.equal(got.qos, 1);
    again.raw.close();
  });

  test('[MQTT-3.1.2-17] a will with will retain 1 is published as a retained message', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'will-ret', will: WILL('w/ret', true, 1) });
    raw.close();
    await new Promise((r) => setTimeout(r, 100));
    const late = await subscriber('w/ret', 1);
    const got = await expectPacket(late, 'publish');
    assert.equal(got.retain, true);
    assert.equal(got.qos, 1, 'will QoS honoured');
    late.close();
  });

  test('[MQTT-3.14.4-3] [MQTT-3.1.2-10] after DISCONNECT the will is discarded, not published', async () => {
    const watcher = await subscriber('w/clean');
    const { raw } = await rawConnect(b.port, 4, { clientId: 'will-clean', will: WILL('w/clean') });
    raw.send('e000');
    assert.ok(await raw.waitClosed());
    assert.equal((await publishes(watcher, 300)).length, 0);
    watcher.close();
  });

  test('[MQTT-3.1.2-10] a will is published once: a session takeover afterwards publishes nothing more', async () => {
    const watcher = await subscriber('w/once');
    const first = await rawConnect(b.port, 4, { clientId: 'will-once', will: WILL('w/once') });
    const second = await rawConnect(b.port, 4, { clientId: 'will-once' });
    assert.ok(await first.raw.waitClosed());
    const got = await publishes(watcher, 300);
    assert.ok(got.length <= 1, 'at most one will');
    second.raw.close();
    assert.equal((await publishes(watcher, 300)).length, 0, 'the second connection had no will');
    watcher.close();
  });

  test('[MQTT-3.3.1-5] [MQTT-3.3.1-8] a retained message and its QoS are stored and sent with RETAIN 1 to a new subscriber', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-pub' });
    raw.sendPacket({ cmd: 'publish', topic: 'r/a', payload: Buffer.from('kept'), qos: 1, messageId: 5, retain: true }, 4);
    await expectPacket(raw, 'puback');
    const late = await subscriber('r/a', 2);
    const got = await expectPacket(late, 'publish');
    assert.equal(got.payload?.toString(), 'kept');
    assert.equal(got.retain, true);
    assert.equal(got.qos, 1);
    raw.close();
    late.close();
  });

  test('[MQTT-3.3.1-9] a message matching an established subscription is forwarded with RETAIN 0', async () => {
    const live = await subscriber('r/live');
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-live' });
    raw.sendPacket({ cmd: 'publish', topic: 'r/live', payload: Buffer.from('x'), qos: 0, retain: true }, 4);
    const got = await expectPacket(live, 'publish');
    assert.equal(got.retain, false);
    raw.close();
    live.close();
  });

  test('[MQTT-3.3.1-7] a QoS 0 retained message replaces the one stored before', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-q0' });
    raw.sendPacket({ cmd: 'publish', topic: 'r/q0', payload: Buffer.from('old'), qos: 1, messageId: 1, retain: true }, 4);
    await expectPacket(raw, 'puback');
    raw.sendPacket({ cmd: 'publish', topic: 'r/q0', payload: Buffer.from('new'), qos: 0, retain: true }, 4);
    await new Promise((r) => setTimeout(r, 50));
    const late = await subscriber('r/q0', 1);
    const got = await publishes(late);
    assert.deepEqual(got.map((p) => [p.payload?.toString(), p.qos]), [['new', 0]]);
    raw.close();
    late.close();
  });

  test('[MQTT-3.3.1-10] [MQTT-3.3.1-11] an empty retained payload is forwarded to subscribers and clears the retained message', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-clear' });
    raw.sendPacket({ cmd: 'publish', topic: 'r/clear', payload: Buffer.from('v'), qos: 0, retain: true }, 4);
    await new Promise((r) => setTimeout(r, 50));
    const live = await subscriber('r/clear');
    assert.equal((await publishes(live, 150)).length, 1, 'the retained message');
    raw.sendPacket({ cmd: 'publish', topic: 'r/clear', payload: Buffer.alloc(0), qos: 0, retain: true }, 4);
    const fwd = await expectPacket(live, 'publish');
    assert.equal(fwd.payload?.length, 0);
    const late = await subscriber('r/clear');
    assert.equal((await publishes(late)).length, 0, 'nothing stored');
    raw.close();
    live.close();
    late.close();
  });

  test('[MQTT-3.3.1-12] a publish with RETAIN 0 neither stores nor replaces the retained message', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-0' });
    raw.sendPacket({ cmd: 'publish', topic: 'r12/keep', payload: Buffer.from('retained'), qos: 0, retain: true }, 4);
    raw.sendPacket({ cmd: 'publish', topic: 'r12/keep', payload: Buffer.from('transient'), qos: 0, retain: false }, 4);
    raw.sendPacket({ cmd: 'publish', topic: 'r12/none', payload: Buffer.from('transient'), qos: 0, retain: false }, 4);
    await new Promise((r) => setTimeout(r, 50));
    const late = await subscriber('r12/+');
    const got = await publishes(late);
    assert.deepEqual(got.map((p) => [p.topic, p.payload?.toString()]), [['r12/keep', 'retained']]);
    raw.close();
    late.close();
  });

  test('[MQTT-3.1.2-7] retained messages outlive the session that published them', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-sess', clean: true });
    raw.sendPacket({ cmd: 'publish', topic: 'r/sess', payload: Buffer.from('stays'), qos: 0, retain: true }, 4);
    raw.send('e000');
    await raw.waitClosed();
    const late = await subscriber('r/sess');
    assert.equal((await expectPacket(late, 'publish')).payload?.toString(), 'stays');
    late.close();
  });

  test('retained messages match "+" on an empty level', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ret-empty' });
    raw.sendPacket({ cmd: 'publish', topic: 'e//x', payload: Buffer.from('empty level'), qos: 0, retain: true }, 4);
    await new Promise((r) => setTimeout(r, 50));
    const late = await subscriber('e/+/x');
    assert.equal((await expectPacket(late, 'publish')).topic, 'e//x');
    raw.close();
    late.close();
  });
});
