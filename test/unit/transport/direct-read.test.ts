import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { directReads } from '../../../src/transport/direct-read.js';

interface Accepted {
  socket: Socket;
  chunks: Buffer[];
  /** reads that came as 'data' events, through the stream, instead of directly */
  dataEvents: number;
}

const chunksOf = new Map<Socket, Buffer[]>();
function keep(this: Socket, chunk: Buffer): void {
  (chunksOf.get(this) as Buffer[]).push(chunk);
}
const readDirectly = directReads(keep);

/** A server whose sockets are read directly; every chunk is kept, as the parser keeps payload views. */
async function directServer(): Promise<{ server: Server; port: number; accepted: Accepted[] }> {
  const accepted: Accepted[] = [];
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    const entry: Accepted = { socket, chunks: [], dataEvents: 0 };
    chunksOf.set(socket, entry.chunks);
    readDirectly(socket);
    // as a connection does: the same reader takes 'data' where direct reads are not available
    socket.on('data', function (this: Socket, chunk: Buffer) {
      entry.dataEvents++;
      keep.call(this, chunk);
    });
    accepted.push(entry);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, accepted };
}

function pattern(seed: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A direct server with one client connected and accepted. */
async function oneClient(): Promise<{ server: Server; client: Socket; a: Accepted }> {
  const { server, port, accepted } = await directServer();
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  await until(() => accepted.length === 1, 'accept');
  return { server, client, a: accepted[0] as Accepted };
}

/** Closes the server, failing instead of hanging when an accepted socket still counts as open. */
async function closed(server: Server): Promise<void> {
  let done = false;
  server.close(() => (done = true));
  await until(() => done, 'the server to close');
}

describe('direct reads of plain TCP sockets', () => {
  test('chunks kept from several sockets read at once stay intact after later reads', async () => {
    const { server, port, accepted } = await directServer();
    const size = 300_000; // several times the shared read buffer
    const sent = [1, 2, 3, 4].map((seed) => pattern(seed, size));
    const clients = sent.map(() => connect(port, '127.0.0.1'));
    await Promise.all(clients.map((c) => once(c, 'connect')));
    await until(() => accepted.length === clients.length, 'accepts');
    clients.forEach((c, i) => c.write(sent[i] as Buffer));
    const total = (a: Accepted): number => a.chunks.reduce((n, c) => n + c.length, 0);
    await until(() => accepted.every((a) => total(a) === size), 'all bytes');
    // the server does not know which accepted socket is which client: each pattern must turn up whole
    const received = accepted.map((a) => Buffer.concat(a.chunks));
    for (const s of sent) assert.ok(received.some((r) => r.equals(s)), 'a socket saw its bytes overwritten');
    assert.ok(accepted.every((a) => a.chunks.length > 1), 'each socket needed more than one read');
    assert.ok(accepted.every((a) => a.dataEvents === 0), 'every read reached the reader directly, none through the stream');
    for (const c of clients) c.destroy();
    await closed(server);
  });

  test('the server closes once the directly read sockets have closed', async () => {
    const { server, client, a } = await oneClient();
    let done = false;
    server.close(() => (done = true));
    await sleep(50);
    assert.equal(done, false, 'close() finished while a connection was open');
    client.end();
    await until(() => done, 'the server to close');
  });

  test('pause() stops reads and resume() brings what arrived meanwhile', async () => {
    const { server, client, a } = await oneClient();
    client.write('one');
    await until(() => a.chunks.length === 1, 'first read');
    a.socket.pause();
    client.write('two');
    await sleep(100);
    assert.equal(a.chunks.length, 1, 'read while paused');
    a.socket.resume();
    await until(() => Buffer.concat(a.chunks).toString() === 'onetwo', 'read after resume');
    client.destroy();
    await closed(server);
  });

  test('the peer closing its side ends and closes the socket', async () => {
    const { server, client, a } = await oneClient();
    const socketClosed = once(a.socket, 'close');
    client.end('bye');
    await socketClosed;
    assert.equal(Buffer.concat(a.chunks).toString(), 'bye');
    await closed(server);
  });

  test('a socket with no handle is resumed, to be read as a stream', () => {
    const s = new Socket();
    s.pause();
    directReads(() => assert.fail('the reader is only for direct reads'))(s);
    assert.equal(s.isPaused(), false);
  });
});
