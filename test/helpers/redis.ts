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
  /** sends the server process a signal (SIGSTOP, SIGCONT) */
  signal(sig: NodeJS.Signals): void;
}

/** Whether redis-server can be run here; CI installs it (.ci/run), so there its absence fails the tests. */
export const redisInstalled = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error === undefined;
export const skipWithoutRedis: false | string = redisInstalled || process.env.CI === 'true' ? false : 'redis-server is not installed (apt-get install redis-server)';

async function freePort(wanted = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(wanted, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A free port for a Redis Cluster node, whose cluster bus listens 10000 above it: so at most
 * 55535 (Redis refuses more), with that bus port free too. Ephemeral ports reach 60999.
 */
async function freeClusterPort(): Promise<number> {
  for (let tries = 0; ; tries++) {
    const p = await freePort();
    if (p <= 55535 && (await freePort(p + 10000).then(() => true, () => false))) return p;
    if (tries === 50) throw new Error('no free port pair (port, port + 10000) for a Redis Cluster node');
  }
}

export async function startRedis(port?: number, extraArgs: string[] = []): Promise<TestRedis> {
  const p = port ?? (await freePort());
  // a replica writes the snapshot it syncs from into its directory: a directory of its own, not the working one
  const own = extraArgs.includes('--dir') ? undefined : mkdtempSync(join(tmpdir(), 'midge-redis-'));
  const server = await run(p, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(own === undefined ? [] : ['--dir', own]), ...extraArgs], 'Ready to accept connections');
  if (own === undefined) return server;
  return {
    ...server,
    stop: async () => {
      await server.stop();
      rmSync(own, { recursive: true, force: true });
    },
  };
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

/** A Redis Cluster of servers of its own: its nodes (masters first), and the URL Midge takes for it. */
export interface TestRedisCluster {
  url: string;
  nodes: TestRedis[];
  /** the port of the master serving the slot of `key` now */
  masterOf(key: string): Promise<number>;
  /** the replica of the master at `port` */
  replicaOf(port: number): TestRedis;
  stop(): Promise<void>;
}

/**
 * `masters` masters with `replicasEach` replicas each, made a cluster by `redis-cli --cluster
 * create`; a master silent for 1 s is failed over to its replica.
 */
export async function startRedisCluster(masters: number, replicasEach: number): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'midge-redis-cluster-'));
  const nodes: TestRedis[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicasEach); i++) {
      const p = await freeClusterPort();
      // each node keeps its view of the cluster in a file of its own
      // replicas sync at once (not after the 5 s a master waits for more of them): one that never synced is never promoted
      const args = ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${p}.conf`), '--cluster-node-timeout', '1000', '--dir', dir, '--repl-diskless-sync-delay', '0'];
      nodes.push(await startRedis(p, args));
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicasEach), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    // every node must agree that all slots are served, and every replica have its master's data
    const deadline = Date.now() + 20_000;
    for (const n of nodes) {
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(n.port), 'info'], { encoding: 'utf8' }).stdout;
        const cluster = spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
        if (cluster.includes('cluster_state:ok') && (info.includes('role:master') || info.includes('master_link_status:up'))) break;
        if (Date.now() > deadline) throw new Error(`the Redis Cluster did not come up: ${cluster}${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const port = (nodes[0] as TestRedis).port;
  return {
    url: `redis+cluster://127.0.0.1:${port}`,
    nodes,
    stop,
    replicaOf: (port) => {
      const lines = spawnSync('redis-cli', ['-p', String(port), 'cluster', 'nodes'], { encoding: 'utf8' }).stdout.split('\n');
      const id = lines.find((l) => l.includes('myself'))?.split(' ')[0];
      const replica = lines.find((l) => l.split(' ')[3] === id)?.split(' ')[1];
      const found = nodes.find((n) => replica?.startsWith(`127.0.0.1:${n.port}@`));
      if (found === undefined) throw new Error(`no replica of ${port}`);
      return found;
    },
    masterOf: async (key) => {
      for (const n of nodes) {
        const ask = (...args: string[]): string => spawnSync('redis-cli', ['-p', String(n.port), ...args], { encoding: 'utf8' }).stdout ?? '';
        const slot = Number(ask('cluster', 'keyslot', key).trim());
        // a node that was killed answers nothing
        const master = masterServing(ask('cluster', 'nodes'), slot);
        if (master !== undefined) return master;
      }
      throw new Error(`no master serves ${key}`);
    },
  };
}

/** The port of the master that `CLUSTER NODES` lines say serves `slot` (one not marked failed). */
function masterServing(lines: string, slot: number): number | undefined {
  for (const line of lines.split('\n')) {
    const [, address, flags, , , , , , ...slots] = line.trim().split(' ');
    if (address === undefined || flags === undefined || !flags.split(',').includes('master') || flags.includes('fail')) continue;
    for (const range of slots) {
      const [from, to] = range.split('-').map(Number) as [number, number | undefined];
      if (slot >= from && slot <= (to ?? from)) return Number(address.split('@')[0]?.split(':')[1]);
    }
  }
  return undefined;
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
    signal: (sig) => void child.kill(sig),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
