import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeClients, connectClient, nextMessages, startBroker, type TestBroker } from '../helpers/broker.js';

describe('broker smoke: publish and subscribe over TCP with MQTT.js', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  after(async () => {
    await closeClients();
    await b.close();
  });

  for (const protocolVersion of [3, 4, 5] as const) {
    for (const qos of [0, 1, 2] as const) {
      test(`[MQTT-7.0.0-2] (3.1.1) v${protocolVersion} QoS ${qos} message reaches a subscriber: MQTT.js with its defaults, no extension needed`, async () => {
        const sub = await connectClient(b.port, { protocolVersion, clientId: `sub-${protocolVersion}-${qos}` });
        await sub.subscribeAsync(`smoke/${protocolVersion}/${qos}`, { qos });
        const pub = await connectClient(b.port, { protocolVersion, clientId: `pub-${protocolVersion}-${qos}` });
        const got = nextMessages(sub, 1);
        await pub.publishAsync(`smoke/${protocolVersion}/${qos}`, 'hello', { qos });
        const [m] = await got;
        assert.equal(m?.topic, `smoke/${protocolVersion}/${qos}`);
        assert.equal(m?.payload.toString(), 'hello');
        assert.equal(m?.packet.qos, qos);
      });
    }
  }
});
