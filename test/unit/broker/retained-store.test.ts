import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { RetainedStore } from '../../../src/broker/retained-store.js';
import { createMessage } from '../../../src/session/message.js';

let now = 0;
const clock = { now: () => now };
const retained = (topic: string, payload: string, expirySeconds?: number) =>
  createMessage(topic, Buffer.from(payload), 0, true, expirySeconds === undefined ? undefined : { messageExpiryInterval: expirySeconds }, clock, undefined);

describe('retained store: the limit on client topics', () => {
  test('the broker\'s own $ topics are held beyond the limit and take none of its slots', () => {
    const store = new RetainedStore();
    store.maxMessages = 1;
    for (let i = 0; i < 5; i++) assert.equal(store.apply(retained(`$SYS/broker/n${i}`, 'x')), true);
    assert.equal(store.apply(retained('client/a', 'x')), true);
    assert.equal(store.apply(retained('client/b', 'x')), false);
    assert.equal(store.clientCount, 1);
    assert.equal(store.size, 6);
  });

  test('a slot comes back when a client topic is cleared, deleted or found expired; replacing a held topic takes none', () => {
    now = 0;
    const store = new RetainedStore();
    store.maxMessages = 1;
    assert.equal(store.apply(retained('t/a', '1')), true);
    assert.equal(store.apply(retained('t/a', '2')), true, 'a held topic may change');
    assert.equal(store.clientCount, 1);
    assert.equal(store.apply(retained('t/a', '')), true);
    assert.equal(store.clientCount, 0);
    assert.equal(store.apply(retained('t/b', '1')), true);
    assert.equal(store.delete('t/b'), true);
    assert.equal(store.delete('t/b'), false);
    assert.equal(store.clientCount, 0);
    assert.equal(store.apply(retained('t/c', '1', 1)), true);
    assert.equal(store.apply(retained('t/d', '1')), false, 'at the limit');
    now = 2000;
    assert.deepEqual(store.match('t/#', clock), []);
    assert.equal(store.clientCount, 0);
    assert.equal(store.apply(retained('t/d', '1')), true);
  });
});
