import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveConfig } from '../../src/config/load.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, eventually, expectPacket, rawConnect, rawSubscribe, receiveAcking, type Loose } from '../helpers/raw-session.js';

const RETAINED = 600;
// far fewer than the retained messages a filter matches: the bound they used to overflow
const LIMITS = { maxQueuedMessages: 50, maxInflight: 10 };

async function withRetained(prefix: string, count = RETAINED, expirySeconds?: number): Promise<TestBroker> {
  // no $SYS topics: the retained store holds exactly what the test put there
  const b = await startBroker({ limits: LIMITS, sysInterval: 0 });
  for (let i = 0; i < count; i++) {
    const properties = expirySeconds === undefined ? undefined : { messageExpiryInterval: expirySeconds };
    await b.broker.publish({ topic: `${prefix}/${i}`, payload: `old-${i}`, qos: 1, retain: true, properties });
  }
  return b;
}

/** The next `count` PUBLISH packets, not acknowledged. */
async function publishesUnacked(raw: RawClient, count: number): Promise<Loose[]> {
  const got: Loose[] = [];
  while (got.length < count) {
    const p = (await raw.next()) as Loose;
    if (p.cmd === 'publish') got.push(p);
  }
  return got;
}

function ack(raw: RawClient, version: 4 | 5, publishes: Loose[]): void {
  for (const p of publishes) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, version);
}

