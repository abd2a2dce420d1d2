import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { lockDataDir, type LockKind } from '../../../src/persistence/dir-lock.js';
import { StoreError } from '../../../src/persistence/store.js';

const MODULE = new URL('../../../src/persistence/dir-lock.js', import.meta.url).href;
const children = new Set<ChildProcess>();

/** Another process that takes the lock on `dir` and keeps it until killed. */
async function holder(dir: string, kind: LockKind): Promise<ChildProcess> {
  const code = `const { lockDataDir } = await import(${JSON.stringify(MODULE)}); await lockDataDir(${JSON.stringify(dir)}, ${JSON.stringify(kind)}); console.log('locked'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.once('exit', (c) => reject(new Error(`the holder exited with ${String(c)}`)));
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

const refused = (dir: string, pid: number | undefined) => (err: Error): boolean =>
  err instanceof StoreError && err.message === `data dir ${dir} is in use by another broker (pid ${String(pid)})`;

describe('data dir lock', () => {
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  for (const kind of ['abstract', 'file'] as const) {
    if (kind === 'abstract' && process.platform !== 'linux') continue;

    test(`${kind}: held in this process, the dir is refused with this pid until released`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'midge-dirlock-'));
      const lock = await lockDataDir(dir, kind);
      await assert.rejects(lockDataDir(dir, kind), refused(dir, process.pid));
      await lock.release();
      if (kind === 'file') assert.equal(existsSync(join(dir, 'midge.lock')), false, 'a released lock leaves no file');
      await (await lockDataDir(dir, kind)).release();
    });

    test(`${kind}: held by another process, refused with its pid; that process killed (SIGKILL), the dir is taken at once`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'midge-dirlock-'));
      const child = await holder(dir, kind);
      await assert.rejects(lockDataDir(dir, kind), refused(dir, child.pid));
      await kill(child);
      // a socket file is left behind by the killed holder: it refuses connections, and is replaced
      if (kind === 'file') assert.ok(existsSync(join(dir, 'midge.lock')));
      const started = Date.now();
      const lock = await lockDataDir(dir, kind);
      assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
      await lock.release();
    });
  }

  test('file: a dir too deep for a socket path is locked under the temp dir, by its identity', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'midge-dirlock-')), 'd'.repeat(60), 'e'.repeat(60));
    mkdirSync(dir, { recursive: true });
    const lock = await lockDataDir(dir, 'file');
    assert.ok(lock.address.startsWith(tmpdir()), lock.address);
    await assert.rejects(lockDataDir(dir, 'file'), refused(dir, process.pid));
    await lock.release();
  });

  test('a data dir path that is a file is a StoreError naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-dirlock-'));
    const file = join(dir, 'f');
    await (await import('node:fs/promises')).writeFile(file, 'x');
    await assert.rejects(lockDataDir(file), (err: Error) => err instanceof StoreError && err.message.startsWith(`cannot open the data dir ${file}: `));
  });
});
