import { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { killMidges } from './cli.js';

/** Mounts a tmpfs of `size` (as mount takes it: '4m') at a new directory; the reason instead when this system does not let the test. */
export function mountTmpfs(size: string): { dir: string } | { skip: string } {
  const dir = mkdtempSync(join(tmpdir(), 'midge-tmpfs-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): ${(r.stderr || r.error?.message || '').trim()}` };
  }
  return { dir };
}

export function unmount(dir: string): void {
  spawnSync('umount', ['-l', dir]);
  rmSync(dir, { recursive: true, force: true });
}

export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return Number(s.bavail) * Number(s.bsize);
}

/** Writes the file at `path` until its file system has at most `leave` bytes free. */
export function fill(path: string, leave: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let free = freeBytes(path); free > leave; free = freeBytes(path)) writeSync(fd, Buffer.alloc(Math.min(free - leave, 1024 * 1024)));
  } catch {
    // full already
  } finally {
    closeSync(fd);
  }
}

/** A broker's data dir on a small tmpfs of its own, and a file to fill that tmpfs with. */
export interface FullableDataDir {
  /** the tmpfs */
  dir: string;
  dataDir: string;
  filler: string;
  /** command-line arguments for an LMDB broker on `dataDir`, any port, quiet */
  args: string[];
}

/**
 * Runs `body` with a data dir on a tmpfs of `size`, then stops the command-line brokers it started
 * and unmounts; skips the test where a tmpfs cannot be mounted.
 */
export async function withDataDirOnTmpfs(t: TestContext, size: string, body: (disk: FullableDataDir) => Promise<void>): Promise<void> {
  const mounted = mountTmpfs(size);
  if ('skip' in mounted) {
    t.skip(mounted.skip);
    return;
  }
  const dir = mounted.dir;
  try {
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    const args = ['--port', '0', '--data-dir', dataDir, '--persistence', 'lmdb', '--log-level', 'silent', '--sys-interval', '0'];
    await body({ dir, dataDir, filler: join(dir, 'filler'), args });
  } finally {
    killMidges();
    unmount(dir);
  }
}
