import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryInUse } from '../../src/broker/memory-guard.js';
import { createBroker, LmdbStore } from '../../src/index.js';
import { resolveConfig } from '../../src/config/load.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { drainFor, eventually, expectPacket, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';

const publishes = async (raw: RawClient, ms = 250): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');

describe('limits: bounded memory per client', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({
      limits: {
        maxPacketSize: 2048,
        maxInflight: 5,
        maxQueuedMessages: 10,
        maxTopicLength: 64,
        maxTopicLevels: 4,
        maxSubscriptionsPerClient: 3,
      },
    });
  });
  after(() => b.close());

  test('[MQTT-3.2.2-15] (5.0) CONNACK tells 5.0 clients the maximum packet size', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'mps-tell' });
    assert.equal((connack.properties as { maximumPacketSize?: number }).maximumPacketSize, 2048);
    raw.close();
  });

  test('a packet over the maximum packet size: 5.0 gets DISCONNECT 0x95, 3.1.1 is closed', async () => {
    const v5 = await rawConnect(b.port, 5, { clientId: 'mps-5' });
    v5.raw.sendPacket({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(4000), qos: 0 }, 5);
    assert.equal((await expectPacket(v5.raw, 'disconnect')).reasonCode, 0x95);
    assert.ok(await v5.raw.waitClosed());
    const v4 = await rawConnect(b.port, 4, { clientId: 'mps-4' });
    v4.raw.sendPacket({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(4000), qos: 0 }, 4);
    assert.ok(await v4.raw.waitClosed());
  });

  test('a fixed header claiming 256 MB is refused at once, before the body', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'huge-claim' });
    raw.send('30ffffff7f');
    assert.ok(await raw.waitClosed(1000));
  });

  test('the inflight window: at most maxInflight unacknowledged messages, the rest follow as acks arrive', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'window' });
    await rawSubscribe(raw, 4, 1, [{ topic: 'win', qos: 1 }]);
    for (let i = 0; i < 8; i++) await b.broker.publish({ topic: 'win', payload: String(i), qos: 1 });
    const first = await publishes(raw);
    assert.equal(first.length, 5);
    for (const p of first) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 4);
    const rest = await publishes(raw);
    assert.deepEqual(rest.map((p) => p.payload?.toString()), ['5', '6', '7']);
    raw.close();
  });

  test('maxInflightBytes: messages go while less than that many payload bytes are in flight, the rest follow as acks arrive, one larger than it goes alone', async () => {
    const own = await startBroker({ limits: { maxInflight: 100, maxInflightBytes: 1000 } });
    try {
      const { raw } = await rawConnect(own.port, 5, { clientId: 'window-bytes' });
      await rawSubscribe(raw, 5, 1, [{ topic: 'wb', qos: 2 }]);
      const payload = (i: number, size = 400): string => String(i).padEnd(size, '.');
      for (let i = 0; i < 6; i++) await own.broker.publish({ topic: 'wb', payload: payload(i), qos: i % 2 === 0 ? 1 : 2 });
      // 0, 400 and 800 bytes in flight let a message go; 1200 does not
      const first = await publishes(raw);
      assert.deepEqual(first.map((p) => p.payload?.toString().slice(0, 1)), ['0', '1', '2']);
      assert.equal(own.broker.stats.queued, 3);
      // a QoS 2 message's bytes are counted until its exchange is over (PUBCOMP), as Mosquitto counts them
      raw.sendPacket({ cmd: 'pubrec', messageId: first[1]?.messageId }, 5);
      await expectPacket(raw, 'pubrel');
      assert.deepEqual(await publishes(raw, 150), [], 'PUBREC alone frees nothing');
      raw.sendPacket({ cmd: 'pubcomp', messageId: first[1]?.messageId }, 5);
      const next = await publishes(raw);
      assert.deepEqual(next.map((p) => p.payload?.toString().slice(0, 1)), ['3']);
      // 1200 bytes in flight (0, 2, 3): acknowledging 0 and 2 leaves 400, so 4 and then 5 go
      for (const p of [first[0], first[2]]) raw.sendPacket({ cmd: 'puback', messageId: p?.messageId }, 5);
      const rest = await publishes(raw);
      assert.deepEqual(rest.map((p) => p.payload?.toString().slice(0, 1)), ['4', '5']);
      raw.sendPacket({ cmd: 'pubrec', messageId: next[0]?.messageId }, 5);
      await expectPacket(raw, 'pubrel');
      raw.sendPacket({ cmd: 'pubcomp', messageId: next[0]?.messageId }, 5);
      for (const p of rest) {
        if (p.qos === 1) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
        else {
          raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, 5);
          await expectPacket(raw, 'pubrel');
          raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, 5);
        }
      }
      await eventually(() => own.broker.stats.inflight === 0);
      // nothing in flight: a message over the limit goes, and the next waits behind it
      await own.broker.publish({ topic: 'wb', payload: payload(7, 5000), qos: 1 });
      await own.broker.publish({ topic: 'wb', payload: payload(8), qos: 1 });
      const big = await publishes(raw);
      assert.deepEqual(big.map((p) => p.payload?.length), [5000]);
      raw.sendPacket({ cmd: 'puback', messageId: big[0]?.messageId }, 5);
      assert.deepEqual((await publishes(raw)).map((p) => p.payload?.toString().slice(0, 1)), ['8']);
      raw.close();
    } finally {
      await own.close();
    }
  });

  test('an offline session queues at most maxQueuedMessages; the overflow is counted', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'queue', clean: false });
    await rawSubscribe(first.raw, 4, 1, [{ topic: 'q/#', qos: 1 }]);
    first.raw.send('e000');
    await first.raw.waitClosed();
    const before = b.broker.stats.droppedByReason.queueFull ?? 0;
    for (let i = 0; i < 12; i++) await b.broker.publish({ topic: 'q/1', payload: `m${i}`, qos: 1 });
    assert.equal((b.broker.stats.droppedByReason.queueFull ?? 0) - before, 2);
    const back = await rawConnect(b.port, 4, { clientId: 'queue', clean: false });
    const got: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (const p of await publishes(back.raw, 200)) {
        got.push(p.payload?.toString() ?? '');
        back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 4);
      }
    }
    assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `m${i}`));
    back.raw.close();
  });

  test('[MQTT-3.3.2-5] (5.0) expired messages in a full offline queue make room: a fresh message is queued, not refused', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'queue-expiry', clean: false, properties: { sessionExpiryInterval: 300 } });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'qe/#', qos: 1 }]);
    first.raw.sendPacket({ cmd: 'disconnect', reasonCode: 0 }, 5);
    await first.raw.waitClosed();
    const full = b.broker.stats.droppedByReason.queueFull ?? 0;
    const expired = b.broker.stats.droppedByReason.expired ?? 0;
    // a lasting message first, then stale ones that fill the queue behind it
    await b.broker.publish({ topic: 'qe/1', payload: 'lasting', qos: 1 });
    for (let i = 0; i < 9; i++) await b.broker.publish({ topic: 'qe/1', payload: `stale${i}`, qos: 1, properties: { messageExpiryInterval: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (let i = 0; i < 3; i++) await b.broker.publish({ topic: 'qe/1', payload: `fresh${i}`, qos: 1 });
    assert.equal((b.broker.stats.droppedByReason.queueFull ?? 0) - full, 0);
    assert.equal((b.broker.stats.droppedByReason.expired ?? 0) - expired, 9);
    const back = await rawConnect(b.port, 5, { clientId: 'queue-expiry', clean: false, properties: { sessionExpiryInterval: 300 } });
    const got: string[] = [];
    for (let round = 0; round < 2; round++) {
      for (const p of await publishes(back.raw, 200)) {
        got.push(p.payload?.toString() ?? '');
        back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 }, 5);
      }
    }
    assert.deepEqual(got, ['lasting', 'fresh0', 'fresh1', 'fresh2']);
    back.raw.close();
  });

  test('a full queue of a connected client drops its oldest QoS 0 message first', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'queue-live' });
    await rawSubscribe(raw, 4, 1, [{ topic: 'ql/#', qos: 1 }]);
    const before = b.broker.stats.droppedByReason.queueFull ?? 0;
    // 5 fill the inflight window, the rest queue behind them (a QoS 0 one among them)
    for (let i = 0; i < 6; i++) await b.broker.publish({ topic: 'ql/1', payload: `q1-${i}`, qos: 1 });
    await b.broker.publish({ topic: 'ql/0', payload: 'q0', qos: 0 });
    for (let i = 6; i < 16; i++) await b.broker.publish({ topic: 'ql/1', payload: `q1-${i}`, qos: 1 });
    // q1-14 displaced the QoS 0 message; q1-15 found no QoS 0 to displace and was dropped
    assert.equal((b.broker.stats.droppedByReason.queueFull ?? 0) - before, 2);
    const got: string[] = [];
    for (let round = 0; round < 4; round++) {
      for (const p of await publishes(raw, 150)) {
        got.push(p.payload?.toString() ?? '');
        raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 4);
      }
    }
    assert.deepEqual(got, Array.from({ length: 15 }, (_, i) => `q1-${i}`));
    raw.close();
  });

  test('maxQueuedBytes: an offline session queues payload bytes up to the limit, QoS 0 gives way first, and the overflow is counted', async () => {
    const own = await startBroker({ limits: { maxQueuedBytes: 100, maxInflight: 2 } });
    try {
      const first = await rawConnect(own.port, 5, { clientId: 'bytes', clean: false, properties: { sessionExpiryInterval: 60 } });
      await rawSubscribe(first.raw, 5, 1, [{ topic: 'qb/#', qos: 1 }]);
      first.raw.send('e000');
      await first.raw.waitClosed();
      // three of 30 bytes fit in 100; the fourth is dropped, as nothing of QoS 0 waits to make room
      for (let i = 0; i < 4; i++) await own.broker.publish({ topic: 'qb/1', payload: `${i}`.repeat(30), qos: 1 });
      assert.equal(own.broker.stats.queuedBytes, 90);
      assert.equal(own.broker.stats.droppedByReason.queueFull, 1);
      const back = await rawConnect(own.port, 5, { clientId: 'bytes', clean: false, properties: { sessionExpiryInterval: 60 } });
      /** Payloads of the next `n` PUBLISH packets (QoS 1 ones acknowledged), then a quiet 150 ms for strays. */
      const take = async (n: number): Promise<string[]> => {
        const got: string[] = [];
        const deadline = Date.now() + 3000;
        while (got.length < n && Date.now() < deadline) {
          for (const p of await publishes(back.raw, 50)) {
            got.push(p.payload?.toString() ?? '');
            if (p.qos === 1) back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
          }
        }
        for (const p of await publishes(back.raw, 150)) got.push(p.payload?.toString() ?? '');
        return got;
      };
      assert.deepEqual(await take(3), ['0', '1', '2'].map((c) => c.repeat(30)));
      assert.equal(own.broker.stats.queuedBytes, 0);
      // connected and not acknowledging: 2 in flight, then the queue, where QoS 0 messages wait
      // behind a QoS 1 one (order is kept) and give way to the next QoS 1 one
      for (let i = 0; i < 2; i++) await own.broker.publish({ topic: 'qb/1', payload: `f${i}`, qos: 1 });
      await own.broker.publish({ topic: 'qb/1', payload: 'g'.repeat(10), qos: 1 });
      for (let i = 0; i < 3; i++) await own.broker.publish({ topic: 'qb/0', payload: `${i}`.repeat(30), qos: 0 });
      assert.equal(own.broker.stats.queuedBytes, 100);
      await own.broker.publish({ topic: 'qb/1', payload: 'w'.repeat(60), qos: 1 });
      // 100 + 60 > 100: the two oldest QoS 0 messages made room
      assert.equal(own.broker.stats.droppedByReason.queueFull, 3);
      assert.equal(own.broker.stats.queuedBytes, 100);
      assert.deepEqual(await take(5), ['f0', 'f1', 'g'.repeat(10), '2'.repeat(30), 'w'.repeat(60)]);
      // a message larger than the whole limit still goes into an empty queue, and fills it
      const big = await rawConnect(own.port, 5, { clientId: 'big', clean: false, properties: { sessionExpiryInterval: 60 } });
      await rawSubscribe(big.raw, 5, 1, [{ topic: 'qb/big', qos: 1 }]);
      big.raw.send('e000');
      await big.raw.waitClosed();
      await own.broker.publish({ topic: 'qb/big', payload: 'b'.repeat(150), qos: 1 });
      await own.broker.publish({ topic: 'qb/big', payload: 'small', qos: 1 });
      assert.equal(own.broker.stats.queuedBytes, 150);
      assert.equal(own.broker.stats.droppedByReason.queueFull, 4);
      back.raw.close();
    } finally {
      await own.close();
    }
  });

  test('offlineQos0: QoS 0 messages for an offline session are dropped by default, or queued in order with QoS 1 ones and dropped first when full (queueFullDrop oldest), or kept while newcomers are dropped (new)', async () => {
    const own = await startBroker({ limits: { offlineQos0: 'queue', maxQueuedMessages: 4 } });
    try {
      const away = async (port: number, version: 4 | 5, clientId: string): Promise<void> => {
        const first = await rawConnect(port, version, { clientId, clean: false, properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined });
        await rawSubscribe(first.raw, version, 1, [{ topic: 'oq/#', qos: 1 }]);
        first.raw.send('e000');
        await first.raw.waitClosed();
      };
      /** Every PUBLISH until 300 ms pass without one, QoS 1 ones acknowledged, as [payload, qos]. */
      const collect = async (port: number, version: 4 | 5, clientId: string): Promise<Array<[string, number]>> => {
        const back = await rawConnect(port, version, { clientId, clean: false, properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined });
        const got: Array<[string, number]> = [];
        for (let batch = await publishes(back.raw, 300); batch.length > 0; batch = await publishes(back.raw, 300)) {
          for (const p of batch) {
            got.push([p.payload?.toString() ?? '', p.qos as number]);
            if (p.qos === 1) back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, version);
          }
        }
        back.raw.close();
        return got;
      };
      // the default: QoS 0 does not wait for an offline session
      await away(b.port, 4, 'oq-default');
      await b.broker.publish({ topic: 'oq/1', payload: 'zero', qos: 0 });
      await b.broker.publish({ topic: 'oq/1', payload: 'one', qos: 1 });
      assert.deepEqual(await collect(b.port, 4, 'oq-default'), [['one', 1]]);

      for (const version of [4, 5] as const) await away(own.port, version, `oq-${version}`);
      for (const [payload, qos] of [['a0', 0], ['b1', 1], ['c0', 0], ['d1', 1], ['e1', 1], ['f0', 0]] as const) {
        await own.broker.publish({ topic: 'oq/1', payload, qos });
      }
      // e1 found the queue full and took a0's place; f0 took c0's
      assert.equal(own.broker.stats.droppedByReason.queueFull, 4);
      for (const version of [4, 5] as const) {
        assert.deepEqual(await collect(own.port, version, `oq-${version}`), [['b1', 1], ['d1', 1], ['e1', 1], ['f0', 0]]);
      }

      // queueFullDrop new: what is queued stays, the newcomers are dropped (as Mosquitto does)
      const keeping = await startBroker({ limits: { offlineQos0: 'queue', maxQueuedMessages: 4, queueFullDrop: 'new' } });
      try {
        await away(keeping.port, 5, 'oq-new');
        for (const [payload, qos] of [['a0', 0], ['b1', 1], ['c0', 0], ['d1', 1], ['e1', 1], ['f0', 0]] as const) {
          await keeping.broker.publish({ topic: 'oq/1', payload, qos });
        }
        assert.equal(keeping.broker.stats.droppedByReason.queueFull, 2);
        assert.deepEqual(await collect(keeping.port, 5, 'oq-new'), [['a0', 0], ['b1', 1], ['c0', 0], ['d1', 1]]);
      } finally {
        await keeping.close();
      }
    } finally {
      await own.close();
    }
  });

  test('offlineQos0: QoS 0 messages still queued when a persistent session goes offline are dropped by default, kept with queue', async () => {
    for (const mode of ['drop', 'queue'] as const) {
      const own = await startBroker({ limits: { offlineQos0: mode, maxInflight: 1 } });
      try {
        for (const version of [4, 5] as const) {
          const clientId = `oq-left-${version}`;
          const connect = (): ReturnType<typeof rawConnect> =>
            rawConnect(own.port, version, { clientId, clean: false, properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined });
          const first = await connect();
          await rawSubscribe(first.raw, version, 1, [{ topic: 'oql/#', qos: 1 }]);
          // p1 takes the one inflight slot and is not acknowledged; the rest wait in the queue, z0 among them
          for (const [payload, qos] of [['p1', 1], ['q2', 1], ['z0', 0], ['q3', 1]] as const) {
            await own.broker.publish({ topic: `oql/${version}`, payload, qos });
          }
          assert.equal(own.broker.stats.queued, 3);
          first.raw.send('e000');
          await first.raw.waitClosed();
          assert.ok(await eventually(() => own.broker.stats.clientsDisconnected === 1));
          assert.equal(own.broker.stats.queued, mode === 'drop' ? 2 : 3);
          const back = await connect();
          const got: string[] = [];
          for (let batch = await publishes(back.raw, 300); batch.length > 0; batch = await publishes(back.raw, 300)) {
            for (const p of batch) {
              got.push(p.payload?.toString() ?? '');
              if (p.qos === 1) back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, version);
            }
          }
          assert.deepEqual(got, mode === 'drop' ? ['p1', 'q2', 'q3'] : ['p1', 'q2', 'z0', 'q3']);
          back.raw.close();
          // the session ends with this client's clean start, so the next version starts from nothing
          const gone = await rawConnect(own.port, version, { clientId, clean: true });
          gone.raw.send('e000');
          await gone.raw.waitClosed();
          assert.ok(await eventually(() => own.broker.stats.sessions === 0));
        }
      } finally {
        await own.close();
      }
    }
  });

  test('topic length and levels: a longer topic name closes a 3.1.1 client and gets DISCONNECT 0x90 in 5.0; filters get SUBACK 0x80 / 0x8F', async () => {
    const v5 = await rawConnect(b.port, 5, { clientId: 'tl5' });
    const ack5 = await rawSubscribe(v5.raw, 5, 1, [{ topic: 'a/b/c/d/e', qos: 0 }, { topic: 'x'.repeat(65), qos: 0 }, { topic: 'a/b/c/d', qos: 0 }]);
    assert.deepEqual(ack5.granted, [0x8f, 0x8f, 0]);
    v5.raw.sendPacket({ cmd: 'publish', topic: 'a/b/c/d/e', payload: Buffer.from('x'), qos: 0 }, 5);
    assert.equal((await expectPacket(v5.raw, 'disconnect')).reasonCode, 0x90);
    const v4 = await rawConnect(b.port, 4, { clientId: 'tl4' });
    const ack4 = await rawSubscribe(v4.raw, 4, 1, [{ topic: 'a/b/c/d/e', qos: 0 }, { topic: 'ok', qos: 1 }]);
    assert.deepEqual(ack4.granted, [0x80, 1]);
    v4.raw.sendPacket({ cmd: 'publish', topic: 'y'.repeat(65), payload: Buffer.from('x'), qos: 0 }, 4);
    assert.ok(await v4.raw.waitClosed());
  });

  test('subscriptions per client: beyond the limit SUBACK says 0x97 (5.0) or 0x80 (3.1.1); replacing one still works', async () => {
    const v5 = await rawConnect(b.port, 5, { clientId: 'subs5' });
    const ack = await rawSubscribe(v5.raw, 5, 1, [{ topic: 's/1', qos: 0 }, { topic: 's/2', qos: 0 }, { topic: 's/3', qos: 0 }, { topic: 's/4', qos: 0 }, { topic: 's/1', qos: 1 }]);
    assert.deepEqual(ack.granted, [0, 0, 0, 0x97, 1]);
    v5.raw.close();
    const v4 = await rawConnect(b.port, 4, { clientId: 'subs4' });
    const ack4 = await rawSubscribe(v4.raw, 4, 1, [{ topic: 's/1', qos: 0 }, { topic: 's/2', qos: 0 }, { topic: 's/3', qos: 0 }, { topic: 's/4', qos: 0 }]);
    assert.deepEqual(ack4.granted, [0, 0, 0, 0x80]);
    v4.raw.close();
  });

  test('a subscriber that stops reading slows neither the publisher nor other subscribers, and its backlog stays bounded', async () => {
    const own = await startBroker({ limits: { maxQueuedMessages: 100, maxInflight: 10 } });
    try {
      const stuck = await RawClient.open(own.port, 4);
      stuck.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'stuck' }, 4);
      await expectPacket(stuck, 'connack');
      await rawSubscribe(stuck, 4, 1, [{ topic: 'flood', qos: 1 }]);
      stuck.socket.pause(); // stops reading: the kernel buffers fill, then the broker's queue
      const fast = await rawConnect(own.port, 4, { clientId: 'fast' });
      await rawSubscribe(fast.raw, 4, 1, [{ topic: 'flood', qos: 0 }]);
      const pub = await rawConnect(own.port, 4, { clientId: 'flooder' });
      const payload = Buffer.alloc(4096, 0x61);
      const count = 3000;
      const window = 20;
      let sent = 0;
      let acked = 0;
      let fastGot = 0;
      const t0 = Date.now();
      // a publisher with up to 20 unacknowledged messages: it goes as fast as the broker acknowledges
      while (acked < count) {
        while (sent < count && sent - acked < window) {
          pub.raw.sendPacket({ cmd: 'publish', topic: 'flood', payload, qos: 1, messageId: (sent % 65535) + 1 }, 4);
          sent++;
        }
        const p = await pub.raw.next(10_000);
        if (p.cmd === 'puback') acked++;
        while (fast.raw.received.length > 0) if (fast.raw.received.shift()?.cmd === 'publish') fastGot++;
      }
      const took = Date.now() - t0;
      assert.ok(await eventually(() => {
        while (fast.raw.received.length > 0) if (fast.raw.received.shift()?.cmd === 'publish') fastGot++;
        return fastGot === count;
      }, 10_000), `the reading subscriber got ${fastGot}/${count}`);
      const stats = own.broker.stats;
      assert.ok(stats.queued <= 100, `broker holds ${stats.queued} queued messages for the stuck client`);
      assert.ok(stats.inflight <= 10);
      assert.ok((stats.droppedByReason.queueFull ?? 0) > 0, 'the overflow was counted');
      assert.ok(took < 20_000, `publisher took ${took} ms`);
      stuck.close();
      fast.raw.close();
      pub.raw.close();
    } finally {
      await own.close();
    }
  });
});

