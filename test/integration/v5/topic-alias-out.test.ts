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
});
