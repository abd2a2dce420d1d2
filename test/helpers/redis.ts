import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A redis-server of the test's own, on a free loopback port, keeping nothing on disk. */
export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Whether redis-server can be run here; CI installs it (.ci/run), so there its absence fails the tests. */
export const redisInstalled = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error === undefined;
export const skipWithoutRedis: false | string = redisInstalled || process.env.CI === 'true' ? false : 'redis-server is not installed (apt-get install redis-server)';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export async function startRedis(port?: number, extraArgs: string[] = []): Promise<TestRedis> {
  const p = port ?? (await freePort());
  return run(p, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs], 'Ready to accept connections');
}

/**
 * A Redis Sentinel watching the master at `masterPort` as `name`, deciding alone (quorum 1) and
 * quickly: a master silent for 1 s is failed over.
 */
export async function startSentinel(masterPort: number, name: string): Promise<TestRedis> {
  const p = await freePort();
  // a sentinel rewrites its configuration file as the setup changes
  const dir = mkdtempSync(join(tmpdir(), 'midge-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, [`port ${p}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`, `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 5000`, ''].join('\n'));
  const sentinel = await run(p, [conf, '--sentinel'], '+monitor master');
  return {
    ...sentinel,
    stop: async () => {
      await sentinel.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function run(p: number, args: string[], ready: string): Promise<TestRedis> {
  const child: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out}`));
    });
  });
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