describe('retained messages owed on subscribe: all of them, in order, with flow control', () => {
  test('[MQTT-3.3.1-6] [MQTT-3.3.1-9] a filter matching twelve times more retained messages than the session queue holds gets every one, QoS 1 and QoS 0, 3.1.1 and 5.0', async () => {
    const b = await withRetained('rb');
    try {
      for (const version of [4, 5] as const) {
        for (const qos of [1, 0] as const) {
          const { raw } = await rawConnect(b.port, version, { clientId: `rb-${version}-${qos}` });
          await rawSubscribe(raw, version, 1, [{ topic: 'rb/#', qos }]);
          const got = await receiveAcking(raw, version, RETAINED, 10_000);
          assert.equal(new Set(got).size, RETAINED, `${version}/${qos}: ${got.length} received`);
          raw.close();
        }
      }
      assert.equal(b.broker.stats.droppedByReason.queueFull, 0);
      assert.ok(await eventually(() => b.broker.stats.queued === 0));
    } finally {
      await b.close();
    }
  });

  test('[MQTT-4.6.0-6] a message published while retained ones are still owed comes after them, so the topic ends on the newer value', async () => {
    const b = await withRetained('ro');
    try {
      for (const version of [4, 5] as const) {
        const { raw } = await rawConnect(b.port, version, { clientId: `ro-${version}` });
        await rawSubscribe(raw, version, 1, [{ topic: 'ro/#', qos: 1 }]);
        const first = await publishesUnacked(raw, LIMITS.maxInflight);
        // counted as waiting while owed
        assert.equal(b.broker.stats.queued, RETAINED - LIMITS.maxInflight);
        // a QoS 0 message could leave at once, ahead of them (the window is full, not the socket); a
        // QoS 1 one waits for the window
        await b.broker.publish({ topic: 'ro/301', payload: `new0-${version}`, qos: 0 });
        await b.broker.publish({ topic: 'ro/300', payload: `new-${version}`, qos: 1 });
        ack(raw, version, first);
        const rest = await receiveAcking(raw, version, RETAINED - LIMITS.maxInflight + 2, 10_000);
        const order = [...first.map((p) => p.payload?.toString()), ...rest];
        assert.equal(order.length, RETAINED + 2);
        for (const [old, live] of [['old-300', `new-${version}`], ['old-301', `new0-${version}`]]) {
          assert.ok(order.indexOf(old) >= 0 && order.indexOf(old) < order.indexOf(live), `${live} overtook ${old}`);
        }
        assert.deepEqual(order.slice(-2), [`new0-${version}`, `new-${version}`]);
        raw.close();
      }
    } finally {
      await b.close();
    }
  });

  test('[MQTT-3.10.4-2] after UNSUBSCRIBE none of the retained messages still owed for that filter is sent', async () => {
    const b = await withRetained('ru');
    try {
      for (const version of [4, 5] as const) {
        const { raw } = await rawConnect(b.port, version, { clientId: `ru-${version}` });
        await rawSubscribe(raw, version, 1, [{ topic: 'ru/#', qos: 1 }]);
        const first = await publishesUnacked(raw, LIMITS.maxInflight);
        raw.sendPacket({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['ru/#'] }, version);
        await expectPacket(raw, 'unsuback');
        assert.equal(b.broker.stats.queued, 0);
        ack(raw, version, first);
        assert.deepEqual((await drainFor(raw, 300)).filter((p) => p.cmd === 'publish'), []);
        raw.close();
      }
    } finally {
      await b.close();
    }
  });

  test('[MQTT-3.1.2-5] [MQTT-4.4.0-1] a persistent session keeps the retained messages it is owed across a reconnect', async () => {
    const b = await withRetained('rp');
    try {
      for (const version of [4, 5] as const) {
        const clientId = `rp-${version}`;
        const options = { clientId, clean: false, properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined };
        const first = await rawConnect(b.port, version, options);
        await rawSubscribe(first.raw, version, 1, [{ topic: 'rp/#', qos: 1 }]);
        const sent = await publishesUnacked(first.raw, LIMITS.maxInflight);
        first.raw.close();
        assert.ok(await eventually(() => b.broker.stats.clientsDisconnected === 1));
        const back = await rawConnect(b.port, version, options);
        assert.equal(back.connack.sessionPresent, true);
        const got = await receiveAcking(back.raw, version, RETAINED, 10_000);
        // the unacknowledged ones again (DUP), then the rest
        assert.deepEqual(got.slice(0, LIMITS.maxInflight), sent.map((p) => p.payload?.toString()));
        assert.equal(new Set(got).size, RETAINED);
        back.raw.close();
        const gone = await rawConnect(b.port, version, { clientId, clean: true });
        gone.raw.close();
        assert.ok(await eventually(() => b.broker.stats.sessions === 0));
      }
    } finally {
      await b.close();
    }
  });

  test('overlapping filters owe at most one copy of the retained store; the overflow is dropped and counted', async () => {
    const b = await withRetained('rv');
    try {
      const { raw } = await rawConnect(b.port, 5, { clientId: 'rv' });
      // both filters match all 600: the second may add only what the window already took from the first
      await rawSubscribe(raw, 5, 1, [
        { topic: 'rv/#', qos: 1 },
        { topic: '+/+', qos: 1 },
      ]);
      const first = await publishesUnacked(raw, LIMITS.maxInflight);
      assert.equal(b.broker.stats.queued, RETAINED);
      assert.equal(b.broker.stats.droppedByReason.queueFull, RETAINED - LIMITS.maxInflight);
      ack(raw, 5, first);
      const rest = await receiveAcking(raw, 5, RETAINED, 10_000);
      assert.equal(rest.length, RETAINED);
      assert.deepEqual((await drainFor(raw, 300)).filter((p) => p.cmd === 'publish'), []);
      assert.equal(b.broker.stats.queued, 0);
      raw.close();
    } finally {
      await b.close();
    }
  });

  test('[MQTT-3.3.2-5] (5.0) a retained message that expires while it is owed is not sent', async () => {
    const b = await withRetained('rx', 100, 1);
    try {
      const { raw } = await rawConnect(b.port, 5, { clientId: 'rx', properties: { receiveMaximum: 5 } });
      await rawSubscribe(raw, 5, 1, [{ topic: 'rx/#', qos: 1 }]);
      const first = await publishesUnacked(raw, 5);
      await new Promise((r) => setTimeout(r, 1300));
      ack(raw, 5, first);
      assert.deepEqual((await drainFor(raw, 300)).filter((p) => p.cmd === 'publish'), []);
      assert.equal(b.broker.stats.droppedByReason.expired, 95);
      assert.equal(b.broker.stats.queued, 0);
      raw.close();
    } finally {
      await b.close();
    }
  });

  test('a SUBSCRIBE owing more than 10,000 retained messages weighs memory first: over the bound they are refused and counted, not owed', async () => {
    const b = await withRetained('rm', 12_000);
    try {
      const { raw } = await rawConnect(b.port, 5, { clientId: 'rm' });
      // the filter held first (Retain Handling 2: nothing owed), as over the bound only a filter
      // already held may be subscribed again: should the once-a-second check come before the
      // SUBSCRIBE, it is still granted and still weighs memory
      raw.sendPacket({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'rm/#', qos: 1, rh: 2 }] }, 5);
      assert.deepEqual((await expectPacket(raw, 'suback')).granted, [1]);
      // a bound already passed, and not yet seen by the once-a-second check
      b.broker.updateConfig(resolveConfig({ sysInterval: 0, limits: { ...LIMITS, maxMemory: 1 } }, 'test'));
      await rawSubscribe(raw, 5, 1, [{ topic: 'rm/#', qos: 1 }]);
      assert.equal(b.broker.stats.droppedByReason.memoryLimit, 12_000);
      assert.equal(b.broker.stats.queued, 0);
      assert.deepEqual((await drainFor(raw, 200)).filter((p) => p.cmd === 'publish'), []);
      b.broker.updateConfig(resolveConfig({ sysInterval: 0, limits: LIMITS }, 'test'));
      assert.ok(await eventually(() => !b.broker.stats.memoryLimitReached, 3000));
      await rawSubscribe(raw, 5, 2, [{ topic: 'rm/#', qos: 1 }]);
      assert.equal((await receiveAcking(raw, 5, 12_000, 20_000)).length, 12_000);
      raw.close();
    } finally {
      await b.close();
    }
  });
});
