import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { encodePacket } from '../../src/codec/index.js';
import { faultLog, startBroker, type TestBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';
import { packetOf } from '../helpers/packet-arbitraries.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap in use after a full collection, in MB. */
function heapMb(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1e6;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

const closedWithin = (s: Socket, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });

describe('abuse: the broker keeps serving others, with bounded memory', () => {
  const log = faultLog();
  let b: TestBroker;
  let healthy: RawClient;

  before(async () => {
    b = await startBroker({ limits: { connectTimeoutMs: 500, maxSubscriptionsPerClient: 1000 }, sysInterval: 0, logger: log.logger });
    healthy = (await rawConnect(b.port, 5, { clientId: 'healthy' })).raw;
    await rawSubscribe(healthy, 5, 1, [{ topic: 'health', qos: 1 }]);
  });
  after(async () => {
    healthy.close();
    await b.close();
  });

  /** A well-behaved client still gets through. */
  async function stillServing(): Promise<void> {
    await b.broker.publish({ topic: 'health', payload: 'ok', qos: 1 });
    const p = await expectPacket(healthy, 'publish');
    healthy.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
  }

  test('200 connections that send nothing are closed at the connect timeout', async () => {
    const before = heapMb();
    const sockets = await Promise.all(Array.from({ length: 200 }, () => openSocket(b.port)));
    for (const s of sockets) s.on('error', () => undefined);
    await stillServing();
    const closed = await Promise.all(sockets.map((s) => closedWithin(s, 3000)));
    assert.ok(closed.every(Boolean), `${closed.filter((c) => !c).length} still open`);
    assert.ok(heapMb() - before < 20, 'no memory left behind');
  });

  test('half a packet then silence: closed at the connect timeout, or at keep alive once connected', async () => {
    const early = await openSocket(b.port);
    early.write(Buffer.from('101000044d515454', 'hex')); // CONNECT cut short
    const late = await RawClient.open(b.port, 4);
    late.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 1, clientId: 'half' }, 4);
    await expectPacket(late, 'connack');
    late.send('3020000a'); // a PUBLISH header promising more than ever comes
    await stillServing();
    assert.ok(await closedWithin(early, 3000));
    assert.ok(await late.waitClosed(3000));
  });

  test('a fixed header claiming 256 MB is refused at once, 100 times over, without buffering', async () => {
    const before = heapMb();
    for (let i = 0; i < 100; i++) {
      const { raw } = await rawConnect(b.port, 4, { clientId: `claim-${i}` });
      raw.send(Buffer.concat([Buffer.from('30ffffff7f', 'hex'), Buffer.alloc(1024, 1)]));
      assert.ok(await raw.waitClosed(1000));
    }
    await stillServing();
    assert.ok(heapMb() - before < 20);
  });

  test('10,000 subscriptions from one client: the first 1,000 granted, the rest refused, memory bounded', async () => {
    const before = heapMb();
    const { raw } = await rawConnect(b.port, 5, { clientId: 'hoarder' });
    let granted = 0;
    let refused = 0;
    for (let batch = 0; batch < 100; batch++) {
      const subs = Array.from({ length: 100 }, (_, i) => ({ topic: `hoard/${batch}/${i}`, qos: 0 as const }));
      const ack = await rawSubscribe(raw, 5, batch + 1, subs);
      for (const code of ack.granted as number[]) code === 0 ? granted++ : refused++;
    }
    assert.equal(granted, 1000);
    assert.equal(refused, 9000);
    await stillServing();
    raw.close();
    assert.ok(heapMb() - before < 30);
  });

  test('fuzz over real sockets: random and mutated packets from 300 connections never stop the broker', async () => {
    const samples = fc.sample(
      fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.from(a)),
        fc.tuple(packetOf(5), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([p, at, v]) => {
          const bytes = Buffer.from(encodePacket(p, 5));
          bytes[at % bytes.length] = v;
          return bytes;
        }),
      ),
      { numRuns: 300, seed: 42 },
    );
    const connectFirst = encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: '' }, 5);
    const before = heapMb();
    await Promise.all(
      samples.map(async (bytes, i) => {
        const s = await openSocket(b.port);
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        // half of them get past CONNECT first, so the fuzz reaches the protocol engine too
        s.write(i % 2 === 0 ? Buffer.concat([connectFirst, bytes]) : bytes);
        await new Promise((r) => setTimeout(r, 50));
        s.destroy();
      }),
    );
    await stillServing();
    assert.ok(heapMb() - before < 30);
    // bad bytes get a protocol error, never a fault of the broker's own (which it would survive)
    assert.deepEqual(log.faults, []);
  });
});
