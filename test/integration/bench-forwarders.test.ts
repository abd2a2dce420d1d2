import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBench, type BenchOptions } from '../../src/bench/run.js';

// The floors bench:compare measures brokers against must pass on every message, or the floor they
// report is not one.
const FORWARDER_JS = fileURLToPath(new URL('../../bench/forwarder.js', import.meta.url));
const FORWARDER_C = fileURLToPath(new URL('../../../bench/forwarder.c', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ port, host: '127.0.0.1' }, () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on ${port}`);
}

describe('bench forwarders (the floors of bench:compare)', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  async function start(cmd: string[]): Promise<number> {
    const port = await freePort();
    const child = spawn(cmd[0] as string, [...cmd.slice(1), String(port)], { stdio: 'ignore' });
    children.push(child);
    await listening(port);
    return port;
  }

  const options = (port: number, over: Partial<BenchOptions>): BenchOptions => ({
    scenario: 'fanin', host: '127.0.0.1', port, version: 4, qos: 1, size: 64, publishers: 4, subscribers: 1,
    rate: 2000, duration: 0.5, warmup: 0.2, inflight: 50, batch: 32, connections: 0, pid: undefined, ...over,
  });

  async function passesEverything(port: number): Promise<void> {
    for (const [version, qos] of [[4, 1], [5, 1], [4, 0], [3, 1]] as const) {
      const r = await runBench(options(port, { version, qos }));
      assert.equal(r.lost, 0, `MQTT ${version} QoS ${qos}: lost`);
      assert.equal(r.duplicated, 0);
      assert.equal(r.outOfOrder, 0);
      assert.ok(Math.abs(r.deliveredPerSecond - 2000) < 600, `MQTT ${version} QoS ${qos}: delivered ${r.deliveredPerSecond}`);
    }
  }

  test('the Node forwarder passes every fan-in message on, at QoS 0 and 1, in MQTT 3.1, 3.1.1 and 5.0', async () => {
    await passesEverything(await start([process.execPath, FORWARDER_JS]));
  });

  test('the C forwarder passes every fan-in message on, at QoS 0 and 1, in MQTT 3.1, 3.1.1 and 5.0', async (t) => {
    const binary = join(mkdtempSync(join(tmpdir(), 'midge-fwd-test-')), 'forwarder');
    const cc = spawnSync('cc', ['-O2', '-o', binary, FORWARDER_C], { encoding: 'utf8' });
    if (cc.error !== undefined) {
      t.skip('no C compiler');
      return;
    }
    assert.equal(cc.status, 0, cc.stderr);
    await passesEverything(await start([binary]));
  });
});
