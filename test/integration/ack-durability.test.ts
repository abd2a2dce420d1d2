import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createBroker, LmdbStore, type Broker, type Store } from '../../src/index.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

/**
 * A real LMDB store whose commits are counted and can be held back, to see when the broker
 * acknowledges relative to the disk.
 */
class WatchedStore {
  commits = 0;
  /** commits still to fail, as a full disk would */
  failing = 0;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  readonly store: Store;

  constructor(inner: Store) {
    this.store = new Proxy(inner, {
      get: (target, key) => {
        if (key === 'commit') {
          return async (): Promise<void> => {
            this.commits++;
            if (this.failing > 0) {
              this.failing--;
              throw new Error('no space left on device');
            }
            const gate = this.gate;
            await target.commit();
            if (gate !== undefined) await gate;
          };
        }
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.gate = undefined;
    this.open?.();
  }
}

async function start(): Promise<{ broker: Broker; port: number; watched: WatchedStore }> {
  const watched = new WatchedStore(LmdbStore.open(mkdtempSync(join(tmpdir(), 'midge-ack-'))));
  const broker = await createBroker({ store: watched.store, sysInterval: 0 });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  return { broker, port, watched };
}

/** A persistent session subscribed at QoS 1 whose client has gone: what matches is stored for it. */
async function leaveStoredSession(port: number, clientId: string, filter: string): Promise<void> {
  const offline = await rawConnect(port, 4, { clientId, clean: false });
  await rawSubscribe(offline.raw, 4, 1, [{ topic: filter, qos: 1 }]);
  offline.raw.close();
}

describe('acknowledgements and the disk (lmdb store)', () => {
  const brokers: Broker[] = [];
  after(async () => {
    for (const b of brokers) await b.close();
  });

  test('a QoS 1 publish that nothing stores is acknowledged without waiting for a commit', async () => {
    const b = await start();
    brokers.push(b.broker);
    const sub = await rawConnect(b.port, 4, { clientId: 'clean-sub' });
    await rawSubscribe(sub.raw, 4, 1, [{ topic: 'plain/#', qos: 1 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'plain-pub' });
    await new Promise((r) => setTimeout(r, 50));
    const before = b.watched.commits;
    b.watched.hold();
    pub.raw.sendPacket({ cmd: 'publish', topic: 'plain/a', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false }, 4);
    assert.equal((await expectPacket(pub.raw, 'puback', 1000)).messageId, 7, 'acknowledged while commits are held back');
    assert.equal((await expectPacket(sub.raw, 'publish')).payload?.toString(), 'x');
    assert.equal(b.watched.commits, before, 'no commit was asked for');
    b.watched.release();
    sub.raw.close();
    pub.raw.close();
  });

  test('[MQTT-4.6.0-2] a QoS 1 publish that a persistent session stores is acknowledged only after the commit, and a later one waits behind it', async () => {
    const b = await start();
    brokers.push(b.broker);
    await leaveStoredSession(b.port, 'keeper', 'kept/#');
    const pub = await rawConnect(b.port, 4, { clientId: 'ordered-pub' });
    await new Promise((r) => setTimeout(r, 50));

    b.watched.hold();
    pub.raw.sendPacket({ cmd: 'publish', topic: 'kept/a', payload: Buffer.from('stored'), qos: 1, messageId: 1, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'nobody/b', payload: Buffer.from('not stored'), qos: 1, messageId: 2, retain: false, dup: false }, 4);
    assert.deepEqual(await drainFor(pub.raw, 200), [], 'nothing acknowledged while the commit is held back');
    b.watched.release();
    const acks = await drainFor(pub.raw, 300);
    assert.deepEqual(acks.map((p) => [p.cmd, p.messageId]), [['puback', 1], ['puback', 2]]);
    pub.raw.close();

    const back = await rawConnect(b.port, 4, { clientId: 'keeper', clean: false });
    assert.equal((await expectPacket(back.raw, 'publish')).payload?.toString(), 'stored');
    back.raw.close();
  });

  test('[MQTT-4.8.0-2] (3.1.1) a commit that fails closes the publisher\'s connection without a PUBACK, and the resend is taken', async () => {
    const b = await start();
    brokers.push(b.broker);
    await leaveStoredSession(b.port, 'keeper-480', 'disk/#');
    const pub = await rawConnect(b.port, 4, { clientId: 'disk-pub', clean: false });
    await new Promise((r) => setTimeout(r, 50));

    b.watched.failing = 1;
    const publish = { cmd: 'publish', topic: 'disk/a', payload: Buffer.from('kept'), qos: 1, messageId: 9, retain: false } as const;
    pub.raw.sendPacket({ ...publish, dup: false }, 4);
    assert.ok(await pub.raw.waitClosed(), 'a store error is transient: the connection is closed');
    assert.deepEqual(pub.raw.received.filter((p) => p.cmd === 'puback'), [], 'nothing the disk did not take is acknowledged');

    // the client resends after reconnecting, as it must for an unacknowledged QoS 1 publish
    const again = await rawConnect(b.port, 4, { clientId: 'disk-pub', clean: false });
    again.raw.sendPacket({ ...publish, dup: true }, 4);
    assert.equal((await expectPacket(again.raw, 'puback')).messageId, 9);
    again.raw.close();

    const back = await rawConnect(b.port, 4, { clientId: 'keeper-480', clean: false });
    const got = (await drainFor(back.raw, 300)).filter((p) => p.cmd === 'publish');
    assert.ok(got.length >= 1 && got.every((p) => p.payload?.toString() === 'kept'), 'the message reaches the stored session');
    back.raw.close();
  });
});
