import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled command line. */
export const MIDGE_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const children = new Set<ChildProcess>();

/**
 * Starts `midge` with `args`; resolves with the process and its first MQTT port once it listens.
 * `maxFiles` sets its limit of open files (`ulimit -n`).
 */
export async function spawnMidge(args: string[], maxFiles?: number): Promise<{ child: ChildProcess; port: number }> {
  const child =
    maxFiles === undefined
      ? spawn(process.execPath, [MIDGE_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn('bash', ['-c', `ulimit -n ${maxFiles} && exec "$0" "$@"`, process.execPath, MIDGE_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  // midge says where it listens on stderr; its JSON log on stdout is not needed here. What it
  // says there besides, an error, is shown; the start-up lines of every broker a test starts are not
  let out = '';
  child.stderr?.on('data', (d: Buffer) => {
    const text = d.toString();
    out += text;
    const shown = text.split('\n').filter((l) => l !== '' && !STARTUP_LINE.test(l));
    if (shown.length > 0) process.stderr.write(`${shown.join('\n')}\n`);
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = /listening on mqtt:\/\/[^\s]+:(\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`midge did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const STARTUP_LINE = /^(midge \S+ listening on |midge http endpoint on |only this machine |the HTTP endpoint )/;

/** Runs `midge` with `args` until it exits by itself (or is killed after 10 s): its exit code and what it printed on stderr. */
export function runMidgeToExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MIDGE_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** A command line started by runMidge: what it printed so far, and its exit code once it ends. */
export interface MidgeRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Runs the command line in a fresh directory of its own (so its ./data is its own too), keeping what it prints. */
export function runMidge(args: string[], cwd = mkdtempSync(join(tmpdir(), 'midge-cwd-'))): MidgeRun {
  const child = spawn(process.execPath, [MIDGE_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Writes `text` to a file named `name` in a fresh temporary directory; returns its path. */
export function tmpFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'midge-cli-')), name);
  writeFileSync(path, text);
  return path;
}

/** Kills every process spawnMidge or runMidge started and that still runs (for `after`). */
export function killMidges(): void {
  for (const c of children) c.kill('SIGKILL');
}
