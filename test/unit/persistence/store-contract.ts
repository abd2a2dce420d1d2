// The contract every store adapter passes: what goes in comes back out after a reopen.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../../../src/persistence/store.js';
import { createMessage, type Delivery, type Message } from '../../../src/session/message.js';
import type { Subscription } from '../../../src/session/session.js';

export interface StoreHarness {
  create(): Promise<Store>;
  /** closes `store` and opens the same state again (a restart) */
  reopen(store: Store): Promise<Store>;
}

const NOW = 1_700_000_000_000;
const CLOCK = { now: (): number => NOW };

function message(topic: string, payload = topic, qos: 0 | 1 | 2 = 1): Message {
  return createMessage(topic, Buffer.from(payload), qos, false, undefined, CLOCK, 'publisher');
}

function delivery(m: Message, qos: 0 | 1 | 2 = 1): Delivery {
  return { message: m, qos, retain: false, subscriptionIds: undefined, share: undefined };
}

function subscription(filter: string, qos: 0 | 1 | 2 = 1): Subscription {
  return { filter, topicFilter: filter, shareGroup: undefined, qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined };
}

const plain = (m: Message): unknown => ({ topic: m.topic, payload: m.payload.toString('hex'), qos: m.qos, retain: m.retain, properties: m.properties, expiresAt: m.expiresAt, senderId: m.senderId });

