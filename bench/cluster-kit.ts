// What the cluster benchmarks share: a Redis server of their own, and a node in a process of its
// own (to be killed outright). Needs redis-server on the PATH.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A redis-server keeping nothing on disk, on a free port; resolves once it answers. */
export async function startRedis(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (const end = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 50))) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection(port, '127.0.0.1', () => resolve(true));
      s.once('error', () => resolve(false));
      s.once('connect', () => s.destroy());
    });
    if (up) break;
    if (Date.now() > end) throw new Error('redis-server did not start');
  }
  return { url: `redis://127.0.0.1:${port}`, child };
}

/** A cluster node without a store in a process of its own; resolves with its MQTT port once it listens. */
export async function spawnNode(redisUrl: string, nodeId: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [MAIN, '--port', '0', '--persistence', 'memory', '--cluster-redis', redisUrl, '--cluster-node-id', nodeId, '--sys-interval', '0', '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // midge says where it listens on stderr (stdout holds its JSON log); the rest is shown as before
  let out = '';
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
    process.stderr.write(d);
  });
  for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const m = /listening on mqtt:\/\/[^\s]+:(\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
  }
  throw new Error(`node ${nodeId} did not start: ${out}`);
}
