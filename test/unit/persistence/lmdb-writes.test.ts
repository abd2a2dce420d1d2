import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { LmdbStore, StoreError } from '../../../src/index.js';
import { LmdbWrites, heapOverrun } from '../../../src/persistence/lmdb-writes.js';
import type { RootDatabase } from 'lmdb';
import type { Message } from '../../../src/session/message.js';

function message(topic: string, bytes: number): Message {
  return { topic, payload: Buffer.alloc(bytes, 1), qos: 1, retain: true, properties: undefined, expiresAt: undefined, senderId: undefined, frame: undefined, frameSlot: -1, frames: undefined, framesExpiry: -1, bytesSettled: false };
}

describe('lmdb store: a data dir that cannot take the writes', () => {
  test('lmdb-js\'s report of a failed page write is measured against the 100-byte buffer it is written into', () => {
    assert.equal(heapOverrun('Commit failed (see commitError for details)'), 0);
    assert.equal(heapOverrun('Input/output error'), 0);
    // as a 2 MB tmpfs gave it: 110 characters and the NUL
    assert.equal(heapOverrun('No space left on device: Attempting to write page at position 2093056, size 106496, blocks 1, buffer sizes 106496 -754988576 -754989232'), 11);
    assert.equal(heapOverrun('No space left on device: Attempting to write page at position 364544, size 106496, blocks 1, buffer sizes 106496 4096 0'), 0);
  });

  test('on a full file system commits reject (StoreError) and the changes wait; once there is room they are written, ahead of later ones, and all are there after a reopen', async (t: TestContext) => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-full-unit-'));
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { encoding: 'utf8' });
    if (mount.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      t.skip(`cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): ${(mount.stderr || mount.error?.message || '').trim()}`);
      return;
    }
    try {
      const dataDir = join(dir, 'data');
      mkdirSync(dataDir);
      let store = LmdbStore.open(dataDir);
      const health: Array<string | undefined> = [];
      store.watch((error) => health.push(error?.message));
      await store.load();
      for (let i = 0; i < 3; i++) store.retainedSet(message(`kept/${i}`, 100 * 1024));
      await store.commit();

      const filler = join(dir, 'filler');
      const fd = openSync(filler, 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096));
      } catch {
        // full
      } finally {
        closeSync(fd);
      }
      store.retainedSet(message('waits/1', 100 * 1024));
      await assert.rejects(store.commit(), (err: Error) => err instanceof StoreError && /is full/.test(err.message));
      // a later change of the same row replaces the one waiting
      store.retainedSet(message('waits/1', 10));
      store.retainedSet(message('waits/2', 10));
      await assert.rejects(store.commit(), StoreError);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(health.length, 1, 'told once');
      assert.match(String(health[0]), /is full/);

      unlinkSync(filler);
      const deadline = Date.now() + 5000;
      for (;;) {
        store.retainedSet(message('after', 10));
        const ok = await store.commit().then(
          () => true,
          () => false,
        );
        if (ok) break;
        assert.ok(Date.now() < deadline, 'commits succeed once there is room');
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(health.slice(1), [undefined], 'told once that it writes again');
      await store.close();

      store = LmdbStore.open(dataDir);
      const state = await store.load();
      const topics = state.retained.map((m) => `${m.topic}:${m.payload.length}`).sort();
      assert.deepEqual(topics, ['after:10', 'kept/0:102400', 'kept/1:102400', 'kept/2:102400', 'waits/1:10', 'waits/2:10']);
      await store.close();
    } finally {
      spawnSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('[MQTT-4.6.0-2] commits resolve in the order their batches were made, even when LMDB reports a later one first', async () => {
    // an environment whose transactions finish when the test says, in any order
    const finish: Array<() => void> = [];
    const env = {
      batch: (fn: () => void): Promise<boolean> => {
        fn();
        return new Promise<boolean>((resolve) => finish.push(() => resolve(true)));
      },
      flushed: Promise.resolve(true),
      getStats: () => ({ pageSize: 4096 }),
    } as unknown as RootDatabase;
    const dir = mkdtempSync(join(tmpdir(), 'midge-writes-order-'));
    try {
      const writes = new LmdbWrites(env, dir, () => undefined, () => undefined);
      const db = { put: async () => true, remove: async () => true };
      writes.route(db);
      const order: string[] = [];
      await (db.put as unknown as (k: string, v: unknown) => Promise<boolean>)('a', 1);
      const first = writes.commit().then(() => order.push('first'));
      await new Promise((r) => setImmediate(r));
      await (db.put as unknown as (k: string, v: unknown) => Promise<boolean>)('b', 2);
      const second = writes.commit().then(() => order.push('second'));
      await new Promise((r) => setImmediate(r));
      assert.equal(finish.length, 2, 'two transactions under way');
      (finish[1] as () => void)();
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(order, [], 'the later transaction is done, but the earlier is not: nobody hears yet');
      (finish[0] as () => void)();
      await Promise.all([first, second]);
      assert.deepEqual(order, ['first', 'second']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

