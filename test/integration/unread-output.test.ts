import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { createBroker, type Broker, type ClientInfo } from '../../src/index.js';
import { STALLED_OUTPUT_BYTES } from '../../src/transport/connection.js';
import { closeClients, connectClient, nextMessages } from '../helpers/broker.js';
import { eventually, rawConnect, rawSubscribe, receiveAcking } from '../helpers/raw-session.js';

const brokers: Broker[] = [];
after(async () => {
  await closeClients();
  for (const b of brokers) await b.close();
});

/**
 * The client's end of a connection handed to the broker: what the test pushes is what the client
 * sends; what the broker writes is taken only while the client reads (`reading`), as a socket whose
 * peer does not read stops taking writes once the kernel's buffers are full.
 */
class Peer extends Duplex {
  reading = false;
  received = 0;
  private waiting: Array<{ chunk: Buffer; callback: () => void }> = [];

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    if (this.reading) this.accept(chunk, callback);
    else this.waiting.push({ chunk, callback });
  }

  /** Takes the oldest write waiting, as a client on a slow link reads a little at a time. */
  readOne(): void {
    const w = this.waiting.shift();
    if (w !== undefined) this.accept(w.chunk, w.callback);
  }

  startReading(): void {
    this.reading = true;
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) this.accept(w.chunk, w.callback);
  }

  private accept(chunk: Buffer, callback: () => void): void {
    this.received += chunk.length;
    callback();
  }
}

const PING_CHUNK = Buffer.alloc(256 * 1024, Buffer.from([0xc0, 0x00]));

describe('a client that does not read what it is sent', () => {
  test('[MQTT-3.12.4-1] its input is not read once 1 MB of output waits unread, others are served meanwhile, and it is read again once it reads', async () => {
    const broker = await createBroker({ persistence: 'memory', sysInterval: 0 });
    brokers.push(broker);
    const stalled: Array<[ClientInfo, number]> = [];
    broker.on('clientStalled', (client, bytes) => void stalled.push([client, bytes]));
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });

    const peer = new Peer();
    broker.handle(peer);
    peer.push(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 1, clientId: 'no-reader' }));
    assert.ok(await eventually(() => broker.stats.clientsConnected === 1));
    const before = broker.stats.bytesReceived;

    // PINGREQs, each answered with a PINGRESP the client never reads: 128 KB of answers a chunk
    const chunks = 12;
    for (let i = 0; i < chunks; i++) {
      peer.push(PING_CHUNK);
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(await eventually(() => stalled.length === 1));
    const read = broker.stats.bytesReceived - before;
    assert.ok(read < chunks * PING_CHUNK.length, `the broker read all ${read} bytes of a client that reads nothing`);
    // what it took: enough to make 1 MB of answers, and little more
    assert.ok(read <= STALLED_OUTPUT_BYTES + 2 * PING_CHUNK.length, `read ${read} bytes`);
    assert.equal(stalled[0]?.[0].id, 'no-reader');
    assert.ok((stalled[0]?.[1] ?? 0) >= STALLED_OUTPUT_BYTES);
    // [MQTT-3.1.2-24] its keep alive (1 s) is put off while its PINGREQs wait unread behind the
    // output it is reading, slowly
    for (let i = 0; i < 9; i++) {
      await new Promise((r) => setTimeout(r, 250));
      peer.readOne();
    }
    assert.equal(broker.stats.bytesReceived - before, read, 'nothing more is read while the output waits');
    assert.equal(broker.stats.clientsConnected, 1, 'not dropped for PINGREQs the broker did not read');

    // other clients are served meanwhile
    const sub = await connectClient(port, { clientId: 'reader-sub' });
    await sub.subscribeAsync('unread/t', { qos: 1 });
    const pub = await connectClient(port, { clientId: 'reader-pub' });
    const got = nextMessages(sub, 1);
    await pub.publishAsync('unread/t', 'served', { qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'served');

    // once it reads, the rest of its input is read and every PINGREQ answered
    peer.startReading();
    const all = chunks * PING_CHUNK.length;
    assert.ok(await eventually(() => peer.readableLength === 0 && peer.received >= 4 + all, 10_000));
    assert.equal(peer.received, 4 + all, 'CONNACK and one PINGRESP per PINGREQ');
    assert.equal(stalled.length, 1, 'told once a connection');
    // once it has read everything and goes silent, its keep alive counts again
    const silentAt = Date.now();
    let gone: [string, number] | undefined;
    broker.on('clientDisconnected', (c, reason) => {
      if (c.id === 'no-reader') gone = [reason, Date.now() - silentAt];
    });
    assert.ok(await eventually(() => gone !== undefined, 4000), 'closed for its keep alive');
    assert.match(gone?.[0] ?? '', /keep alive/);
    assert.ok((gone?.[1] ?? 0) >= 1000, `closed ${gone?.[1]} ms after it went silent: not before 1.5 x its keep alive, less a tick`);
    peer.destroy();
  });

  test('[MQTT-3.1.2-24] a client that reads none of its output over 1.5 x its keep alive is closed, though its PINGREQs went unread', async () => {
    const broker = await createBroker({ persistence: 'memory', sysInterval: 0 });
    brokers.push(broker);
    let gone: string | undefined;
    broker.on('clientDisconnected', (c, reason) => {
      if (c.id === 'dead-reader') gone = reason;
    });
    const peer = new Peer();
    broker.handle(peer);
    peer.push(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 1, clientId: 'dead-reader' }));
    for (let i = 0; i < 8; i++) {
      peer.push(PING_CHUNK);
      await new Promise((r) => setImmediate(r));
    }
    const start = Date.now();
    assert.ok(await eventually(() => gone !== undefined, 4000), 'closed');
    assert.match(gone ?? '', /keep alive/);
    assert.ok(Date.now() - start <= 3000);
    peer.destroy();
  });

  test('a connected client whose queue overflows is told of once, and again only after its queue has emptied', async () => {
    const broker = await createBroker({ persistence: 'memory', sysInterval: 0, limits: { maxInflight: 2, maxQueuedMessages: 3 } });
    brokers.push(broker);
    const told: string[] = [];
    broker.on('clientDropping', (client, reason) => void told.push(`${client.id}:${reason}`));
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const { raw } = await rawConnect(port, 4, { clientId: 'slow-sub' });
    await rawSubscribe(raw, 4, 1, [{ topic: 'slow/t', qos: 1 }]);
    const burst = async (): Promise<void> => {
      for (let i = 0; i < 10; i++) await broker.publish({ topic: 'slow/t', payload: String(i), qos: 1 });
    };
    await burst();
    // 2 in flight, 3 queued, 5 dropped: one word of it
    assert.equal(broker.stats.droppedByReason.queueFull, 5);
    assert.deepEqual(told, ['slow-sub:queueFull']);
    await burst();
    assert.deepEqual(told, ['slow-sub:queueFull'], 'not again while its queue is still full');
    // it catches up: everything it holds is acknowledged and the queue empties
    const got = await receiveAcking(raw, 4, 5);
    assert.equal(got.length, 5);
    assert.ok(await eventually(() => broker.stats.queued === 0 && broker.stats.inflight === 0));
    await burst();
    assert.deepEqual(told, ['slow-sub:queueFull', 'slow-sub:queueFull']);
    raw.close();
  });
});
