import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { open, type Database } from 'lmdb';
import { LmdbStore } from '../../../src/persistence/lmdb-store.js';
import { STORE_FORMAT, StoreError, type Store } from '../../../src/persistence/store.js';
import { createMessage, type Delivery } from '../../../src/session/message.js';
import { storeContract } from './store-contract.js';

const dirs = new WeakMap<Store, string>();

describe('store contract: lmdb', () => {
  storeContract('lmdb', {
    create: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
      const s = LmdbStore.open(dir);
      dirs.set(s, dir);
      return s;
    },
    reopen: async (s) => {
      const dir = dirs.get(s) as string;
      await s.close();
      const again = LmdbStore.open(dir);
      dirs.set(again, dir);
      return again;
    },
  });
});

describe('lmdb store: data dirs it must refuse', () => {
  test('a data dir written in a newer format is refused with a clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const s = LmdbStore.open(dir);
    await (s as unknown as { meta: { put(k: string, v: number): Promise<boolean> } }).meta.put('format', STORE_FORMAT + 1);
    await s.close();
    assert.throws(() => LmdbStore.open(dir), (err: Error) => err instanceof StoreError && /newer/.test(err.message));
  });

  test('a path that is a file, not a directory, is refused with a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    assert.throws(() => LmdbStore.open(file), (err: Error) => err instanceof StoreError && /cannot open the data dir/.test(err.message));
  });

  test('an LMDB environment another program wrote (a plain key in the main database) is refused, and left as it was', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const theirs = open({ path: dir });
    await theirs.put('their-key', 'their value');
    await theirs.close();
    assert.throws(() => LmdbStore.open(dir), (err: Error) => err instanceof StoreError && /keys Midge never writes \("their-key"\).*not written by Midge/.test(err.message));
    const after = open({ path: dir });
    assert.deepEqual([...after.getKeys()], ['their-key'], 'no format marker nor database of Midge\'s written into it');
    await after.close();
  });

  test('a plain key named like one of Midge\'s databases, or another program\'s named database, is foreign too', async () => {
    const plain = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const a = open({ path: plain });
    await a.put('meta', 'not a database');
    await a.close();
    assert.throws(() => LmdbStore.open(plain), (err: Error) => err instanceof StoreError && /"meta".*not written by Midge/.test(err.message));
    const named = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const b = open({ path: named, maxDbs: 2 });
    await b.openDB({ name: 'orders' }).put('o1', { qty: 1 });
    await b.close();
    assert.throws(() => LmdbStore.open(named), (err: Error) => err instanceof StoreError && /"orders".*not written by Midge/.test(err.message));
  });

  test('a fresh dir and a dir Midge wrote open; a newer Midge\'s dir with a database this one does not know is newer, not foreign', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const s = LmdbStore.open(dir);
    s.retainedSet(createMessage('kept', Buffer.from('v'), 1, true, undefined, { now: () => Date.now() }, undefined));
    await s.commit();
    await s.close();
    const again = LmdbStore.open(dir);
    assert.equal((await again.load()).retained.length, 1);
    await again.close();
    const env = open({ path: dir, maxDbs: 16 });
    await env.openDB({ name: 'meta' }).put('format', STORE_FORMAT + 1);
    await env.openDB({ name: 'added-later' }).put('k', 1);
    await env.close();
    assert.throws(() => LmdbStore.open(dir), (err: Error) => err instanceof StoreError && /newer/.test(err.message));
  });

  test('a corrupted data file is refused, not opened empty', () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    writeFileSync(join(dir, 'data.mdb'), Buffer.alloc(64 * 1024, 0xab));
    assert.throws(() => LmdbStore.open(dir), (err: Error) => err instanceof StoreError);
  });
});

describe('lmdb store: rows of older Midge versions', () => {
  test('[MQTT-4.4.0-1] inflight rows written before their place in the send order was kept still load: ahead of newer ones (they were sent first), by packet id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    const clock = { now: () => Date.now() };
    const d = (topic: string, qos: 1 | 2 = 1): Delivery => ({ message: createMessage(topic, Buffer.from(topic), qos, false, undefined, clock, undefined), qos, retain: false, subscriptionIds: undefined, share: undefined });
    const order = async (s: LmdbStore): Promise<unknown> => (await s.load()).sessions[0]?.inflight.map((e) => [e.packetId, e.state, e.delivery.message.topic]);
    let s = LmdbStore.open(dir);
    s.sessionSaved({ clientId: 'c', expiryInterval: 60, expiresAt: undefined });
    s.inflightSet('c', { packetId: 9, delivery: d('old9'), state: 'publish' });
    s.inflightSet('c', { packetId: 5, delivery: d('old5', 2), state: 'publish' });
    await s.commit();
    // as a Midge of format 1 without the field wrote them: packet id order is all there is
    const rows = (s as unknown as { inflight: Database<Record<string, unknown>, Array<string | number>> }).inflight;
    for (const { key, value } of [...rows.getRange()]) {
      const { o: _o, ...old } = value;
      await rows.put(key, old);
    }
    await s.close();
    s = LmdbStore.open(dir);
    assert.deepEqual(await order(s), [[5, 'publish', 'old5'], [9, 'publish', 'old9']]);
    s.inflightSet('c', { packetId: 1, delivery: d('new1'), state: 'publish' });
    // an old row moved to PUBREL stays with the old ones
    s.inflightSet('c', { packetId: 5, delivery: d('old5', 2), state: 'pubrel' });
    await s.commit();
    await s.close();
    s = LmdbStore.open(dir);
    assert.deepEqual(await order(s), [[5, 'pubrel', ''], [9, 'publish', 'old9'], [1, 'publish', 'new1']]);
    await s.close();
  });
});
