import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { WillScheduler } from '../../../src/broker/wills.js';
import type { ClientInfo } from '../../../src/hooks/types.js';

const client: ClientInfo = { id: 'far', username: undefined, remoteAddress: '', protocolVersion: 5, connectedAt: 0, keepAlive: 0 };
const will = { topic: 'status/far', payload: Buffer.from('gone'), qos: 1 as const, retain: false };
const DAY = 24 * 3600 * 1000;

describe('WillScheduler', () => {
  test('[MQTT-3.1.2-8] a will delayed beyond what one timer waits (24.8 days) is published when due, not when the timer first fires', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const published: string[] = [];
      const wills = new WillScheduler((c) => published.push(c.id), (err) => {
        throw err;
      });
      wills.schedule(client, will, (40 * DAY) / 1000);
      mock.timers.tick(25 * DAY);
      assert.deepEqual(published, [], 'not after 25 days');
      mock.timers.tick(15 * DAY - 1);
      assert.deepEqual(published, [], 'not a millisecond early');
      mock.timers.tick(1);
      assert.deepEqual(published, ['far']);
      assert.equal(wills.size, 0);
    } finally {
      mock.timers.reset();
    }
  });
});