export function storeContract(name: string, h: StoreHarness): void {
  test(`${name}: a new store is empty`, async () => {
    const s = await h.create();
    assert.deepEqual(await s.load(), { sessions: [], retained: [], wills: [] });
    await s.close();
  });

  test(`${name}: the latest time the broker noted it was up is read back after a reopen`, async () => {
    let s = await h.create();
    s.aliveAt?.(NOW);
    s.aliveAt?.(NOW + 1000);
    await s.commit();
    s = await h.reopen(s);
    assert.equal((await s.load()).aliveAt, NOW + 1000);
    await s.close();
  });

  test(`${name}: sessions and their subscriptions survive a reopen; removed ones do not`, async () => {
    let s = await h.create();
    s.sessionSaved({ clientId: 'a', expiryInterval: 60, expiresAt: undefined });
    s.sessionSaved({ clientId: 'b', expiryInterval: 0xffffffff, expiresAt: NOW + 5000 });
    s.subscriptionAdded('a', subscription('x/+', 2));
    s.subscriptionAdded('a', { ...subscription('$share/g/y'), topicFilter: 'y', shareGroup: 'g', noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 });
    s.subscriptionAdded('a', subscription('gone'));
    s.subscriptionRemoved('a', 'gone');
    s.sessionSaved({ clientId: 'a', expiryInterval: 120, expiresAt: NOW + 1000 });
    await s.commit();
    s = await h.reopen(s);
    const state = await s.load();
    const byId = new Map(state.sessions.map((x) => [x.record.clientId, x]));
    assert.deepEqual(byId.get('a')?.record, { clientId: 'a', expiryInterval: 120, expiresAt: NOW + 1000 });
    assert.deepEqual(byId.get('b')?.record, { clientId: 'b', expiryInterval: 0xffffffff, expiresAt: NOW + 5000 });
    const subs = (byId.get('a')?.subscriptions ?? []).sort((p, q) => p.filter.localeCompare(q.filter));
    assert.deepEqual(subs, [
      { ...subscription('$share/g/y'), topicFilter: 'y', shareGroup: 'g', noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 },
      subscription('x/+', 2),
    ]);
    await s.close();
  });

  test(`${name}: queues keep their order; unqueued entries are gone; one message serves many queues`, async () => {
    let s = await h.create();
    s.sessionSaved({ clientId: 'q1', expiryInterval: 60, expiresAt: undefined });
    s.sessionSaved({ clientId: 'q2', expiryInterval: 60, expiresAt: undefined });
    const shared = message('shared', 'payload bytes');
    const ds = [0, 1, 2, 3].map((i) => delivery(message(`t/${i}`)));
    for (const d of ds) s.messageQueued('q1', d);
    s.messageQueued('q1', delivery(shared));
    s.messageQueued('q2', delivery(shared, 2));
    s.messageUnqueued('q1', ds[1] as Delivery);
    await s.commit();
    s = await h.reopen(s);
    const state = await s.load();
    const q1 = state.sessions.find((x) => x.record.clientId === 'q1');
    const q2 = state.sessions.find((x) => x.record.clientId === 'q2');
    assert.deepEqual(q1?.queue.map((d) => d.message.topic), ['t/0', 't/2', 't/3', 'shared']);
    assert.deepEqual(q2?.queue.map((d) => [d.message.topic, d.qos]), [['shared', 2]]);
    assert.equal(q1?.queue[3]?.message, q2?.queue[0]?.message, 'the same message object for both queues');
    assert.equal(q2?.queue[0]?.message.payload.toString(), 'payload bytes');
    await s.close();
  });

  test(`${name}: entries loaded from the store can be unqueued after the reopen`, async () => {
    let s = await h.create();
    s.sessionSaved({ clientId: 'q', expiryInterval: 60, expiresAt: undefined });
    s.messageQueued('q', delivery(message('one')));
    s.messageQueued('q', delivery(message('two')));
    await s.commit();
    s = await h.reopen(s);
    const first = (await s.load()).sessions[0]?.queue[0] as Delivery;
    s.messageUnqueued('q', first);
    s.messageQueued('q', delivery(message('three')));
    await s.commit();
    s = await h.reopen(s);
    assert.deepEqual((await s.load()).sessions[0]?.queue.map((d) => d.message.topic), ['two', 'three']);
    await s.close();
  });

  test(`${name}: inflight messages and the PUBREL state; incoming QoS 2 packet ids`, async () => {
    let s = await h.create();
    s.sessionSaved({ clientId: 'i', expiryInterval: 60, expiresAt: undefined });
    const m1 = message('in/1');
    const m2 = message('in/2', 'two', 2);
    s.inflightSet('i', { packetId: 1, delivery: delivery(m1), state: 'publish' });
    s.inflightSet('i', { packetId: 2, delivery: delivery(m2, 2), state: 'publish' });
    s.inflightSet('i', { packetId: 3, delivery: delivery(message('in/3'), 2), state: 'publish' });
    s.inflightSet('i', { packetId: 2, delivery: delivery(m2, 2), state: 'pubrel' });
    s.inflightRemoved('i', 3);
    s.incomingQos2Added('i', 10);
    s.incomingQos2Added('i', 11);
    s.incomingQos2Removed('i', 10);
    await s.commit();
    s = await h.reopen(s);
    const sess = (await s.load()).sessions[0];
    const inflight = (sess?.inflight ?? []).sort((a, b) => a.packetId - b.packetId);
    assert.deepEqual(inflight.map((e) => [e.packetId, e.state, e.delivery.qos]), [[1, 'publish', 1], [2, 'pubrel', 2]]);
    assert.equal(inflight[0]?.delivery.message.topic, 'in/1');
    assert.deepEqual(sess?.incomingQos2, [11]);
    await s.close();
  });

  test(`${name}: [MQTT-4.4.0-1] inflight messages come back in the order they went in flight, not by packet id; a move to PUBREL keeps its place`, async () => {
    let s = await h.create();
    s.sessionSaved({ clientId: 'o', expiryInterval: 60, expiresAt: undefined });
    const m = (topic: string, qos: 1 | 2 = 1): Delivery => delivery(message(topic, topic, qos), qos);
    // sent in this order under these ids (after a restart the broker's ids start again at 1; they wrap after 65535)
    s.inflightSet('o', { packetId: 65535, delivery: m('first'), state: 'publish' });
    const second = m('second', 2);
    s.inflightSet('o', { packetId: 7, delivery: second, state: 'publish' });
    s.inflightSet('o', { packetId: 1, delivery: m('third'), state: 'publish' });
    s.inflightSet('o', { packetId: 7, delivery: second, state: 'pubrel' });
    await s.commit();
    s = await h.reopen(s);
    const order = (st: Awaited<ReturnType<Store['load']>>): unknown => st.sessions[0]?.inflight.map((e) => [e.packetId, e.state]);
    assert.deepEqual(order(await s.load()), [[65535, 'publish'], [7, 'pubrel'], [1, 'publish']]);
    // a fourth goes after them all, under an id freed meanwhile, across a second reopen
    s.inflightRemoved('o', 65535);
    s.inflightSet('o', { packetId: 2, delivery: m('fourth'), state: 'publish' });
    await s.commit();
    s = await h.reopen(s);
    assert.deepEqual(order(await s.load()), [[7, 'pubrel'], [1, 'publish'], [2, 'publish']]);
    await s.close();
  });

  test(`${name}: retained messages are set, replaced and cleared; message fields round-trip`, async () => {
    let s = await h.create();
    const rich = createMessage('r/1', Buffer.from([0, 255, 1]), 2, true, {
      payloadFormatIndicator: 0, contentType: 'application/octet-stream', responseTopic: 'reply', correlationData: Buffer.from('cd'),
      userProperties: [['k', 'v'], ['k', 'w']], messageExpiryInterval: 60,
    }, CLOCK, 'client-9');
    s.retainedSet(message('r/1', 'old'));
    s.retainedSet(rich);
    s.retainedSet(message('r/2'));
    s.retainedSet(message('r/3'));
    s.retainedCleared('r/3');
    await s.commit();
    s = await h.reopen(s);
    const retained = (await s.load()).retained.sort((a, b) => a.topic.localeCompare(b.topic));
    assert.deepEqual(retained.map(plain), [plain(rich), plain(message('r/2'))]);
    assert.ok(Buffer.isBuffer(retained[0]?.payload));
    assert.ok(Buffer.isBuffer(retained[0]?.properties?.correlationData));
    await s.close();
  });

  test(`${name}: wills with their due time`, async () => {
    let s = await h.create();
    const will = { topic: 'w', payload: Buffer.from('bye'), qos: 1 as const, retain: true, properties: { willDelayInterval: 30 } };
    s.willSet({ clientId: 'w1', username: 'u', will, fireAt: NOW + 30_000 });
    s.willSet({ clientId: 'w2', username: undefined, will, fireAt: undefined });
    s.willCleared('w2');
    await s.commit();
    s = await h.reopen(s);
    const wills = (await s.load()).wills;
    assert.equal(wills.length, 1);
    assert.equal(wills[0]?.clientId, 'w1');
    assert.equal(wills[0]?.fireAt, NOW + 30_000);
    assert.equal(wills[0]?.will.payload.toString(), 'bye');
    await s.close();
  });

  test(`${name}: removing a session removes everything under it, and nothing of other sessions`, async () => {
    let s = await h.create();
    const m = message('both');
    for (const id of ['gone', 'kept']) {
      s.sessionSaved({ clientId: id, expiryInterval: 60, expiresAt: undefined });
      s.subscriptionAdded(id, subscription('f'));
      s.messageQueued(id, delivery(m));
      s.inflightSet(id, { packetId: 5, delivery: delivery(message(`${id}/in`)), state: 'publish' });
      s.incomingQos2Added(id, 9);
    }
    s.sessionRemoved('gone');
    await s.commit();
    s = await h.reopen(s);
    const state = await s.load();
    assert.deepEqual(state.sessions.map((x) => x.record.clientId), ['kept']);
    const kept = state.sessions[0];
    assert.equal(kept?.subscriptions.length, 1);
    assert.equal(kept?.queue[0]?.message.topic, 'both', 'a message still referenced stays');
    assert.equal(kept?.inflight.length, 1);
    assert.deepEqual(kept?.incomingQos2, [9]);
    await s.close();
  });

  test(`${name}: thousands of changes in one turn, one commit, all there after the reopen`, async () => {
    let s = await h.create();
    for (let c = 0; c < 50; c++) {
      s.sessionSaved({ clientId: `c${c}`, expiryInterval: 60, expiresAt: undefined });
      for (let i = 0; i < 100; i++) s.messageQueued(`c${c}`, delivery(message(`m/${c}/${i}`)));
    }
    await s.commit();
    s = await h.reopen(s);
    const state = await s.load();
    assert.equal(state.sessions.length, 50);
    assert.equal(state.sessions.reduce((n, x) => n + x.queue.length, 0), 5000);
    await s.close();
  });
}
