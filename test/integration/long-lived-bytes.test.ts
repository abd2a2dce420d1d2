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

test('messages waiting for a client that stops acknowledging own their bytes when they are a small part of a large read, and all of them once the client goes', async () => {
  const store = new MemoryStore();
  const b = await startBroker({ store, limits: { maxInflight: 1 } });
  try {
    // a persistent session that stays online and never acknowledges: one message in flight, the rest queued
    const stuck = await RawClient.open(b.port, 4);
    stuck.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'stuck', keepalive: 60 });
    stuck.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'keep/#', qos: 1 }] });
    const until = Date.now() + 3000;
    while (!stuck.received.some((p) => p.cmd === 'suback') && Date.now() < until) await delay(10);
    assert.ok(stuck.received.some((p) => p.cmd === 'suback'), 'subscribed');

    const gen = (p: object): Buffer => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 4 });
    const publish = (topic: string, payload: Buffer, messageId: number): Buffer =>
      gen({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false, dup: false });
    const pub = await RawClient.open(b.port, 4);
    pub.send(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'bulk', keepalive: 60 }));
    const acked = async (n: number): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (pub.received.filter((p) => p.cmd === 'puback').length < n && Date.now() < deadline) await delay(10);
      assert.equal(pub.received.filter((p) => p.cmd === 'puback').length, n, 'publishes acknowledged');
    };
    // one small read: two small messages
    pub.send(Buffer.concat([publish('keep/small', Buffer.from('s1'), 1), publish('keep/small', Buffer.from('s2'), 2)]));
    await acked(2);
    // one large read: 30 KB for nobody, then two small messages for the stuck client
    pub.send(Buffer.concat([
      gen({ cmd: 'publish', topic: 'bulk', payload: Buffer.alloc(30_000, 7), qos: 0, retain: false, dup: false }),
      publish('keep/large', Buffer.from('l1'), 3),
      publish('keep/large', Buffer.from('l2'), 4),
    ]));
    await acked(4);

    const state = await store.load();
    const queue = state.sessions.find((s) => s.record.clientId === 'stuck')?.queue ?? [];
    const payloads = (topic: string): Buffer[] => queue.filter((d) => d.message.topic === topic).map((d) => d.message.payload);
    const large = payloads('keep/large');
    assert.deepEqual(large.map(String), ['l1', 'l2'], 'both messages of the large read are queued');
    for (const p of large) assert.ok(owns(p), `a queued payload is a view of a ${p.buffer.byteLength}-byte read`);
    // the first small message is in flight; the second waits, still a view of its small read
    const small = payloads('keep/small');
    assert.deepEqual(small.map(String), ['s2']);
    assert.ok(!owns(small[0] as Buffer) && (small[0] as Buffer).buffer.byteLength <= 8192, 'a small read is not copied');

    // the client goes and its session stays: what waits for it no longer holds any read
    stuck.socket.destroy();
    await delay(200);
    const offline = (await store.load()).sessions.find((s) => s.record.clientId === 'stuck');
    assert.ok(offline !== undefined, 'the session stays');
    const inflight = offline.inflight.map((r) => r.delivery.message.payload);
    assert.deepEqual(inflight.map(String), ['s1']);
    const waiting = [...inflight, ...offline.queue.map((d) => d.message.payload)];
    for (const p of waiting) assert.ok(owns(p), `${String(p)} is a view of a ${p.buffer.byteLength}-byte buffer`);

    // back again: the message in flight is sent again, then the queue, in order
    const back = await RawClient.open(b.port, 4);
    back.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'stuck', keepalive: 60 });
    for (let n = 1; n <= 4; n++) {
      const deadline = Date.now() + 3000;
      while (back.received.filter((p) => p.cmd === 'publish').length < n && Date.now() < deadline) await delay(10);
      const got = back.received.filter((p) => p.cmd === 'publish')[n - 1] as mqttPacket.IPublishPacket | undefined;
      assert.ok(got !== undefined, `message ${n} delivered`);
      assert.equal(String(got.payload), ['s1', 's2', 'l1', 'l2'][n - 1]);
      back.sendPacket({ cmd: 'puback', messageId: got.messageId });
    }
    back.close();
    pub.close();
  } finally {
    await b.close();
  }
});
