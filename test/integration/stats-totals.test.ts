import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createBroker, type Broker } from '../../src/index.js';
import { eventually, expectPacket, rawConnect, rawSubscribe, receiveAcking } from '../helpers/raw-session.js';
import type { RawClient } from '../helpers/raw-client.js';

/**
 * The broker keeps its totals of queued and in-flight messages as sessions change instead of
 * summing every session per read; these follow one session's messages through every way they
 * leave it, so that a missed path shows as a count that never returns to zero.
 */
describe('stats: queued and in-flight totals follow sessions through every change', () => {
  let broker: Broker;
  let port: number;
  before(async () => {
    broker = await createBroker({ limits: { maxInflight: 2 } });
    port = (await broker.listen({ port: 0, host: '127.0.0.1' })).port;
  });
  after(() => broker.close());

  const held = (): { queued: number; queuedBytes: number; inflight: number; offline: number; sessions: number } => {
    const s = broker.stats;
    return { queued: s.queued, queuedBytes: s.queuedBytes, inflight: s.inflight, offline: s.clientsDisconnected, sessions: s.sessions };
  };

  async function publish(pub: RawClient, count: number, firstId: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      pub.sendPacket({ cmd: 'publish', topic: 'totals/t', payload: Buffer.from('abc'), qos: 1, messageId: firstId + i }, 5);
      await expectPacket(pub, 'puback');
    }
  }

  test('[MQTT-3.1.2-5] messages held for a session are counted while queued, in flight, offline, resumed, acknowledged, taken over and expired', async () => {
    const { raw: pub } = await rawConnect(port, 5, { clientId: 'totals-pub' });
    const first = await rawConnect(port, 5, { clientId: 'totals-sub', clean: false, properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'totals/t', qos: 1 }]);

    // a subscriber that does not acknowledge: two in flight (maxInflight), the rest queued
    await publish(pub, 5, 1);
    assert.ok(await eventually(() => held().inflight === 2 && held().queued === 3));
    assert.deepEqual(held(), { queued: 3, queuedBytes: 9, inflight: 2, offline: 0, sessions: 2 });

    // gone: the session keeps what it holds and counts as offline
    first.raw.socket.destroy();
    assert.ok(await eventually(() => held().offline === 1));
    await publish(pub, 1, 6);
    assert.deepEqual(held(), { queued: 4, queuedBytes: 12, inflight: 2, offline: 1, sessions: 2 });

    // back, acknowledging: everything is delivered and nothing is held
    const second = await rawConnect(port, 5, { clientId: 'totals-sub', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(second.connack.sessionPresent, true);
    assert.equal((await receiveAcking(second.raw, 5, 6)).length, 6);
    assert.ok(await eventually(() => held().inflight === 0 && held().queued === 0), JSON.stringify(held()));
    assert.deepEqual(held(), { queued: 0, queuedBytes: 0, inflight: 0, offline: 0, sessions: 2 });

    // taken over by a connection that does not acknowledge, while it holds messages
    await publish(pub, 3, 7);
    const third = await rawConnect(port, 5, { clientId: 'totals-sub', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(third.connack.sessionPresent, true);
    assert.ok(await eventually(() => second.raw.closed));
    assert.ok(await eventually(() => held().inflight === 2 && held().queued === 1), JSON.stringify(held()));
    assert.deepEqual(held(), { queued: 1, queuedBytes: 3, inflight: 2, offline: 0, sessions: 2 });

    // a clean start ends the old session and all it held, live connection and all
    const fourth = await rawConnect(port, 5, { clientId: 'totals-sub', clean: true, properties: { sessionExpiryInterval: 1 } });
    assert.equal(fourth.connack.sessionPresent, false);
    assert.ok(await eventually(() => third.raw.closed));
    assert.deepEqual(held(), { queued: 0, queuedBytes: 0, inflight: 0, offline: 0, sessions: 2 });

    // an offline session that expires takes its messages with it
    await rawSubscribe(fourth.raw, 5, 2, [{ topic: 'totals/t', qos: 1 }]);
    fourth.raw.socket.destroy();
    assert.ok(await eventually(() => held().offline === 1));
    await publish(pub, 2, 10);
    assert.deepEqual(held(), { queued: 2, queuedBytes: 6, inflight: 0, offline: 1, sessions: 2 });
    assert.ok(await eventually(() => held().sessions === 1, 4000), JSON.stringify(held()));
    assert.deepEqual(held(), { queued: 0, queuedBytes: 0, inflight: 0, offline: 0, sessions: 1 });

    // a session that ends with its connection (expiry 0) leaves nothing behind either
    const brief = await rawConnect(port, 5, { clientId: 'totals-brief' });
    await rawSubscribe(brief.raw, 5, 1, [{ topic: 'totals/t', qos: 1 }]);
    await publish(pub, 3, 12);
    assert.ok(await eventually(() => held().inflight === 2 && held().queued === 1));
    brief.raw.socket.destroy();
    assert.ok(await eventually(() => held().sessions === 1));
    assert.deepEqual(held(), { queued: 0, queuedBytes: 0, inflight: 0, offline: 0, sessions: 1 });
    pub.close();
  });
});
