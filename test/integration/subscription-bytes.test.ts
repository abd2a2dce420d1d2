import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createBroker, MemoryStore } from '../../src/index.js';
import { resolveConfig } from '../../src/config/load.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';
import { eventually, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

/** A filter of exactly `bytes` UTF-8 bytes under `prefix`. */
const filterOf = (prefix: string, bytes: number): string => prefix + 'x'.repeat(bytes - Buffer.byteLength(prefix));

describe('subscription filter bytes: limits.maxSubscriptionBytes', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ sysInterval: 0, limits: { maxSubscriptionBytes: 100 } });
  });
  after(() => b.close());

  test('[MQTT-3.8.4-5] [MQTT-3.9.3-1] (5.0) the filter that would go beyond the limit gets SUBACK 0x97 with a reason, the others in the same SUBSCRIBE are granted; unsubscribing frees its bytes', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'sb5' });
    const a = filterOf('sb/a/', 40);
    const over = filterOf('sb/o/', 30);
    // 6 characters, 11 bytes: the limit counts UTF-8 bytes
    const wide = 'ééééé/';
    assert.equal(Buffer.byteLength(wide), 11);
    const ack = await rawSubscribe(raw, 5, 1, [{ topic: a, qos: 0 }, { topic: filterOf('sb/b/', 40), qos: 0 }, { topic: over, qos: 0 }, { topic: filterOf('sb/d/', 20), qos: 1 }]);
    assert.deepEqual(ack.granted, [0, 0, 0x97, 1]);
    assert.match(String(ack.properties?.reasonString), /100 bytes of topic filters/);
    // 100 bytes held: nothing more, not even a one-byte filter
    assert.deepEqual((await rawSubscribe(raw, 5, 2, [{ topic: 'z', qos: 0 }])).granted, [0x97]);
    raw.sendPacket({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: [a] }, 5);
    await expectPacket(raw, 'unsuback');
    // 90 bytes held again, room for 10
    assert.deepEqual((await rawSubscribe(raw, 5, 4, [{ topic: over, qos: 0 }, { topic: wide, qos: 0 }, { topic: filterOf('sb/e/', 10), qos: 0 }])).granted, [0, 0x97, 0]);
    raw.close();
  });

  test('[MQTT-3.8.4-5] (3.1.1) the filter beyond the limit gets return code 0x80', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'sb4' });
    const ack = await rawSubscribe(raw, 4, 1, [{ topic: filterOf('sb4/a/', 60), qos: 1 }, { topic: filterOf('sb4/b/', 41), qos: 0 }, { topic: filterOf('sb4/c/', 40), qos: 0 }]);
    assert.deepEqual(ack.granted, [1, 0x80, 0]);
    raw.close();
  });

  test('[MQTT-3.8.4-3] re-subscribing a filter already held is granted at the limit: it replaces, adding no bytes', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'sb-again' });
    const full = filterOf('sb/full/', 100);
    assert.deepEqual((await rawSubscribe(raw, 5, 1, [{ topic: full, qos: 0 }])).granted, [0]);
    assert.deepEqual((await rawSubscribe(raw, 5, 2, [{ topic: full, qos: 1 }, { topic: 'n', qos: 0 }, { topic: full, qos: 2 }])).granted, [1, 0x97, 2]);
    raw.close();
  });

  test('a shared subscription counts the filter as sent, $share/{group}/ included', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'sb-share' });
    // 92 bytes alone, 101 with $share/g/
    const inner = filterOf('sb/s/', 92);
    assert.deepEqual((await rawSubscribe(raw, 5, 1, [{ topic: `$share/g/${inner}`, qos: 0 }, { topic: inner, qos: 0 }])).granted, [0x97, 0]);
    raw.close();
  });

  test('a session taken over by a new connection keeps its filters counted', async () => {
    const options = { clientId: 'sb-take', clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await rawConnect(b.port, 5, options);
    assert.deepEqual((await rawSubscribe(first.raw, 5, 1, [{ topic: filterOf('sb/t/', 90), qos: 0 }])).granted, [0]);
    const second = await rawConnect(b.port, 5, options);
    assert.equal(second.connack.sessionPresent, true);
    assert.deepEqual((await rawSubscribe(second.raw, 5, 1, [{ topic: filterOf('sb/u/', 11), qos: 0 }, { topic: filterOf('sb/v/', 10), qos: 0 }])).granted, [0x97, 0]);
    first.raw.close();
    second.raw.close();
  });
});

test('a persistent session restored from the store after a restart keeps its filters counted', async () => {
  const store = new MemoryStore();
  const start = async (): Promise<{ close(): Promise<void>; port: number }> => {
    const broker = await createBroker({ store, sysInterval: 0, limits: { maxSubscriptionBytes: 100 } });
    return { close: () => broker.close(), port: (await broker.listen({ port: 0, host: '127.0.0.1' })).port };
  };
  const options = { clientId: 'sb-restored', clean: false, properties: { sessionExpiryInterval: 3600 } };
  let b = await start();
  try {
    const first = await rawConnect(b.port, 5, options);
    assert.deepEqual((await rawSubscribe(first.raw, 5, 1, [{ topic: filterOf('sb/r/', 90), qos: 1 }])).granted, [1]);
    first.raw.close();
    await b.close();
    b = await start();
    const back = await rawConnect(b.port, 5, options);
    assert.equal(back.connack.sessionPresent, true);
    assert.deepEqual((await rawSubscribe(back.raw, 5, 1, [{ topic: filterOf('sb/s/', 11), qos: 0 }, { topic: filterOf('sb/t/', 10), qos: 0 }])).granted, [0x97, 0]);
    back.raw.close();
  } finally {
    await b.close();
  }
});

test('while the broker is over maxMemory a new filter gets SUBACK 0x97 (3.1.1: 0x80), one already held is granted again; below it again, new ones are granted', async () => {
  const b = await startBroker({ sysInterval: 0 });
  try {
    const v5 = await rawConnect(b.port, 5, { clientId: 'sbm5' });
    const v4 = await rawConnect(b.port, 4, { clientId: 'sbm4' });
    await rawSubscribe(v5.raw, 5, 1, [{ topic: 'sbm/held', qos: 0 }]);
    await rawSubscribe(v4.raw, 4, 1, [{ topic: 'sbm/held', qos: 0 }]);
    b.broker.updateConfig(resolveConfig({ sysInterval: 0, limits: { maxMemory: 1 } }, 'test'));
    assert.ok(await eventually(() => b.broker.stats.memoryLimitReached, 3000));
    const ack = await rawSubscribe(v5.raw, 5, 2, [{ topic: 'sbm/new', qos: 0 }, { topic: 'sbm/held', qos: 1 }]);
    assert.deepEqual(ack.granted, [0x97, 1]);
    assert.match(String(ack.properties?.reasonString), /memory/);
    assert.deepEqual((await rawSubscribe(v4.raw, 4, 2, [{ topic: 'sbm/new', qos: 0 }, { topic: 'sbm/held', qos: 1 }])).granted, [0x80, 1]);
    b.broker.updateConfig(resolveConfig({ sysInterval: 0 }, 'test'));
    assert.ok(await eventually(() => !b.broker.stats.memoryLimitReached, 3000));
    assert.deepEqual((await rawSubscribe(v5.raw, 5, 3, [{ topic: 'sbm/new', qos: 0 }])).granted, [0]);
    v5.raw.close();
    v4.raw.close();
  } finally {
    await b.close();
  }
});
