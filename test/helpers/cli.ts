import { spawn, type ChildProcess } from 'node:child_process';
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

/** Kills every process spawnMidge started and that still runs (for `after`). */
export function killMidges(): void {
  for (const c of children) c.kill('SIGKILL');
}
