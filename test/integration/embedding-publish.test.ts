import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { createBroker, type PublishInfo, type PublishOptions } from '../../src/index.js';
import { closeClients, connectClient, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';

after(closeClients);

/**
 * A broker with a 5.0 subscriber (MQTT.js, which allows no topic aliases) and a 3.1.1 one on `#`.
 * `check` makes its refused publishes; then one valid message must be the first either receives,
 * from a broker that kept nothing retained, told no one of a publish and logged no fault.
 */
async function refusedWithSubscribers(check: (b: TestBroker) => Promise<void>): Promise<void> {
  const b = await startBroker({ sysInterval: 0 });
  try {
    const subs: MqttClient[] = [];
    for (const protocolVersion of [5, 4] as const) {
      const sub = await connectClient(b.port, { protocolVersion, clientId: `sub${protocolVersion}` });
      await sub.subscribeAsync('#', { qos: 2 });
      subs.push(sub);
    }
    const published: PublishInfo[] = [];
    b.broker.on('messagePublished', (m) => published.push(m));
    await check(b);
    assert.equal(b.broker.stats.retained, 0, 'no refused message was retained');
    assert.deepEqual(published, [], 'no messagePublished for a refused publish');
    const got = subs.map((s) => nextMessages(s, 1));
    await b.broker.publish({ topic: 'end', payload: 'end', qos: 1 });
    for (const [i, g] of got.entries()) {
      const [m] = await g;
      assert.equal(m?.topic, 'end', `the first message subscriber ${i} received`);
      assert.ok(subs[i]?.connected, `subscriber ${i} is still connected`);
    }
  } finally {
    await b.close();
  }
}

const bad = (options: object): PublishOptions => ({ topic: 'bad', payload: 'x', retain: true, ...options }) as never;

describe('broker.publish refuses what a PUBLISH could not carry, before anything is sent or kept', () => {
  test('qos other than 0, 1 or 2; a payload that is not bytes or a string; retain not a boolean; an unknown option', async () => {
    await refusedWithSubscribers(async ({ broker }) => {
      for (const qos of [3, -1, 1.5, Number.NaN]) await assert.rejects(broker.publish(bad({ qos })), { name: 'RangeError', message: /^publish: qos must be 0, 1 or 2/ });
      await assert.rejects(broker.publish(bad({ qos: '1' })), { name: 'TypeError', message: /^publish: qos must be 0, 1 or 2 \(got "1"\)/ });
      for (const payload of [42, { a: 1 }, [1, 2], null, new Uint16Array([1])]) {
        await assert.rejects(broker.publish(bad({ payload })), { name: 'TypeError', message: /^publish: payload must be a Buffer, a Uint8Array or a string/ });
      }
      await assert.rejects(broker.publish({ topic: 'bad', retain: true } as never), { name: 'TypeError', message: /payload must be .*\(got undefined\); pass "" for an empty message/ });
      await assert.rejects(broker.publish(bad({ retain: 'yes' })), { name: 'TypeError', message: /^publish: retain must be true or false/ });
      await assert.rejects(broker.publish(bad({ qoss: 1 })), { name: 'TypeError', message: /^publish: unknown option "qoss" \(known: topic, payload, qos, retain, properties\)/ });
      await assert.rejects(broker.publish({ payload: 'x' } as never), { name: 'TypeError', message: /^publish: topic must be a string \(got undefined\)/ });
      await assert.rejects(broker.publish(null as never), { name: 'TypeError', message: /^publish: options must be an object/ });
    });
  });

  test('properties that belong to other packets, topic aliases and subscription identifiers are refused; so is a bad value', async () => {
    await refusedWithSubscribers(async ({ broker }) => {
      const withProperties = (properties: unknown): PublishOptions => bad({ properties });
      await assert.rejects(broker.publish(withProperties({ topicAlias: 5 })), { name: 'TypeError', message: /properties\.topicAlias may not be given: the broker chooses topic aliases/ });
      await assert.rejects(broker.publish(withProperties({ subscriptionIdentifiers: [7] })), { name: 'TypeError', message: /properties\.subscriptionIdentifiers may not be given/ });
      for (const key of ['sessionExpiryInterval', 'receiveMaximum', 'maximumPacketSize', 'willDelayInterval', 'serverReference', 'reasonString', 'assignedClientIdentifier', 'bogus']) {
        await assert.rejects(broker.publish(withProperties({ [key]: 10 })), { name: 'TypeError', message: new RegExp(`properties\\.${key} is not a property a PUBLISH carries`) });
      }
      await assert.rejects(broker.publish(withProperties('x')), { name: 'TypeError', message: /properties must be an object/ });
      for (const messageExpiryInterval of [-1, 1.5, 2 ** 32, '60']) {
        await assert.rejects(broker.publish(withProperties({ messageExpiryInterval })), {
          name: typeof messageExpiryInterval === 'number' ? 'RangeError' : 'TypeError',
          message: /messageExpiryInterval must be an integer number of seconds from 0 to 4294967295/,
        });
      }
      await assert.rejects(broker.publish(withProperties({ payloadFormatIndicator: 2 })), { name: 'RangeError', message: /payloadFormatIndicator must be 0 or 1/ });
      await assert.rejects(broker.publish(withProperties({ contentType: 5 })), { name: 'TypeError', message: /contentType must be a string/ });
      // [MQTT-1.5.4-2] no U+0000 in a UTF-8 string; [MQTT-1.5.4-1] no lone surrogate
      await assert.rejects(broker.publish(withProperties({ contentType: 'a\u0000b' })), { name: 'TypeError', message: /contentType contains U\+0000/ });
      await assert.rejects(broker.publish(withProperties({ contentType: 'a\uD800b' })), { name: 'TypeError', message: /contentType is not well-formed Unicode/ });
      await assert.rejects(broker.publish(withProperties({ contentType: 'x'.repeat(65536) })), { name: 'RangeError', message: /contentType is longer than 65535 bytes/ });
      await assert.rejects(broker.publish(withProperties({ correlationData: 'abc' })), { name: 'TypeError', message: /correlationData must be a Buffer or a Uint8Array/ });
      await assert.rejects(broker.publish(withProperties({ correlationData: Buffer.alloc(65536) })), { name: 'RangeError', message: /correlationData is longer than 65535 bytes/ });
      // MQTT.js's shape, an object, is not the broker's: a list of pairs keeps order and repeated names
      await assert.rejects(broker.publish(withProperties({ userProperties: { k: 'v' } })), { name: 'TypeError', message: /userProperties must be an array of \[name, value\] pairs/ });
      await assert.rejects(broker.publish(withProperties({ userProperties: [['k', 1]] })), { name: 'TypeError', message: /userProperties\[0\] value must be a string/ });
      await assert.rejects(broker.publish(withProperties({ userProperties: [['k']] })), { name: 'TypeError', message: /userProperties\[0\] must be a \[name, value\] pair/ });
    });
  });

  test('[MQTT-3.3.2-14] a Response Topic with a wildcard is refused', async () => {
    await refusedWithSubscribers(async ({ broker }) => {
      for (const responseTopic of ['a/#', 'a/+/b', '']) {
        await assert.rejects(broker.publish(bad({ properties: { responseTopic } })), { name: 'TypeError', message: /^publish: properties\.responseTopic / });
      }
    });
  });

  test('[MQTT-3.3.2-4] a payload that is not UTF-8 with payloadFormatIndicator 1 is refused, as it is from a client', async () => {
    await refusedWithSubscribers(async ({ broker }) => {
      await assert.rejects(broker.publish(bad({ payload: Buffer.from([0xff, 0xfe]), properties: { payloadFormatIndicator: 1 } })), {
        name: 'TypeError',
        message: /payloadFormatIndicator 1 says the payload is UTF-8, and it is not/,
      });
    });
  });

  test('a topic with a lone surrogate is refused: on the wire it would be another topic than the one routed', async () => {
    await refusedWithSubscribers(async ({ broker }) => {
      await assert.rejects(broker.publish(bad({ topic: 'a/\uDC00' })), { name: 'TypeError', message: /invalid topic .* is not well-formed Unicode/ });
    });
  });
});

describe('broker.publish: what it takes', () => {
  test('a Uint8Array payload is used without a copy, a string is UTF-8, and the properties a PUBLISH carries reach 5.0 subscribers', async () => {
    const b = await startBroker({ sysInterval: 0 });
    try {
      const v5 = await connectClient(b.port, { protocolVersion: 5, clientId: 'takes5' });
      const v4 = await connectClient(b.port, { protocolVersion: 4, clientId: 'takes4' });
      for (const s of [v5, v4]) await s.subscribeAsync('t/#', { qos: 1 });
      const published: PublishInfo[] = [];
      b.broker.on('messagePublished', (m) => published.push(m));
      const got5 = nextMessages(v5, 2);
      const got4 = nextMessages(v4, 2);
      const backing = new Uint8Array([9, 1, 2, 3, 9]);
      const bytes = backing.subarray(1, 4);
      await b.broker.publish({
        topic: 't/bytes',
        payload: bytes,
        qos: 1,
        properties: {
          payloadFormatIndicator: 0,
          messageExpiryInterval: 600,
          contentType: 'application/octet-stream',
          responseTopic: 't/reply',
          correlationData: new Uint8Array([7, 7]),
          userProperties: [['unit', 'C'], ['unit', 'K']],
        },
      });
      await b.broker.publish({ topic: 't/text', payload: 'é', properties: { payloadFormatIndicator: 1 } });
      assert.equal(published[0]?.payload.buffer, backing.buffer, 'the payload is a view of the caller\'s bytes');
      const [bytes5, text5] = await got5;
      assert.deepEqual([...(bytes5?.payload ?? [])], [1, 2, 3]);
      const props = bytes5?.packet.properties;
      assert.equal(props?.contentType, 'application/octet-stream');
      assert.equal(props?.responseTopic, 't/reply');
      assert.deepEqual([...(props?.correlationData ?? [])], [7, 7]);
      assert.deepEqual({ ...props?.userProperties }, { unit: ['C', 'K'] });
      assert.ok((props?.messageExpiryInterval ?? 0) > 590);
      assert.equal(props?.topicAlias, undefined);
      assert.deepEqual([...(text5?.payload ?? [])], [0xc3, 0xa9]);
      assert.equal(text5?.packet.properties?.payloadFormatIndicator, true);
      const [bytes4, text4] = await got4;
      assert.deepEqual([...(bytes4?.payload ?? [])], [1, 2, 3]);
      assert.equal(text4?.payload.toString(), 'é');
      assert.ok(v5.connected && v4.connected);
    } finally {
      await b.close();
    }
  });
});

describe('broker.publish after close()', () => {
  test('throws "broker is closed", as listen() does, and changes nothing (memory and lmdb)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-pub-closed-'));
    for (const options of [{ persistence: 'memory' as const }, { persistence: 'lmdb' as const, dataDir }]) {
      const broker = await createBroker({ ...options, sysInterval: 0 });
      await broker.close();
      for (const qos of [0, 1, 2] as const) {
        await assert.rejects(broker.publish({ topic: `r/${qos}`, payload: 'x', qos, retain: true }), { message: 'broker is closed' }, options.persistence);
      }
      assert.equal(broker.stats.retained, 0, options.persistence);
    }
    const reopened = await createBroker({ persistence: 'lmdb', dataDir, sysInterval: 0 });
    assert.equal(reopened.stats.retained, 0);
    await reopened.close();
  });
});

describe('broker.publish with retain off', () => {
  test('(5.0 3.2.2.3.5) retain: true is refused where CONNACK tells clients Retain Available 0; the message is not stored', async () => {
    const broker = await createBroker({ mqtt5: { retainAvailable: false }, sysInterval: 0 });
    try {
      await assert.rejects(broker.publish({ topic: 'r/x', payload: 'x', retain: true }), /publish: retain is not available \(mqtt5\.retainAvailable is false\)/);
      assert.equal(broker.stats.retained, 0);
      await broker.publish({ topic: 'r/x', payload: 'x' });
    } finally {
      await broker.close();
    }
  });
});
