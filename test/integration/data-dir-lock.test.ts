import assert from 'node:assert/strict';
import { mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createBroker, StoreError } from '../../src/index.js';
import { delay, startBroker } from '../helpers/broker.js';
import { killMidges, runMidgeToExit, spawnMidge } from '../helpers/cli.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

const inUse = (dir: string, pid: number | undefined): string => `data dir ${dir} is in use by another broker (pid ${String(pid)})`;

describe('one broker per data dir', () => {
  after(killMidges);

  test('a second broker on a data dir a broker of the same process holds is refused before it reads the store; the first goes on with its state, and the dir is free once it closes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lock-'));
    const first = await startBroker({ persistence: 'lmdb', dataDir: dir, sysInterval: 0 });
    let closed = false;
    try {
      const away = await rawConnect(first.port, 4, { clientId: 'away', clean: false });
      await rawSubscribe(away.raw, 4, 1, [{ topic: 'z/#', qos: 1 }]);
      away.raw.close();
      const live = await rawConnect(first.port, 5, { clientId: 'live', clean: false, properties: { sessionExpiryInterval: 3600 } });
      await rawSubscribe(live.raw, 5, 1, [{ topic: 'z/#', qos: 1 }]);
      await first.broker.publish({ topic: 'z/1', payload: 'before', qos: 1 });
      assert.equal((await expectPacket(live.raw, 'publish')).payload?.toString(), 'before');

      await assert.rejects(createBroker({ persistence: 'lmdb', dataDir: dir, sysInterval: 0 }), (err: Error) => {
        assert.ok(err instanceof StoreError, `a StoreError, not ${err.name}: ${err.message}`);
        assert.equal(err.message, inUse(dir, process.pid));
        return true;
      });

      // the first broker's sessions are as they were, online and offline
      await first.broker.publish({ topic: 'z/2', payload: 'after', qos: 1 });
      assert.equal((await expectPacket(live.raw, 'publish')).payload?.toString(), 'after');
      assert.equal(first.broker.stats.sessions, 2);
      live.raw.close();
      await first.close();
      closed = true;

      const again = await startBroker({ persistence: 'lmdb', dataDir: dir, sysInterval: 0 });
      try {
        const back = await rawConnect(again.port, 4, { clientId: 'away', clean: false });
        assert.equal(back.connack.sessionPresent, true);
        assert.deepEqual((await drainFor(back.raw, 300)).map((p) => p.payload?.toString()), ['before', 'after']);
        back.raw.close();
      } finally {
        await again.close();
      }
    } finally {
      if (!closed) await first.close();
    }
  });

  test('another path to the same dir (a symlink) is the same data dir; a different dir is another', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lock-'));
    const link = join(mkdtempSync(join(tmpdir(), 'midge-lock-link-')), 'data');
    symlinkSync(dir, link);
    const first = await startBroker({ persistence: 'lmdb', dataDir: dir, sysInterval: 0 });
    try {
      await assert.rejects(createBroker({ persistence: 'lmdb', dataDir: link, sysInterval: 0 }), (err: Error) => err instanceof StoreError && err.message === inUse(link, process.pid));
      const other = await startBroker({ persistence: 'lmdb', dataDir: mkdtempSync(join(tmpdir(), 'midge-lock-other-')), sysInterval: 0 });
      await other.close();
    } finally {
      await first.close();
    }
    // closed, the dir is free by either path
    const byLink = await startBroker({ persistence: 'lmdb', dataDir: link, sysInterval: 0 });
    await byLink.close();
  });

  test('the command line: a second midge on a data dir another holds exits with code 3 and one line naming the dir and the holder\'s pid, on the same port or another, and leaves the holder\'s sessions alone; the holder killed (SIGKILL), a new midge starts on the dir at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-lock-cli-'));
    const args = ['--data-dir', dir, '--log-level', 'silent', '--sys-interval', '0'];
    const holder = await spawnMidge(['--port', '0', ...args]);
    // online until the kill: its 3 s of Session Expiry start no sooner than that
    const live = await rawConnect(holder.port, 5, { clientId: 'live', clean: false, properties: { sessionExpiryInterval: 3 } });
    await rawSubscribe(live.raw, 5, 1, [{ topic: 'z/#', qos: 1 }]);
    for (const port of [String(holder.port), '0']) {
      const second = await runMidgeToExit(['--port', port, ...args]);
      assert.deepEqual(second, { code: 3, stderr: `midge: ${inUse(dir, holder.child.pid)}\n` }, `on port ${port}`);
    }
    // had a refused broker restored the store, it would have recorded the online session as gone
    // from its start, and the session would have expired by the restart below
    await delay(3500);
    const exited = new Promise<void>((resolve) => holder.child.once('exit', () => resolve()));
    holder.child.kill('SIGKILL');
    await exited;
    live.raw.close();
    const restarted = await spawnMidge(['--port', '0', ...args]);
    const back = await rawConnect(restarted.port, 5, { clientId: 'live', clean: false, properties: { sessionExpiryInterval: 3 } });
    assert.equal(back.connack.sessionPresent, true, 'the session is as the holder left it');
    back.raw.close();
    const stopped = new Promise<number | null>((resolve) => restarted.child.once('exit', (code) => resolve(code)));
    restarted.child.kill('SIGTERM');
    assert.equal(await stopped, 0);
  });
});
