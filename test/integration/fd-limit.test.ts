import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { closeClients, connectClient, delay, nextMessages } from '../helpers/broker.js';
import { killMidges, spawnMidge } from '../helpers/cli.js';

describe('a broker out of file descriptors', () => {
  after(killMidges);

  test('keeps running while every descriptor is taken (its memory check and $SYS need none), and serves again once they are free', async () => {
    const { child, port } = await spawnMidge(['--port', '0', '--persistence', 'memory', '--log-level', 'warn', '--sys-interval', '1'], 256);
    const sockets: Socket[] = [];
    for (let i = 0; i < 400; i++) {
      const s = connect({ port, host: '127.0.0.1' });
      s.on('error', () => undefined);
      sockets.push(s);
    }
    // the memory check runs every second, $SYS too: both while the process has no descriptor left
    await delay(2500);
    assert.equal(child.exitCode, null, 'the broker is still running');
    for (const s of sockets) s.destroy();
    await delay(300);
    const c = await connectClient(port, { clientId: 'after-emfile' });
    await c.subscribeAsync('back', { qos: 1 });
    const got = nextMessages(c, 1);
    await c.publishAsync('back', 'served', { qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'served');
    await closeClients();
    child.kill('SIGTERM');
  });
});
