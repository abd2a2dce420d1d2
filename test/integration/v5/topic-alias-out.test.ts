import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import { closeClients, connectClient, startBroker, type TestBroker } from '../../helpers/broker.js';
import { RawClient } from '../../helpers/raw-client.js';

async function rawSubscriber(port: number, clientId: string, properties: Record<string, unknown>, filter: string): Promise<RawClient> {
  const raw = await RawClient.open(port, 5);
  raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId, properties }, 5);
  assert.equal((await raw.next()).cmd, 'connack');
  raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }, 5);
  assert.equal((await raw.next()).cmd, 'suback');
  return raw;
}

describe('MQTT 5 outbound topic aliases (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  after(async () => {
    await closeClients();
    await b.close();
  });

  test('[MQTT-3.1.2-26] [MQTT-3.3.2-11] [MQTT-3.3.2-8] aliases are assigned up to the client maximum, reused, and never 0', async () => {
    const raw = await rawSubscriber(b.port, 'alias-sub', { topicAliasMaximum: 2 }, 'alias/#');
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'alias-pub' });
    const topics = ['alias/one', 'alias/two', 'alias/one', 'alias/three', 'alias/one', 'alias/three'];
    for (const t of topics) await pub.publishAsync(t, t, { qos: 0 });
    const known = new Map<number, string>();
    for (const expected of topics) {
      const p = (await raw.next()) as mqttPacket.IPublishPacket;
      const alias = p.properties?.topicAlias;
      assert.ok(alias !== undefined, 'every publish carries an alias');
      assert.ok(alias >= 1 && alias <= 2, `alias ${alias} within the client's maximum`);
      if (p.topic.length > 0) known.set(alias, p.topic);
      // resolving as a client must give back the published topic
      assert.equal(p.topic.length > 0 ? p.topic : known.get(alias), expected);
      assert.equal(p.payload.toString(), expected);
    }
    raw.close();
  });

  test('[MQTT-3.1.2-27] no topic alias is sent to a client that did not give a Topic Alias Maximum', async () => {
    const raw = await rawSubscriber(b.port, 'no-alias-sub', {}, 'noalias/#');
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'no-alias-pub' });
    await pub.publishAsync('noalias/x', 'a');
    await pub.publishAsync('noalias/x', 'b');
    for (const payload of ['a', 'b']) {
      const p = (await raw.next()) as mqttPacket.IPublishPacket;
      assert.equal(p.topic, 'noalias/x');
      assert.equal(p.properties?.topicAlias, undefined);
      assert.equal(p.payload.toString(), payload);
    }
    raw.close();
  });

  test('[MQTT-3.3.2-7] alias mappings do not carry over to a new connection', async () => {
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'carry-pub' });
    for (let round = 0; round < 2; round++) {
      const raw = await rawSubscriber(b.port, 'carry-sub', { topicAliasMaximum: 5 }, 'carry/#');
      await pub.publishAsync('carry/topic', 'x');
      const p = (await raw.next()) as mqttPacket.IPublishPacket;
      assert.equal(p.topic, 'carry/topic', `round ${round}: the first publish on a connection names the topic`);
      raw.close();
      await raw.waitClosed();
    }
  });

  test('MQTT.js resolves the aliases the broker sends', async () => {
    const sub = await connectClient(b.port, { protocolVersion: 5, clientId: 'alias-mqttjs', properties: { topicAliasMaximum: 3 } });
    await sub.subscribeAsync('js/#');
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'alias-mqttjs-pub' });
    const got: string[] = [];
    const done = new Promise<void>((resolve) => {
      sub.on('message', (topic) => {
        got.push(topic);
        if (got.length === 6) resolve();
      });
    });
    for (const t of ['js/a', 'js/b', 'js/a', 'js/c', 'js/d', 'js/a']) await pub.publishAsync(t, 'm');
    await done;
    assert.deepEqual(got, ['js/a', 'js/b', 'js/a', 'js/c', 'js/d', 'js/a']);
  });

  test('[MQTT-3.1.2-24] (5.0) a topic alias never takes a PUBLISH over the client\'s Maximum Packet Size', async () => {
    // A user property of 125 bytes of properties: the alias (3 bytes) makes the property length a
    // two-byte number, and near 16,384 bytes the remaining length a three-byte one. The payloads
    // sweep those edges; every full-topic frame fits the client's maximum, so every message is due.
    const userProperties = { k: 'v'.repeat(119) };
    const sizeOf = (p: mqttPacket.Packet): number => {
      const remaining = (p as { length: number }).length;
      return 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : 3) + remaining;
    };
    const pub = await connectClient(b.port, { protocolVersion: 5, clientId: 'alias-size-pub' });

    // the first frame of a topic, which carries the topic and a newly assigned alias
    const first = await rawSubscriber(b.port, 'alias-size-first', { topicAliasMaximum: 100, maximumPacketSize: 16389 }, 'asz/#');
    // remaining length without the alias: 2 + 6 (asz/NN) + 1 + 125 + payload, 16,372 to 16,385
    const payloads = Array.from({ length: 14 }, (_, i) => 16238 + i);
    for (let i = 0; i < payloads.length; i++) await pub.publishAsync(`asz/${10 + i}`, Buffer.alloc(payloads[i] as number), { qos: 0, properties: { userProperties } });
    for (let i = 0; i < payloads.length; i++) {
      const p = (await first.next()) as mqttPacket.IPublishPacket;
      assert.equal(p.topic, `asz/${10 + i}`);
      assert.ok(sizeOf(p) <= 16389, `a ${sizeOf(p)}-byte PUBLISH to a client whose maximum is 16389 (alias ${String(p.properties?.topicAlias)})`);
    }
    first.close();

    // a topic of three characters whose alias the client knows: the alias-only frame is larger
    const known = await rawSubscriber(b.port, 'alias-size-known', { topicAliasMaximum: 5, maximumPacketSize: 16386 }, 'k/x');
    await pub.publishAsync('k/x', 'small', { qos: 0, properties: { userProperties } });
    const set = (await known.next()) as mqttPacket.IPublishPacket;
    const alias = set.properties?.topicAlias as number;
    assert.equal(set.topic, 'k/x');
    assert.ok(alias >= 1);
    // remaining length with the topic: 2 + 3 + 1 + 125 + payload, 16,371 to 16,383
    const sweep = Array.from({ length: 13 }, (_, i) => 16240 + i);
    for (const size of sweep) await pub.publishAsync('k/x', Buffer.alloc(size), { qos: 0, properties: { userProperties } });
    for (const size of sweep) {
      const p = (await known.next()) as mqttPacket.IPublishPacket;
      assert.equal(p.payload.length, size);
      assert.ok(sizeOf(p) <= 16386, `a ${sizeOf(p)}-byte PUBLISH to a client whose maximum is 16386`);
      // the alias-only frame where it fits, else the full topic (the client's mapping stays as it was)
      assert.ok(p.topic === 'k/x' || (p.topic === '' && p.properties?.topicAlias === alias));
    }
    known.close();
  });
});
