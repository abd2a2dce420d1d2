import { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
