import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../../helpers/raw-session.js';

describe('MQTT 5.0 will messages (5.0)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker();
  });
  after(() => b.close());

  async function watcher(topic: string): Promise<RawClient> {
    const { raw } = await rawConnect(b.port, 5, { clientId: `watch-${++n}` });
    await rawSubscribe(raw, 5, 1, [{ topic, qos: 1 }]);
    return raw;
  }
  const publishes = async (raw: RawClient, ms = 250): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');
  const will = (topic: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ topic, payload: Buffer.from('bye'), qos: 1, retain: false, ...extra });

  test('[MQTT-3.1.2-7] [MQTT-3.1.2-8] [MQTT-3.1.2-14] the will is stored and published, not retained, when the connection drops', async () => {
    const w = await watcher('w5/drop');
    const { raw } = await rawConnect(b.port, 5, { clientId: 'w5-drop', will: will('w5/drop') });
    raw.close();
    const got = await expectPacket(w, 'publish');
    assert.equal(got.payload?.toString(), 'bye');
    assert.equal(got.retain, false);
    w.close();
  });

  test('[MQTT-3.1.2-15] a will with Will Retain 1 is published as a retained message', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'w5-ret', will: will('w5/ret', { retain: true }) });
    raw.close();
    await new Promise((r) => setTimeout(r, 100));
    const w = await watcher('w5/ret');
    const got = await expectPacket(w, 'publish');
    assert.equal(got.retain, true);
    w.close();
  });

  test('[MQTT-3.1.2-10] [MQTT-3.14.4-3] DISCONNECT 0x00 discards the will', async () => {
    const w = await watcher('w5/normal');
    const { raw } = await rawConnect(b.port, 5, { clientId: 'w5-normal', will: will('w5/normal') });
    raw.sendPacket({ cmd: 'disconnect', reasonCode: 0 }, 5);
    assert.ok(await raw.waitClosed());
    assert.equal((await publishes(w, 300)).length, 0);
    w.close();
  });

  test('DISCONNECT 0x04 (Disconnect with Will Message) publishes the will', async () => {
    const w = await watcher('w5/with');
    const { raw } = await rawConnect(b.port, 5, { clientId: 'w5-with', will: will('w5/with') });
    raw.sendPacket({ cmd: 'disconnect', reasonCode: 0x04 }, 5);
    assert.equal((await expectPacket(w, 'publish')).payload?.toString(), 'bye');
    w.close();
  });

  test('[MQTT-3.1.3-10] the will keeps its User Properties in order, and its other properties', async () => {
    const w = await watcher('w5/props');
    const userProperties = { zeta: '1', alpha: ['2', '3'], mid: '4' };
    const { raw } = await rawConnect(b.port, 5, {
      clientId: 'w5-props',
      will: will('w5/props', { properties: { userProperties, contentType: 'text/plain', payloadFormatIndicator: true, responseTopic: 'r/t', correlationData: Buffer.from('c') } }),
    });
    raw.close();
    const got = await expectPacket(w, 'publish');
    const props = got.properties as Record<string, unknown>;
    assert.deepEqual(Object.entries(props.userProperties as object), Object.entries(userProperties));
    assert.equal(props.contentType, 'text/plain');
    assert.equal(props.payloadFormatIndicator, true);
    assert.equal(props.responseTopic, 'r/t');
    assert.equal((props.correlationData as Buffer).toString(), 'c');
    w.close();
  });

  test('Will Delay Interval: the will waits, and is published once the delay has passed', async () => {
    const w = await watcher('w5/delay');
    const { raw } = await rawConnect(b.port, 5, {
      clientId: 'w5-delay', clean: false, properties: { sessionExpiryInterval: 60 },
      will: will('w5/delay', { properties: { willDelayInterval: 1 } }),
    });
    const t0 = Date.now();
    raw.close();
    assert.equal((await publishes(w, 500)).length, 0, 'not yet');
    await expectPacket(w, 'publish', 3000);
    assert.ok(Date.now() - t0 >= 900);
    w.close();
  });

  test('[MQTT-3.1.3-9] a reconnect before the Will Delay Interval has passed cancels the will', async () => {
    const w = await watcher('w5/cancel');
    const first = await rawConnect(b.port, 5, {
      clientId: 'w5-cancel', clean: false, properties: { sessionExpiryInterval: 60 },
      will: will('w5/cancel', { properties: { willDelayInterval: 1 } }),
    });
    first.raw.close();
    await new Promise((r) => setTimeout(r, 200));
    const again = await rawConnect(b.port, 5, { clientId: 'w5-cancel', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(again.connack.sessionPresent, true);
    assert.equal((await publishes(w, 1500)).length, 0);
    again.raw.close();
    w.close();
  });

  test('the will is published when the session ends, if that comes before the Will Delay Interval', async () => {
    const w = await watcher('w5/session-end');
    const { raw } = await rawConnect(b.port, 5, {
      clientId: 'w5-end', clean: false, properties: { sessionExpiryInterval: 1 },
      will: will('w5/session-end', { properties: { willDelayInterval: 30 } }),
    });
    raw.close();
    const got = await expectPacket(w, 'publish', 3000);
    assert.equal(got.topic, 'w5/session-end');
    w.close();
  });

  test('a session taken over publishes the will of the old connection unless its delay is running', async () => {
    const w = await watcher('w5/takeover');
    const first = await rawConnect(b.port, 5, { clientId: 'w5-take', will: will('w5/takeover') });
    const second = await rawConnect(b.port, 5, { clientId: 'w5-take' });
    assert.equal((await expectPacket(first.raw, 'disconnect')).reasonCode, 0x8e);
    assert.equal((await publishes(w, 300)).length, 1, 'the old connection closed without DISCONNECT');
    second.raw.close();
    w.close();
  });
});
