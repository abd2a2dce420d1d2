import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LmdbStore } from '../../../src/persistence/lmdb-store.js';
import { STORE_FORMAT, StoreError, type Store } from '../../../src/persistence/store.js';
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

  test('a corrupted data file is refused, not opened empty', () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lmdb-'));
    writeFileSync(join(dir, 'data.mdb'), Buffer.alloc(64 * 1024, 0xab));
    assert.throws(() => LmdbStore.open(dir), (err: Error) => err instanceof StoreError);
  });
});
