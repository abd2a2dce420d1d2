import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { LmdbStore } from '../../src/index.js';
import { killMidges, MIDGE_MAIN, spawnMidge } from '../helpers/cli.js';
import { expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';
import { fill, withDataDirOnTmpfs } from '../helpers/tmpfs.js';

interface Refusal {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs midge until it exits, with the signal that ended it if one did (the SIGBUS this is about).
 * One that starts listening instead is stopped at once: that is an answer too.
 */
function runToExit(args: string[]): Promise<Refusal> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(process.execPath, [MIDGE_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/listening on mqtt:/.test(stderr)) child.kill('SIGTERM');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

function assertRefused(r: Refusal, dataDir: string, when: string): void {
  assert.equal(r.signal, null, `${when}: ended by ${String(r.signal)}, not an exit (stderr: ${JSON.stringify(r.stderr)})`);
  assert.equal(r.code, 3, `${when}: the store-error exit code (stderr: ${JSON.stringify(r.stderr)})`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `${when}: one line: ${JSON.stringify(lines)}`);
  assert.equal(
    lines[0]?.startsWith(`midge: the file system of the data dir ${dataDir} is full: `),
    true,
    `${when}: the line names the dir and says its file system is full: ${JSON.stringify(lines[0])}`,
  );
  assert.match(lines[0] as string, /: \d+ KiB free, the store needs \d+ KiB to open .*free some space/);
}

after(killMidges);

describe('an LMDB data dir on a full file system (command line broker)', () => {
  test('the broker refuses to start with exit code 3 and one line saying the file system is full, for a new store and an existing one (lock file there or not), never a signal; once there is room the same dir starts with its state', async (t: TestContext) => {
    await withDataDirOnTmpfs(t, '2m', async ({ dir, dataDir, filler, args }) => {

      // a few KB left: less than LMDB's lock file and first pages, which it maps and touches
      fill(filler, 8 * 1024);
      assertRefused(await runToExit(args), dataDir, 'a new store');
      assert.equal(existsSync(join(dataDir, 'data.mdb')), false, 'nothing is made in the dir');

      // room again: the dir starts as a new store, and keeps a session and a message
      unlinkSync(filler);
      let b = await spawnMidge(args);
      const options = { clientId: 'keeper', clean: false, properties: { sessionExpiryInterval: 3600 } };
      const keeper = await rawConnect(b.port, 5, options);
      await rawSubscribe(keeper.raw, 5, 1, [{ topic: 'kept/#', qos: 1 }]);
      keeper.raw.close();
      const pub = await rawConnect(b.port, 5, { clientId: 'pub' });
      pub.raw.sendPacket({ cmd: 'publish', topic: 'kept/1', payload: Buffer.from('before the disk filled'), qos: 1, messageId: 1, retain: false, dup: false }, 5);
      await expectPacket(pub.raw, 'puback');
      pub.raw.close();
      b.child.kill('SIGTERM');
      await new Promise((r) => b.child.once('exit', r));

      fill(filler, 8 * 1024);
      assertRefused(await runToExit(args), dataDir, 'an existing store');
      // as a store restored from a copy of its data file alone: LMDB makes and maps a new lock file,
      // and touching its first page on a file system with no page left was SIGBUS
      unlinkSync(join(dataDir, 'lock.mdb'));
      fill(join(dir, 'filler-2'), 0);
      assertRefused(await runToExit(args), dataDir, 'an existing store without its lock file');

      unlinkSync(filler);
      b = await spawnMidge(args);
      const back = await rawConnect(b.port, 5, options);
      assert.equal(back.connack.sessionPresent, true, 'the stored session is back');
      assert.equal((await expectPacket(back.raw, 'publish')).payload?.toString(), 'before the disk filled');
      back.raw.close();
      b.child.kill('SIGTERM');
      await new Promise((r) => b.child.once('exit', r));
    });
  });
});

describe('a data file whose making was cut short', () => {
  test('a data file holding only its first meta page (a full disk stopped LMDB making it) is refused with exit code 3 and one line saying so, never a signal', async () => {
    const whole = mkdtempSync(join(tmpdir(), 'midge-cut-whole-'));
    await LmdbStore.open(whole).close();
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-cut-'));
    writeFileSync(join(dataDir, 'data.mdb'), readFileSync(join(whole, 'data.mdb')).subarray(0, 4096));
    const r = await runToExit(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent', '--sys-interval', '0']);
    assert.equal(r.signal, null, `ended by ${String(r.signal)}, not an exit`);
    assert.equal(r.code, 3);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.deepEqual(lines, [`midge: ${join(dataDir, 'data.mdb')} is incomplete (4096 bytes): making it was cut short, by a full disk or a crash, before anything was stored in it; remove it and start again`]);
    rmSync(whole, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });
});
