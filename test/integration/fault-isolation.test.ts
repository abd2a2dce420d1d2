import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBroker, type BrokerOptions } from '../../src/index.js';
import { FaultyStore } from '../helpers/faulty-store.js';
import { closeClients, connectClient, delay, faultLog, nextMessages, type FaultEntry } from '../helpers/broker.js';
import { eventually, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

async function faultyBroker(store: FaultyStore, options: BrokerOptions = {}) {
  const log = faultLog();
  const broker = await createBroker({ ...options, store, sysInterval: 0, logger: log.logger });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  return { broker, port, log };
}

type FaultyBroker = Awaited<ReturnType<typeof faultyBroker>>;

/** The fault was logged as `expected` says; a client that connects after it is still served; then all is closed. */
async function loggedAndServing(b: FaultyBroker, expected: (line: FaultEntry) => boolean): Promise<void> {
  assert.ok(await eventually(() => b.log.entries.some(expected), 4000), b.log.faults.join('\n'));
  const other = await connectClient(b.port, { clientId: `unharmed-${Math.random().toString(36).slice(2)}` });
  await other.subscribeAsync('fine/#', { qos: 1 });
  const got = nextMessages(other, 1);
  await b.broker.publish({ topic: 'fine/1', payload: 'still here', qos: 1 });
  assert.equal((await got)[0]?.payload.toString(), 'still here');
  await closeClients();
  await b.broker.close();
}

/** A persistent session subscribed to `feed` ahead of a clean one, so that its delivery comes first. */
async function feedSubscribers(port: number, clientId: string) {
  const persistent = await rawConnect(port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
  await rawSubscribe(persistent.raw, 5, 1, [{ topic: 'feed', qos: 1 }]);
  const healthy = await rawConnect(port, 5, { clientId: 'healthy' });
  await rawSubscribe(healthy.raw, 5, 1, [{ topic: 'feed', qos: 1 }]);
  return { persistent: persistent.raw, healthy: healthy.raw };
}

/** A persistent session connected to a broker whose store fails to save it going offline (saved with its deadline). */
async function goingOfflineFails(clientId: string, keepalive?: number) {
  const store = new FaultyStore();
  store.failSessionSaved = (record) => record.clientId === clientId && record.expiresAt !== undefined;
  const b = await faultyBroker(store);
  const { raw } = await rawConnect(b.port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 }, ...(keepalive === undefined ? {} : { keepalive }) });
  return { b, raw };
}

/** The connection's fault, with the store's message. */
const serving =
  (message: string) =>
  (l: FaultEntry): boolean =>
    /^internal error serving 127\.0\.0\.1:\d+; its connection is closed$/.test(l.msg) && l.err?.message === message;

/** A fault of the broker's timed work. */
const inTask =
  (task: string) =>
  (l: FaultEntry): boolean =>
    l.msg === `internal error in ${task}; the broker goes on`;

