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
  test('messages per second: the burst passes, then each message over the rate asks for a pause of its share', () => {
    const q = new PublishQuota({ maxPublishRate: 10, maxPublishBytesRate: 0 }, 0);
    for (let i = 0; i < 10; i++) assert.equal(q.charge(10, 0), 0);
    assert.equal(q.charge(10, 0), 100, 'one message in debt: 1/10 s');
    assert.equal(q.charge(10, 0), 200);
    assert.equal(q.charge(10, 300), 0, 'the debt is paid back by waiting');
  });

  test('bytes per second: a big message asks for a pause as long as its size takes at the rate', () => {
    const q = new PublishQuota({ maxPublishRate: 0, maxPublishBytesRate: 1000 }, 0);
    assert.equal(q.charge(600, 0), 0);
    assert.equal(q.charge(600, 0), 200);
    assert.equal(q.charge(5000, 200), 5000, 'the whole debt, not one second of it');
    assert.equal(q.charge(0, 5200), 0, 'paid off by that one pause');
    assert.equal(q.charge(5000, 5200), 5000, 'so the next one owes only for itself');
  });

  test('limits changed under a quota (a reload) take effect from the next publish', () => {
    const limits = { maxPublishRate: 0, maxPublishBytesRate: 0 };
    const q = new PublishQuota(limits, 0);
    assert.equal(q.charge(10, 0), 0);
    limits.maxPublishRate = 2;
    assert.equal(q.charge(10, 1), 0);
    assert.equal(q.charge(10, 1), 0);
    assert.equal(q.charge(10, 1), 500);
    assert.equal(q.tryTake(10, 2), false);
    limits.maxPublishRate = 0;
    assert.equal(q.tryTake(10, 3), true);
    assert.equal(q.charge(10, 3), 0);
  });

  test('no limits: never a pause', () => {
    assert.equal(PublishQuota.needed({ maxPublishRate: 0, maxPublishBytesRate: 0 }), false);
    assert.equal(PublishQuota.needed({ maxPublishRate: 1, maxPublishBytesRate: 0 }), true);
  });
});