describe('limits: connections, publish rates and retained messages', () => {
  test('a 3.1.1 client sending more unacknowledged QoS 1 publishes than the receive maximum is read more slowly, not disconnected; 5.0 gets 0x93', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-rm-'));
    const broker = await createBroker({ store: LmdbStore.open(dir), sysInterval: 0, limits: { receiveMaximum: 50 } });
    try {
      const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
      const sub = await rawConnect(port, 4, { clientId: 'rm-sub' });
      await rawSubscribe(sub.raw, 4, 1, [{ topic: 'rm/#', qos: 0 }]);
      const v4 = await rawConnect(port, 4, { clientId: 'rm-v4' });
      // 500 in one go, ten times the receive maximum, retained so that each waits for the store's commit
      for (let i = 1; i <= 500; i++) v4.raw.sendPacket({ cmd: 'publish', topic: `rm/${i}`, payload: Buffer.from(String(i)), qos: 1, messageId: i, retain: true }, 4);
      const acks: number[] = [];
      while (acks.length < 500) acks.push((await expectPacket(v4.raw, 'puback', 10_000)).messageId as number);
      assert.deepEqual(acks, Array.from({ length: 500 }, (_, i) => i + 1), 'acknowledged in order');
      assert.equal(v4.raw.closed, false);
      const got = (await drainFor(sub.raw, 300)).filter((p) => p.cmd === 'publish');
      assert.equal(got.length, 500);

      const v5 = await rawConnect(port, 5, { clientId: 'rm-v5' });
      for (let i = 1; i <= 500; i++) v5.raw.sendPacket({ cmd: 'publish', topic: `rm/${i}`, payload: Buffer.from('x'), qos: 1, messageId: i, retain: true }, 5);
      let disconnect: Loose | undefined;
      for (let p = (await v5.raw.next(10_000)) as Loose; ; p = (await v5.raw.next(10_000)) as Loose) {
        if (p.cmd === 'disconnect') {
          disconnect = p;
          break;
        }
      }
      assert.equal(disconnect?.reasonCode, 0x93);
      for (const c of [sub, v4]) c.raw.close();
    } finally {
      await broker.close();
    }
  });

  test('maxMemory: past it new connections get 0x97 / 3, messages that would wait in a queue and new retained topics are refused, live deliveries go on; raising it resumes', async () => {
    // room for about 40 queued 1 MB payloads beyond what this process already holds
    const b = await startBroker({ sysInterval: 0, limits: { maxMemory: memoryInUse() + 40 * 1048576, maxQueuedMessages: 1000 } });
    try {
      const away = await rawConnect(b.port, 5, { clientId: 'mem-away', clean: false, properties: { sessionExpiryInterval: 600 } });
      await rawSubscribe(away.raw, 5, 1, [{ topic: 'mem/#', qos: 1 }]);
      away.raw.send('e000');
      await away.raw.waitClosed();
      const live = await rawConnect(b.port, 5, { clientId: 'mem-live' });
      await rawSubscribe(live.raw, 5, 1, [{ topic: 'mem/live', qos: 0 }]);
      const pub = await rawConnect(b.port, 5, { clientId: 'mem-pub' });

      let sent = 0;
      while (!b.broker.stats.memoryLimitReached && sent < 400) {
        await b.broker.publish({ topic: 'mem/queued', payload: Buffer.alloc(1048576, sent), qos: 1 });
        sent++;
        if (sent % 10 === 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(await eventually(() => b.broker.stats.memoryLimitReached, 3000), `not reached after ${sent} MB queued`);

      // nothing more waits in the offline session's queue
      const queued = b.broker.stats.queued;
      const before = b.broker.stats.droppedByReason.memoryLimit;
      for (let i = 0; i < 5; i++) await b.broker.publish({ topic: 'mem/queued', payload: 'x', qos: 1 });
      assert.equal(b.broker.stats.queued, queued);
      assert.equal(b.broker.stats.droppedByReason.memoryLimit, before + 5);
      // a connected client that can take a message still gets it
      pub.raw.sendPacket({ cmd: 'publish', topic: 'mem/live', payload: Buffer.from('still'), qos: 0 }, 5);
      assert.equal((await expectPacket(live.raw, 'publish')).payload?.toString(), 'still');
      // a retained message on a new topic is refused; one on a topic already held would replace it
      pub.raw.sendPacket({ cmd: 'publish', topic: 'mem/new-retained', payload: Buffer.from('r'), qos: 1, retain: true, messageId: 1 }, 5);
      assert.equal((await expectPacket(pub.raw, 'puback')).reasonCode, 0x97);
      // new connections are refused with the reason
      const v5 = await rawConnect(b.port, 5, { clientId: 'mem-new5' });
      assert.equal(v5.connack.reasonCode, 0x97);
      assert.ok(await v5.raw.waitClosed());
      const v4 = await rawConnect(b.port, 4, { clientId: 'mem-new4' });
      assert.equal(v4.connack.returnCode, 3);
      assert.ok(await v4.raw.waitClosed());
      const http = await b.broker.listenHttp({ port: 0 });
      assert.match(await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text(), /midge_memory_limit_reached 1/);

      // a new limit (SIGHUP with a config file) applies within a second
      b.broker.updateConfig(resolveConfig({ sysInterval: 0, limits: { maxMemory: 0, maxQueuedMessages: 1000 } }, 'test'));
      assert.ok(await eventually(() => !b.broker.stats.memoryLimitReached, 3000));
      const again = await rawConnect(b.port, 5, { clientId: 'mem-again' });
      assert.equal(again.connack.reasonCode ?? 0, 0);
      for (const c of [again, live, pub]) c.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxConnections: the connection over the limit gets CONNACK 0x97 (5.0) or return code 3 (3.1.1) and is closed', async () => {
    const b = await startBroker({ limits: { maxConnections: 2 } });
    try {
      const one = await rawConnect(b.port, 4, { clientId: 'one' });
      const two = await rawConnect(b.port, 5, { clientId: 'two' });
      const v5 = await rawConnect(b.port, 5, { clientId: 'three' });
      assert.equal(v5.connack.reasonCode, 0x97);
      assert.ok(await v5.raw.waitClosed());
      const v4 = await rawConnect(b.port, 4, { clientId: 'four' });
      assert.equal(v4.connack.returnCode, 3);
      assert.ok(await v4.raw.waitClosed());
      one.raw.close();
      await eventually(() => b.broker.stats.clientsConnected === 1);
      await new Promise((r) => setTimeout(r, 50));
      const again = await rawConnect(b.port, 4, { clientId: 'five' });
      assert.equal(again.connack.returnCode, 0, 'a freed place is taken again');
      again.raw.close();
      two.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxConnectionRate: connections beyond the rate get CONNACK 0x9F', async () => {
    const b = await startBroker({ limits: { maxConnectionRate: 3 } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) {
        const c = await rawConnect(b.port, 5, { clientId: `rate-${i}` });
        codes.push(c.connack.reasonCode as number);
        c.raw.close();
      }
      assert.deepEqual(codes.slice(0, 3), [0, 0, 0]);
      assert.ok(codes.slice(3).every((c) => c === 0x9f), codes.join(','));
    } finally {
      await b.close();
    }
  });

  test('maxPublishRate: a client over its rate is slowed down, and every message still arrives', async () => {
    const b = await startBroker({ limits: { maxPublishRate: 50 } });
    try {
      const sub = await rawConnect(b.port, 4, { clientId: 'rate-sub' });
      await rawSubscribe(sub.raw, 4, 1, [{ topic: 'rate', qos: 0 }]);
      const pub = await rawConnect(b.port, 4, { clientId: 'rate-pub' });
      const t0 = Date.now();
      for (let i = 0; i < 100; i++) pub.raw.sendPacket({ cmd: 'publish', topic: 'rate', payload: Buffer.from(String(i)), qos: 0 }, 4);
      let got = 0;
      assert.ok(await eventually(() => {
        while (sub.raw.received.length > 0) if (sub.raw.received.shift()?.cmd === 'publish') got++;
        return got === 100;
      }, 5000), `got ${got}/100`);
      const took = Date.now() - t0;
      // a burst of 50 passes at once, the other 50 at 50/s
      assert.ok(took >= 700, `100 messages at 50/s after a burst of 50 took only ${took} ms`);
      assert.ok(b.broker.stats.publishesThrottled > 0);
      assert.equal(b.broker.stats.messagesDropped, 0);
      sub.raw.close();
      pub.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxPublishRate, refuse (the default for 5.0): over the rate, PUBACK/PUBREC 0x97 and QoS 0 dropped; the rate refills', async () => {
    const b = await startBroker({ limits: { maxPublishRate: 5 } });
    try {
      const sub = await rawConnect(b.port, 5, { clientId: 'refuse-sub' });
      await rawSubscribe(sub.raw, 5, 1, [{ topic: 'rr/#', qos: 0 }]);
      const pub = await rawConnect(b.port, 5, { clientId: 'refuse-pub' });
      const codes: number[] = [];
      for (let i = 1; i <= 8; i++) {
        pub.raw.sendPacket({ cmd: 'publish', topic: 'rr/q1', payload: Buffer.from(String(i)), qos: 1, messageId: i }, 5);
        codes.push((await expectPacket(pub.raw, 'puback')).reasonCode ?? 0);
      }
      assert.deepEqual(codes, [0, 0, 0, 0, 0, 0x97, 0x97, 0x97]);
      pub.raw.sendPacket({ cmd: 'publish', topic: 'rr/q2', payload: Buffer.from('x'), qos: 2, messageId: 20 }, 5);
      assert.equal((await expectPacket(pub.raw, 'pubrec')).reasonCode, 0x97);
      pub.raw.sendPacket({ cmd: 'publish', topic: 'rr/q0', payload: Buffer.from('dropped'), qos: 0 }, 5);
      assert.deepEqual((await publishes(sub.raw, 200)).map((p) => p.payload?.toString()), ['1', '2', '3', '4', '5']);
      assert.ok((b.broker.stats.droppedByReason.rateLimited ?? 0) >= 5);
      await new Promise((r) => setTimeout(r, 450));
      pub.raw.sendPacket({ cmd: 'publish', topic: 'rr/q1', payload: Buffer.from('later'), qos: 1, messageId: 30 }, 5);
      assert.equal((await expectPacket(pub.raw, 'puback')).reasonCode ?? 0, 0, 'the rate refills');
      sub.raw.close();
      pub.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxPublishRate with publishRateAction throttle: 5.0 clients are slowed down instead, nothing dropped', async () => {
    const b = await startBroker({ limits: { maxPublishRate: 20, publishRateAction: 'throttle' } });
    try {
      const pub = await rawConnect(b.port, 5, { clientId: 'throttle-pub' });
      const t0 = Date.now();
      for (let i = 1; i <= 40; i++) pub.raw.sendPacket({ cmd: 'publish', topic: 'tt', payload: Buffer.from('x'), qos: 1, messageId: i }, 5);
      const codes: number[] = [];
      for (let i = 0; i < 40; i++) codes.push((await expectPacket(pub.raw, 'puback', 5000)).reasonCode ?? 0);
      assert.ok(codes.every((c) => c === 0));
      assert.ok(Date.now() - t0 >= 700, 'the second half waited for the rate');
      pub.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxPublishBytesRate with throttle: large messages pass at the byte rate, none dropped, and the paused client keeps its keep alive', async () => {
    const b = await startBroker({ limits: { maxPublishBytesRate: 100_000, publishRateAction: 'throttle' } });
    try {
      const sub = await rawConnect(b.port, 4, { clientId: 'bytes-sub' });
      await rawSubscribe(sub.raw, 4, 1, [{ topic: 'big', qos: 0 }]);
      // keep alive 1 s: the broker times it out after 1.5 s without a packet, shorter than the pauses
      const pub = await rawConnect(b.port, 4, { clientId: 'bytes-pub', keepalive: 1 });
      const size = 200_000;
      const t0 = Date.now();
      for (let i = 0; i < 4; i++) pub.raw.sendPacket({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(size, i), qos: 0 }, 4);
      // a client keeps pinging while it waits; the broker reads those only when the pause ends
      const ping = setInterval(() => pub.raw.sendPacket({ cmd: 'pingreq' }, 4), 1000);
      const arrived: number[] = [];
      try {
        assert.ok(await eventually(() => {
          while (sub.raw.received.length > 0) if (sub.raw.received.shift()?.cmd === 'publish') arrived.push(Date.now() - t0);
          return arrived.length === 4 || pub.raw.closed;
        }, 10_000), `got ${arrived.length}/4`);
      } finally {
        clearInterval(ping);
      }
      assert.equal(pub.raw.closed, false, 'the broker paused the client; it must not time it out for that');
      assert.equal(arrived.length, 4);
      // a full bucket (100 KB) lets the first through; the other 700 KB of debt takes 7 s at 100 KB/s,
      // of which the last message's own 2 s come after it: it arrives after 5 s, not 3 (one a second)
      assert.ok((arrived[3] as number) >= 4500, `800 KB at 100 KB/s arrived at ${arrived.join(', ')} ms`);
      assert.equal(b.broker.stats.messagesDropped, 0);
      pub.raw.sendPacket({ cmd: 'pingreq' }, 4);
      assert.ok(await eventually(() => pub.raw.received.some((p) => p.cmd === 'pingresp'), 5000), 'the client is still served');
      sub.raw.close();
      pub.raw.close();
    } finally {
      await b.close();
    }
  });

  test('publish rate limits changed by a reload apply to clients already connected, on and off', async () => {
    const b = await startBroker({ sysInterval: 0 });
    // what the command line does on SIGHUP, with the file's sysInterval the one the broker runs with
    const reload = (limits: Record<string, unknown>): string[] =>
      b.broker.updateConfig({ ...b.broker.config, sysInterval: 0, limits: { ...b.broker.config.limits, ...limits } });
    try {
      const pub = await rawConnect(b.port, 5, { clientId: 'reload-pub' });
      const burst = async (from: number): Promise<number[]> => {
        for (let i = 0; i < 20; i++) pub.raw.sendPacket({ cmd: 'publish', topic: 'rl', payload: Buffer.from('x'), qos: 1, messageId: from + i }, 5);
        const codes: number[] = [];
        for (let i = 0; i < 20; i++) codes.push((await expectPacket(pub.raw, 'puback')).reasonCode ?? 0);
        return codes;
      };
      assert.ok((await burst(1)).every((c) => c === 0));
      assert.deepEqual(reload({ maxPublishRate: 10 }), [], 'nothing of this needs a restart (sysInterval unchanged either)');
      const limited = await burst(100);
      // a burst of 10, and maybe a token refilled while the 20 were handled
      const accepted = limited.filter((c) => c === 0).length;
      assert.ok(accepted >= 10 && accepted <= 11, limited.join(','));
      assert.equal(limited.filter((c) => c === 0x97).length, 20 - accepted);
      reload({ maxPublishRate: 0 });
      assert.ok((await burst(200)).every((c) => c === 0), 'a limit switched off no longer holds the client');
      pub.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxRetainedMessages: at the limit a new topic is refused to 5.0 clients at QoS 1/2 (0x97) and delivered but not retained at QoS 0 and for others; held topics still change', async () => {
    const b = await startBroker({ limits: { maxRetainedMessages: 2 }, sysInterval: 0 });
    try {
      await b.broker.publish({ topic: 'keep/1', payload: 'a', retain: true });
      await b.broker.publish({ topic: 'keep/2', payload: 'b', retain: true });
      const live = await rawConnect(b.port, 4, { clientId: 'ret-live' });
      await rawSubscribe(live.raw, 4, 1, [{ topic: 'keep/3', qos: 0 }]);
      await b.broker.publish({ topic: 'keep/3', payload: 'c', retain: true });
      assert.equal((await expectPacket(live.raw, 'publish')).payload?.toString(), 'c', 'still delivered');
      await b.broker.publish({ topic: 'keep/2', payload: 'b2', retain: true });
      assert.equal(b.broker.stats.retained, 2);
      assert.equal(b.broker.stats.retainedRefused, 1);
      const late = await rawConnect(b.port, 4, { clientId: 'ret-late' });
      await rawSubscribe(late.raw, 4, 1, [{ topic: 'keep/#', qos: 0 }]);
      const got = (await publishes(late.raw)).map((p) => `${p.topic}=${p.payload?.toString()}`).sort();
      assert.deepEqual(got, ['keep/1=a', 'keep/2=b2']);
      // a 5.0 client is told: PUBACK 0x97, and the message is not sent on either
      const v5 = await rawConnect(b.port, 5, { clientId: 'ret-v5' });
      v5.raw.sendPacket({ cmd: 'publish', topic: 'keep/4', payload: Buffer.from('d'), qos: 1, messageId: 1, retain: true }, 5);
      assert.equal((await expectPacket(v5.raw, 'puback')).reasonCode, 0x97);
      v5.raw.sendPacket({ cmd: 'publish', topic: 'keep/1', payload: Buffer.from('a2'), qos: 1, messageId: 2, retain: true }, 5);
      assert.equal((await expectPacket(v5.raw, 'puback')).reasonCode ?? 0, 0, 'a held topic may still change');
      // QoS 0 has no PUBACK to carry 0x97: the message is delivered, not retained, as for 3.1.1
      v5.raw.sendPacket({ cmd: 'publish', topic: 'keep/3', payload: Buffer.from('c2'), qos: 0, retain: true }, 5);
      assert.equal((await expectPacket(live.raw, 'publish')).payload?.toString(), 'c2', 'a 5.0 QoS 0 retained publish over the limit still reaches live subscribers');
      assert.equal(b.broker.stats.retained, 2);
      assert.equal(b.broker.stats.retainedRefused, 3);
      live.raw.close();
      late.raw.close();
      v5.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxRetainedMessages counts the clients\' retained topics only: the broker\'s own $SYS ones take none of the slots, and the counts reported agree', async () => {
    const b = await startBroker({ limits: { maxRetainedMessages: 2 }, sysInterval: 1 });
    const h = await b.broker.listenHttp({ port: 0, adminToken: 'limits-token' });
    try {
      const watch = await rawConnect(b.port, 4, { clientId: 'ret-sys-watch' });
      await rawSubscribe(watch.raw, 4, 1, [{ topic: '$SYS/#', qos: 0 }]);
      const sysTopics = new Set((await publishes(watch.raw)).map((p) => p.topic as string));
      assert.ok(sysTopics.size > 2, `${sysTopics.size} $SYS topics retained`);

      const v5 = await rawConnect(b.port, 5, { clientId: 'ret-sys-v5' });
      const codes: number[] = [];
      // a client's own `$` topic is one of its topics like any other
      for (const [i, topic] of ['slot/1', '$dev/slot/2', 'slot/3', '$dev/slot/4'].entries()) {
        v5.raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('v'), qos: 1, messageId: i + 1, retain: true }, 5);
        codes.push((await expectPacket(v5.raw, 'puback')).reasonCode ?? 0);
      }
      assert.deepEqual(codes, [0, 0, 0x97, 0x97], 'two client topics fit; the third and fourth are over the limit');
      assert.equal(b.broker.stats.retained, 2);
      assert.equal(b.broker.stats.retainedRefused, 2);

      // $SYS topics are still retained, and the count they publish is the clients' count
      const late = await rawConnect(b.port, 4, { clientId: 'ret-sys-late' });
      await rawSubscribe(late.raw, 4, 1, [{ topic: '$SYS/#', qos: 0 }]);
      // the retained copy may predate the client topics: the next interval's is the one to read
      const counts = (await publishes(late.raw, 1500)).filter((p) => p.topic === '$SYS/broker/retained messages/count');
      assert.ok(counts.length >= 2, 'the retained copy, then the next interval\'s');
      assert.equal(counts.at(-1)?.payload?.toString(), '2');

      const metrics = await (await fetch(`http://127.0.0.1:${h.port}/metrics`)).text();
      assert.match(metrics, /^midge_retained_messages 2$/m);
      const listed = (await (await fetch(`http://127.0.0.1:${h.port}/api/v1/retained?limit=1000`, { headers: { authorization: 'Bearer limits-token' } })).json()) as { total: number; items: Array<{ topic: string }> };
      const topics = listed.items.map((r) => r.topic);
      assert.ok(topics.includes('slot/1') && topics.includes('$dev/slot/2') && !topics.includes('slot/3') && !topics.includes('$dev/slot/4'));
      assert.ok(topics.includes('$SYS/broker/version'), 'the listing shows the broker\'s own retained messages too');
      watch.raw.close();
      late.raw.close();
      v5.raw.close();
    } finally {
      await b.close();
    }
  });
});
