import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Admission } from '../../../src/transport/admission.js';
import { PublishQuota } from '../../../src/protocol/publish-quota.js';

describe('connection admission', () => {
  test('refuses with 0x97 above the connection cap', () => {
    const a = new Admission({ maxConnections: 2, maxConnectionRate: 0 }, 0);
    assert.equal(a.admit(1, 0), undefined);
    assert.equal(a.admit(2, 0), undefined);
    assert.equal(a.admit(3, 0)?.reasonCode, 0x97);
  });

  test('refuses with 0x9F above the connection rate, and recovers as time passes', () => {
    const a = new Admission({ maxConnections: 0, maxConnectionRate: 5 }, 0);
    for (let i = 0; i < 5; i++) assert.equal(a.admit(1, 0), undefined, `burst ${i}`);
    assert.equal(a.admit(1, 0)?.reasonCode, 0x9f);
    assert.equal(a.admit(1, 100)?.reasonCode, 0x9f, 'half a token after 100 ms');
    assert.equal(a.admit(1, 200), undefined, 'a whole token after 200 ms');
    assert.equal(a.admit(1, 250)?.reasonCode, 0x9f);
    assert.equal(a.admit(1, 1200), undefined);
  });

  test('no limits: everything passes', () => {
    const a = new Admission({ maxConnections: 0, maxConnectionRate: 0 }, 0);
    for (let i = 0; i < 1000; i++) assert.equal(a.admit(i, 0), undefined);
  });
});

describe('publish quota', () => {
  test('messages per second', () => {
    const q = new PublishQuota({ maxPublishRate: 10, maxPublishBytesRate: 0 }, 0);
    let passed = 0;
    for (let i = 0; i < 100; i++) if (q.take(10, 0)) passed++;
    assert.equal(passed, 10);
    assert.equal(q.take(10, 50), false, 'half a message refilled');
    assert.equal(q.take(10, 100), true);
  });

  test('bytes per second, and one oversized message passes on a full bucket', () => {
    const q = new PublishQuota({ maxPublishRate: 0, maxPublishBytesRate: 1000 }, 0);
    assert.equal(q.take(600, 0), true);
    assert.equal(q.take(600, 0), false);
    assert.equal(q.take(400, 0), true);
    assert.equal(q.take(5000, 0), false);
    assert.equal(q.take(5000, 1000), true, 'a full bucket lets a message bigger than the rate through');
  });
});
