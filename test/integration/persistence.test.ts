import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { open } from 'lmdb';
import { createBroker, LmdbStore, MemoryStore, type Broker, type Store } from '../../src/index.js';
import { killMidges, runMidgeToExit, spawnMidge } from '../helpers/cli.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, rawSubscribeEarly, type Loose } from '../helpers/raw-session.js';

interface Kind {
  name: string;
  /** a store for a fresh state */
  fresh(): () => Store;
}

const KINDS: Kind[] = [
  { name: 'memory store', fresh: () => { const s = new MemoryStore(); return () => s; } },
  { name: 'lmdb store', fresh: () => { const dir = mkdtempSync(join(tmpdir(), 'midge-persist-')); return () => LmdbStore.open(dir); } },
];

async function start(store: () => Store, maxQueuedMessages?: number): Promise<{ broker: Broker; port: number }> {
  const broker = await createBroker({ store: store(), sysInterval: 0, limits: { maxQueuedMessages } });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  return { broker, port };
}

const publishes = async (raw: Awaited<ReturnType<typeof rawConnect>>['raw'], ms = 300): Promise<Loose[]> =>
  (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');

for (const kind of KINDS) {
  describe(`persistent state across a broker restart: ${kind.name}`, () => {
    test('[MQTT-4.1.0-1] retained messages a persistent session is still owed after its SUBSCRIBE are owed after a restart, beyond the queue bound', async () => {
      const store = kind.fresh();
      let b = await start(store, 20);
      try {
        for (let i = 0; i < 300; i++) await b.broker.publish({ topic: `owed/${i}`, payload: `v${i}`, qos: 1, retain: true });
        for (const version of [4, 5] as const) {
          const options = { clientId: `owed-${version}`, clean: false, properties: version === 5 ? { sessionExpiryInterval: 3600 } : undefined };
          const first = await rawConnect(b.port, version, options);
          // retained messages may come before the SUBACK, which waits for the commit with lmdb
          const { before } = await rawSubscribeEarly(first.raw, version, 1, [{ topic: 'owed/#', qos: 1 }]);
          // the inflight window's worth arrives and is not acknowledged; the rest is owed
          assert.ok(before.length + (await publishes(first.raw)).length > 0);
          first.raw.close();
        }
        await new Promise((r) => setTimeout(r, 50));
        await b.broker.close();

        b = await start(store, 20);
        for (const version of [4, 5] as const) {
          const options = { clientId: `owed-${version}`, clean: false, properties: version === 5 ? { sessionExpiryInterval: 3600 } : undefined };
          const back = await rawConnect(b.port, version, options);
          assert.equal(back.connack.sessionPresent, true);
          const got = new Set<string>();
          for (let batch = await publishes(back.raw); batch.length > 0; batch = await publishes(back.raw)) {
            for (const p of batch) {
              got.add(p.payload?.toString() ?? '');
              back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, version);
            }
          }
          assert.equal(got.size, 300, `${version}: ${got.size} of 300`);
          back.raw.close();
        }
        assert.equal(b.broker.stats.droppedByReason.queueFull, 0);
      } finally {
        await b.broker.close();
      }
    });

    test('persistent sessions keep subscriptions, options and queued QoS 1/2 messages; retained messages stay; clean sessions go', async () => {
      const store = kind.fresh();
      let b = await start(store);
      const v5 = await rawConnect(b.port, 5, { clientId: 'p5', clean: false, properties: { sessionExpiryInterval: 3600 } });
      v5.raw.sendPacket({ cmd: 'subscribe', messageId: 1, properties: { subscriptionIdentifier: 9 }, subscriptions: [{ topic: 'p/#', qos: 2, rap: true }] }, 5);
      await expectPacket(v5.raw, 'suback');
      v5.raw.close();
      const v4 = await rawConnect(b.port, 4, { clientId: 'p4', clean: false });
      await rawSubscribe(v4.raw, 4, 1, [{ topic: 'p/+', qos: 1 }]);
      v4.raw.close();
      const gone = await rawConnect(b.port, 4, { clientId: 'clean', clean: true });
      await rawSubscribe(gone.raw, 4, 1, [{ topic: 'p/#', qos: 1 }]);
      gone.raw.close();
      await new Promise((r) => setTimeout(r, 50));
      await b.broker.publish({ topic: 'p/1', payload: 'one', qos: 1, retain: true });
      await b.broker.publish({ topic: 'p/2', payload: 'two', qos: 2 });
      await b.broker.publish({ topic: 'p/3', payload: 'zero', qos: 0 });
      await b.broker.close();

      b = await start(store);
      // 'one' and 'two' for each of p5 and p4
      assert.equal(b.broker.stats.queued, 4);
      assert.equal(b.broker.stats.queuedBytes, 12);
      const back5 = await rawConnect(b.port, 5, { clientId: 'p5', clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.equal(back5.connack.sessionPresent, true);
      const got5 = await publishes(back5.raw);
      assert.deepEqual(got5.map((p) => [p.topic, p.payload?.toString(), p.qos]), [['p/1', 'one', 1], ['p/2', 'two', 2]]);
      assert.equal(got5[0]?.retain, true, 'Retain As Published survived');
      assert.deepEqual([(got5[0]?.properties as { subscriptionIdentifier?: number }).subscriptionIdentifier].flat(), [9]);
      const back4 = await rawConnect(b.port, 4, { clientId: 'p4', clean: false });
      assert.equal(back4.connack.sessionPresent, true);
      assert.deepEqual((await publishes(back4.raw)).map((p) => p.topic), ['p/1', 'p/2']);
      const clean = await rawConnect(b.port, 4, { clientId: 'clean', clean: false });
      assert.equal(clean.connack.sessionPresent, false);
      const late = await rawConnect(b.port, 4, { clientId: 'late' });
      await rawSubscribe(late.raw, 4, 1, [{ topic: 'p/#', qos: 0 }]);
      assert.deepEqual((await publishes(late.raw)).map((p) => [p.topic, p.payload?.toString()]), [['p/1', 'one']]);
      for (const c of [back5, back4, clean, late]) c.raw.close();
      await b.broker.close();
    });

    test('unacknowledged deliveries are resent with DUP and their packet ids; a PUBREL state is resumed', async () => {
      const store = kind.fresh();
      let b = await start(store);
      const first = await rawConnect(b.port, 4, { clientId: 'inflight', clean: false });
      await rawSubscribe(first.raw, 4, 1, [{ topic: 'i/#', qos: 2 }]);
      await b.broker.publish({ topic: 'i/1', payload: 'unacked', qos: 1 });
      await b.broker.publish({ topic: 'i/2', payload: 'released', qos: 2 });
      const [q1, q2] = await publishes(first.raw);
      first.raw.sendPacket({ cmd: 'pubrec', messageId: q2?.messageId }, 4);
      await expectPacket(first.raw, 'pubrel');
      first.raw.close();
      await new Promise((r) => setTimeout(r, 50));
      await b.broker.close();

      b = await start(store);
      const back = await rawConnect(b.port, 4, { clientId: 'inflight', clean: false });
      const got = await drainFor(back.raw, 300);
      assert.deepEqual(got.map((p) => [p.cmd, p.messageId, p.cmd === 'publish' ? p.dup : undefined]), [
        ['publish', q1?.messageId, true],
        ['pubrel', q2?.messageId, undefined],
      ]);
      back.raw.sendPacket({ cmd: 'puback', messageId: q1?.messageId }, 4);
      back.raw.sendPacket({ cmd: 'pubcomp', messageId: q2?.messageId }, 4);
      await b.broker.publish({ topic: 'i/3', payload: 'new', qos: 1 });
      assert.equal((await expectPacket(back.raw, 'publish')).payload?.toString(), 'new');
      back.raw.close();
      await b.broker.close();
    });

    for (const version of [4, 5] as const) {
      const spec = version === 5 ? '[MQTT-4.6.0-5] (5.0)' : '[MQTT-4.6.0-6] (3.1.1)';
      test(`[MQTT-4.4.0-1] ${spec} unacknowledged deliveries are resent in the order they were first sent, after two restarts and a packet id used again`, async () => {
        const store = kind.fresh();
        const session = { clientId: `order-${version}`, clean: false, properties: version === 5 ? { sessionExpiryInterval: 3600 } : undefined };
        let b = await start(store);
        try {
          const first = await rawConnect(b.port, version, session);
          await rawSubscribe(first.raw, version, 1, [{ topic: 'o', qos: 1 }]);
          await b.broker.publish({ topic: 'o', payload: 'm1', qos: 1 });
          const m1 = await expectPacket(first.raw, 'publish');
          first.raw.sendPacket({ cmd: 'puback', messageId: m1.messageId }, version);
          await b.broker.publish({ topic: 'o', payload: 'm2', qos: 1 });
          const m2 = await expectPacket(first.raw, 'publish');
          assert.deepEqual([m1.messageId, m2.messageId], [1, 2]);
          first.raw.close();
          await new Promise((r) => setTimeout(r, 50));
          await b.broker.close();

          b = await start(store);
          const second = await rawConnect(b.port, version, session);
          const resent = await expectPacket(second.raw, 'publish');
          assert.deepEqual([resent.payload?.toString(), resent.messageId, resent.dup], ['m2', 2, true]);
          await b.broker.publish({ topic: 'o', payload: 'm3', qos: 1 });
          const m3 = await expectPacket(second.raw, 'publish');
          // the premise: sent after m2, under a lower packet id (1 is free again)
          assert.deepEqual([m3.payload?.toString(), m3.messageId], ['m3', 1]);
          second.raw.close();
          await new Promise((r) => setTimeout(r, 50));
          await b.broker.close();

          b = await start(store);
          const third = await rawConnect(b.port, version, session);
          assert.deepEqual((await publishes(third.raw)).map((p) => [p.payload?.toString(), p.messageId, p.dup]), [['m2', 2, true], ['m3', 1, true]]);
          third.raw.close();
        } finally {
          await b.broker.close();
        }
      });
    }

    test('[MQTT-4.4.0-1] [MQTT-4.6.0-5] (5.0) deliveries in flight across a packet id wraparound (65535, then 1) are resent in the order they were sent', async () => {
      const store = kind.fresh();
      const session = { clientId: 'order-wrap', clean: false, properties: { sessionExpiryInterval: 3600 } };
      let b = await start(store, 100_000);
      try {
        const first = await rawConnect(b.port, 5, session);
        await rawSubscribe(first.raw, 5, 1, [{ topic: 'w', qos: 1 }]);
        // packet ids 1-65534, each acknowledged, move the broker's next id to 65535
        const acked = (async () => {
          for (let n = 0; n < 65534; n++) {
            const p = (await first.raw.next(10_000)) as Loose;
            assert.equal(p.cmd, 'publish');
            first.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
          }
        })();
        for (let n = 0; n < 65534; n += 2000) {
          const batch: Array<Promise<void>> = [];
          for (let i = n; i < Math.min(n + 2000, 65534); i++) batch.push(b.broker.publish({ topic: 'w', payload: `f${i}`, qos: 1 }));
          await Promise.all(batch);
        }
        await acked;
        await b.broker.publish({ topic: 'w', payload: 'last-before-wrap', qos: 1 });
        await b.broker.publish({ topic: 'w', payload: 'first-after-wrap', qos: 1 });
        const sent = [await expectPacket(first.raw, 'publish'), await expectPacket(first.raw, 'publish')];
        assert.deepEqual(sent.map((p) => [p.payload?.toString(), p.messageId]), [['last-before-wrap', 65535], ['first-after-wrap', 1]]);
        first.raw.close();
        await new Promise((r) => setTimeout(r, 50));
        await b.broker.close();

        b = await start(store, 100_000);
        const back = await rawConnect(b.port, 5, session);
        assert.deepEqual((await publishes(back.raw)).map((p) => [p.payload?.toString(), p.messageId, p.dup]), [['last-before-wrap', 65535, true], ['first-after-wrap', 1, true]]);
        back.raw.close();
      } finally {
        await b.broker.close();
      }
    });

    test('exactly once across a restart: an incoming QoS 2 id waiting for PUBREL is remembered', async () => {
      const store = kind.fresh();
      let b = await start(store);
      const pub = await rawConnect(b.port, 4, { clientId: 'q2pub', clean: false });
      pub.raw.sendPacket({ cmd: 'publish', topic: 'once', payload: Buffer.from('1'), qos: 2, messageId: 77 }, 4);
      await expectPacket(pub.raw, 'pubrec');
      pub.raw.close();
      await b.broker.close();

      b = await start(store);
      const sub = await rawConnect(b.port, 4, { clientId: 'q2sub' });
      await rawSubscribe(sub.raw, 4, 1, [{ topic: 'once', qos: 2 }]);
      const again = await rawConnect(b.port, 4, { clientId: 'q2pub', clean: false });
      again.raw.sendPacket({ cmd: 'publish', topic: 'once', payload: Buffer.from('1'), qos: 2, messageId: 77, dup: true }, 4);
      await expectPacket(again.raw, 'pubrec');
      again.raw.sendPacket({ cmd: 'pubrel', messageId: 77 }, 4);
      await expectPacket(again.raw, 'pubcomp');
      assert.equal((await publishes(sub.raw)).length, 0, 'the resend is recognised as a duplicate');
      sub.raw.close();
      again.raw.close();
      await b.broker.close();
    });

    test('[MQTT-3.3.2-5] (5.0) expired messages a full queue let go stay gone after a restart', async () => {
      const store = kind.fresh();
      let b = await start(store, 2);
      const first = await rawConnect(b.port, 5, { clientId: 'expiring', clean: false, properties: { sessionExpiryInterval: 3600 } });
      await rawSubscribe(first.raw, 5, 1, [{ topic: 'e/#', qos: 1 }]);
      first.raw.close();
      await new Promise((r) => setTimeout(r, 50));
      for (const n of [1, 2]) await b.broker.publish({ topic: 'e/1', payload: `stale${n}`, qos: 1, properties: { messageExpiryInterval: 1 } });
      await new Promise((r) => setTimeout(r, 1100));
      await b.broker.publish({ topic: 'e/1', payload: 'fresh', qos: 1 });
      await b.broker.close();

      b = await start(store, 2);
      try {
        assert.equal(b.broker.stats.queued, 1);
        const back = await rawConnect(b.port, 5, { clientId: 'expiring', clean: false, properties: { sessionExpiryInterval: 3600 } });
        assert.deepEqual((await publishes(back.raw)).map((p) => p.payload?.toString()), ['fresh']);
        back.raw.close();
      } finally {
        await b.broker.close();
      }
    });

    test('session expiry keeps counting across a restart', async () => {
      const store = kind.fresh();
      let b = await start(store);
      const first = await rawConnect(b.port, 5, { clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } });
      first.raw.close();
      await new Promise((r) => setTimeout(r, 50));
      await b.broker.close();
      await new Promise((r) => setTimeout(r, 1200));
      b = await start(store);
      const back = await rawConnect(b.port, 5, { clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } });
      assert.equal(back.connack.sessionPresent, false);
      back.raw.close();
      await b.broker.close();
    });

    test('a will waiting out its delay is published after a restart, when the delay ends', async () => {
      const store = kind.fresh();
      let b = await start(store);
      const dying = await rawConnect(b.port, 5, {
        clientId: 'delayed', clean: false, properties: { sessionExpiryInterval: 60 },
        will: { topic: 'will/after', payload: Buffer.from('late will'), qos: 1, retain: true, properties: { willDelayInterval: 1 } },
      });
      dying.raw.close();
      await new Promise((r) => setTimeout(r, 100));
      await b.broker.close();
      b = await start(store);
      await new Promise((r) => setTimeout(r, 1300));
      const watcher = await rawConnect(b.port, 5, { clientId: 'watcher' });
      await rawSubscribe(watcher.raw, 5, 1, [{ topic: 'will/after', qos: 1 }]);
      assert.equal((await expectPacket(watcher.raw, 'publish')).payload?.toString(), 'late will');
      watcher.raw.close();
      await b.broker.close();
    });
  });
}

describe('a data dir that is not Midge\'s, on the command line', () => {
  after(killMidges);

  /** midge run on `dataDir` until it exits by itself */
  const refused = (dataDir: string): ReturnType<typeof runMidgeToExit> => runMidgeToExit(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);

  test('an LMDB environment another program wrote (a key in its main database) makes midge exit with code 3, and is left as it was', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-foreign-'));
    const theirs = open({ path: dataDir });
    await theirs.put('invoice:1', { total: 12 });
    await theirs.close();
    const r = await refused(dataDir);
    assert.equal(r.code, 3);
    assert.match(r.stderr.trim(), /^midge: the data dir .* holds an LMDB environment with keys Midge never writes \("invoice:1"\): it was not written by Midge$/);
    const after = open({ path: dataDir });
    assert.deepEqual([...after.getKeys()], ['invoice:1']);
    await after.close();
  });

  test('a fresh data dir starts, and starts again once Midge has written it', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'midge-own-')), 'data');
    for (let run = 0; run < 2; run++) {
      const { child } = await spawnMidge(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, `run ${run + 1}`);
    }
  });
});
