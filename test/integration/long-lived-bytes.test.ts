import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { MemoryStore } from '../../src/persistence/memory-store.js';
import { closeClients, connectClient, delay, startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

const owns = (b: Buffer): boolean => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;

after(closeClients);

test('a retained message, a message queued for an offline session and a pending will own their bytes: none keeps the read it arrived in alive', async () => {
  const store = new MemoryStore();
  const b = await startBroker({ store });
  try {
    // a persistent session that is offline when the message arrives
    const sleeper = await connectClient(b.port, { clientId: 'sleeper', clean: false, protocolVersion: 4 });
    await sleeper.subscribeAsync('keep/#', { qos: 1 });
    await sleeper.endAsync();

    // one write: CONNECT with a delayed will, a 20 KB message, then a small retained QoS 1 message,
    // so the small payloads arrive inside a read many times their size
    const gen = (p: object): Buffer => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 5 });
    const bytes = Buffer.concat([
      gen({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'device', keepalive: 60,
        properties: { sessionExpiryInterval: 300 },
        will: { topic: 'status/device', payload: Buffer.from('offline'), qos: 1, retain: false, properties: { willDelayInterval: 120, correlationData: Buffer.from('cd') } },
      }),
      gen({ cmd: 'publish', topic: 'bulk', payload: Buffer.alloc(20_000, 7), qos: 0, retain: false, dup: false }),
      gen({ cmd: 'publish', topic: 'keep/a', payload: Buffer.from('21.5'), qos: 1, messageId: 1, retain: true, dup: false }),
    ]);
    const raw = await RawClient.open(b.port, 5);
    raw.send(bytes);
    const deadline = Date.now() + 5000;
    while (!raw.received.some((p) => p.cmd === 'puback') && Date.now() < deadline) await delay(10);
    assert.ok(raw.received.some((p) => p.cmd === 'puback'), 'the retained message was acknowledged');
    // the connection drops without DISCONNECT: the will waits out its delay, in the store
    raw.socket.destroy();
    await delay(200);

    const state = await store.load();
    const retained = state.retained.find((m) => m.topic === 'keep/a');
    assert.ok(retained !== undefined, 'retained message stored');
    assert.equal(retained.payload.toString(), '21.5');
    assert.ok(owns(retained.payload), `retained payload is a view of a ${retained.payload.buffer.byteLength}-byte buffer`);

    const queued = state.sessions.find((s) => s.record.clientId === 'sleeper')?.queue.find((d) => d.message.topic === 'keep/a');
    assert.ok(queued !== undefined, 'queued for the offline session');
    assert.equal(queued.message.payload.toString(), '21.5');
    assert.ok(owns(queued.message.payload), `queued payload is a view of a ${queued.message.payload.buffer.byteLength}-byte buffer`);

    const will = state.wills.find((w) => w.clientId === 'device');
    assert.ok(will !== undefined, 'pending will stored');
    assert.equal(will.will.payload.toString(), 'offline');
    assert.ok(owns(will.will.payload), `will payload is a view of a ${will.will.payload.buffer.byteLength}-byte buffer`);
    const cd = will.will.properties?.correlationData;
    assert.ok(cd !== undefined && cd.toString() === 'cd' && owns(cd), 'the will correlation data is its own too');

    // and the bytes still reach subscribers intact
    const reader = await connectClient(b.port, { clientId: 'reader', protocolVersion: 5 });
    const got = new Promise<Buffer>((resolve) => reader.on('message', (_t, payload) => resolve(payload)));
    await reader.subscribeAsync('keep/a');
    assert.equal((await got).toString(), '21.5');
  } finally {
    await b.close();
  }
});