describe('a fault of the broker\'s own is logged and ends no more than its client', () => {
  test('a fault met while handling one client\'s packet closes that client (5.0: DISCONNECT 0x83) and is logged; the broker serves the others', async () => {
    const store = new FaultyStore();
    store.failRetainedSet = (topic) => topic === 'boom';
    const b = await faultyBroker(store);
    const { raw } = await rawConnect(b.port, 5, { clientId: 'faulty' });
    raw.sendPacket({ cmd: 'publish', topic: 'boom', payload: 'x', qos: 0, retain: true }, 5);
    assert.equal((await expectPacket(raw, 'disconnect')).reasonCode, 0x83);
    assert.ok(await raw.waitClosed(2000));
    await loggedAndServing(b, serving('store fault: retainedSet'));
  });

  test('a packet that waited behind an asynchronous hook and meets a fault closes its client with 0x83; the broker goes on', async () => {
    // the PUBLISH waits in the backlog while the SUBSCRIBE's hook answers, and is handled from the promise's callback
    const store = new FaultyStore();
    store.failRetainedSet = (topic) => topic === 'boom';
    const b = await faultyBroker(store, { hooks: { authorizeSubscribe: async () => true } });
    const { raw } = await rawConnect(b.port, 5, { clientId: 'waiting' });
    const subscribe = Buffer.from([0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x01]);
    const publish = Buffer.from([0x31, 0x08, 0x00, 0x04, ...Buffer.from('boom'), 0x00, 0x78]);
    raw.send(Buffer.concat([subscribe, publish]));
    assert.equal((await expectPacket(raw, 'suback')).granted?.[0], 1);
    assert.equal((await expectPacket(raw, 'disconnect')).reasonCode, 0x83);
    assert.ok(await raw.waitClosed(2000));
    await loggedAndServing(b, serving('store fault: retainedSet'));
  });

  test('[MQTT-3.1.2-22] a keep-alive timeout that meets a fault still closes the connection, and is logged', async () => {
    const { b, raw } = await goingOfflineFails('sleepy', 1);
    assert.equal((await expectPacket(raw, 'disconnect', 4000)).reasonCode, 0x8d);
    assert.ok(await raw.waitClosed(2000));
    await loggedAndServing(b, serving('store fault: sessionSaved'));
  });

  test('a connection lost while its session meets a fault going offline is logged; the broker goes on', async () => {
    const { b, raw } = await goingOfflineFails('dropper');
    raw.close();
    await loggedAndServing(b, serving('store fault: sessionSaved'));
  });

  test('a subscriber whose socket drains into a fault is closed with 0x83; the broker goes on', async () => {
    const store = new FaultyStore();
    const b = await faultyBroker(store, { limits: { maxInflight: 65535 } });
    const { raw } = await rawConnect(b.port, 5, { clientId: 'slow', clean: false, properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(raw, 5, 1, [{ topic: 'bulk', qos: 1 }]);
    // stops reading until what the broker writes to it backs up: QoS 0 then waits in its queue,
    // and a QoS 1 message waits behind it, to be sent (and stored as in flight) once the socket drains
    raw.socket.pause();
    const payload = Buffer.alloc(256 * 1024, 1);
    for (let i = 0; i < 200; i++) await b.broker.publish({ topic: 'bulk', payload, qos: 0 });
    await b.broker.publish({ topic: 'bulk', payload: 'last', qos: 1 });
    assert.ok(b.broker.stats.queued > 1, 'messages wait in the queue');
    assert.equal(b.broker.stats.inflight, 0);
    // what the drain then sends on fails to be stored
    store.failInflightSet = (clientId) => clientId === 'slow';
    raw.socket.resume();
    assert.ok(await raw.waitClosed(10_000));
    const last = raw.received.at(-1) as { cmd: string; reasonCode?: number } | undefined;
    assert.deepEqual([last?.cmd, last?.reasonCode], ['disconnect', 0x83]);
    await loggedAndServing(b, serving('store fault: inflightSet'));
  });

  test('a fault met delivering to one subscriber closes only that subscriber (0x83); its publisher is acknowledged, the other subscribers get the message and the session keeps it', async () => {
    const store = new FaultyStore();
    const b = await faultyBroker(store);
    const { persistent: poison, healthy } = await feedSubscribers(b.port, 'poison');
    store.failInflightSet = (clientId) => clientId === 'poison';
    const { raw: pub } = await rawConnect(b.port, 5, { clientId: 'publisher' });
    pub.sendPacket({ cmd: 'publish', topic: 'feed', payload: Buffer.from('one'), qos: 1, messageId: 7 }, 5);
    const ack = await expectPacket(pub, 'puback');
    assert.deepEqual([ack.messageId, ack.reasonCode ?? 0], [7, 0]);
    assert.equal(String((await expectPacket(healthy, 'publish')).payload), 'one');
    assert.equal((await expectPacket(poison, 'disconnect')).reasonCode, 0x83);
    assert.ok(await poison.waitClosed(2000));
    assert.ok(await eventually(() => b.log.entries.some(serving('store fault: inflightSet')), 2000), b.log.faults.join('\n'));

    // offline, the session queues what follows; back, it gets both (the first as it was held in flight)
    pub.sendPacket({ cmd: 'publish', topic: 'feed', payload: Buffer.from('two'), qos: 1, messageId: 8 }, 5);
    assert.equal((await expectPacket(pub, 'puback')).messageId, 8);
    assert.equal(String((await expectPacket(healthy, 'publish')).payload), 'two');
    store.failInflightSet = undefined;
    const back = await rawConnect(b.port, 5, { clientId: 'poison', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(back.connack.sessionPresent, true);
    const resent = [await expectPacket(back.raw, 'publish'), await expectPacket(back.raw, 'publish')];
    assert.deepEqual(
      resent.map((p) => String(p.payload)),
      ['one', 'two'],
    );
    assert.equal(pub.closed, false, 'the publisher was not let go');
    for (const raw of [pub, healthy, back.raw]) raw.close();
    await loggedAndServing(b, serving('store fault: inflightSet'));
  });

  test('a fault met queueing a message for an offline session is logged; the publisher is acknowledged and the other subscribers get it', async () => {
    const store = new FaultyStore();
    const b = await faultyBroker(store);
    const { persistent: away, healthy } = await feedSubscribers(b.port, 'away');
    away.sendPacket({ cmd: 'disconnect' }, 5);
    assert.ok(await away.waitClosed());
    store.failMessageQueued = (clientId) => clientId === 'away';
    const { raw: pub } = await rawConnect(b.port, 5, { clientId: 'publisher' });
    pub.sendPacket({ cmd: 'publish', topic: 'feed', payload: Buffer.from('one'), qos: 1, messageId: 3 }, 5);
    assert.deepEqual([(await expectPacket(pub, 'puback')).reasonCode ?? 0], [0]);
    assert.equal(String((await expectPacket(healthy, 'publish')).payload), 'one');
    for (const raw of [pub, healthy]) raw.close();
    await loggedAndServing(b, inTask('delivering a message to the offline session away'));
  });

  test('a session expiry that meets a fault is logged; the other sessions due still end and the broker goes on', async () => {
    const store = new FaultyStore();
    store.failSessionRemoved = (clientId) => clientId === 'doomed';
    const b = await faultyBroker(store);
    for (const clientId of ['doomed', 'fine']) {
      const { raw } = await rawConnect(b.port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 1 } });
      raw.sendPacket({ cmd: 'disconnect' }, 5);
      assert.ok(await raw.waitClosed());
    }
    assert.ok(await eventually(() => b.log.entries.some(inTask('the expiry of session doomed')), 4000), b.log.faults.join('\n'));
    await delay(100);
    const back = await rawConnect(b.port, 5, { clientId: 'fine', clean: false, properties: { sessionExpiryInterval: 1 } });
    assert.equal(back.connack.sessionPresent, false, 'the session that expired beside the faulty one ended');
    back.raw.close();
    await loggedAndServing(b, inTask('the expiry of session doomed'));
  });

  test('a delayed will that meets a fault is logged; the broker goes on', async () => {
    const store = new FaultyStore();
    store.failWillCleared = (clientId) => clientId === 'willer';
    const b = await faultyBroker(store);
    const { raw } = await rawConnect(b.port, 5, {
      clientId: 'willer',
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'wills/willer', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
    });
    raw.close();
    await loggedAndServing(b, inTask('the delayed will of willer'));
  });

  test('retained messages owed to a persistent session that fail to be stored in a later turn are logged; the broker goes on', async () => {
    const store = new FaultyStore();
    const b = await faultyBroker(store);
    for (let i = 0; i < 1200; i++) await b.broker.publish({ topic: `owed/${i}`, payload: 'r', qos: 1, retain: true });
    // the first 1,000 owed are stored with the SUBSCRIBE, the rest a slice per later turn: those fail
    let queued = 0;
    store.failMessageQueued = (clientId) => clientId === 'owed' && ++queued > 1000;
    const { raw } = await rawConnect(b.port, 5, { clientId: 'owed', clean: false, properties: { sessionExpiryInterval: 60 } });
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 5);
    assert.ok(await eventually(() => b.log.entries.some(inTask('storing the retained messages owed to owed')), 4000), b.log.faults.join('\n'));
    raw.close();
    await loggedAndServing(b, inTask('storing the retained messages owed to owed'));
  });
});
