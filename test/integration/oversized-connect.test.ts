import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { startBroker, type TestBroker } from '../helpers/broker.js';
import { expectPacket, rawConnect } from '../helpers/raw-session.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const LIMIT = 100;
const CONNECT_TIMEOUT_MS = 1500;
/** fixed header of a CONNECT declaring 200 bytes after it: 203 in all */
const HEADER = '10c801';
const SIZE = 203;
const V5_START = '00044d51545405';
const V311_START = '00044d51545404';
const V31_START = '00064d514973647003';

interface LogEntry {
  msg: string;
  address?: string;
  reasonCode?: number;
}

interface Outcome {
  bytes: string;
  closed: boolean;
  /** ms from the first write to the close */
  afterMs: number;
  address: string;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Writes each hex piece after its delay and collects what the broker sends until it closes (or
 * `waitMs` passes): raw bytes, as no client library sends a CONNECT over the server's limit.
 */
async function exchange(port: number, pieces: Array<[delayMs: number, hex: string]>, waitMs = 3000): Promise<Outcome> {
  const s = await openSocket(port);
  s.on('error', () => undefined);
  // each piece in a segment of its own, so that the split is the broker's to handle
  s.setNoDelay(true);
  const address = `127.0.0.1:${s.localPort}`;
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  const start = Date.now();
  const closed = new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), waitMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
  for (const [delay, hex] of pieces) {
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (!s.destroyed) s.write(Buffer.from(hex, 'hex'));
  }
  const wasClosed = await closed;
  s.destroy();
  return { bytes: Buffer.concat(got).toString('hex'), closed: wasClosed, afterMs: Date.now() - start, address };
}

describe('a first CONNECT over the maximum packet size', () => {
  const entries: LogEntry[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void entries.push(JSON.parse(line) as LogEntry) });
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ limits: { maxPacketSize: LIMIT, connectTimeoutMs: CONNECT_TIMEOUT_MS }, sysInterval: 0, logger });
  });
  after(() => b.close());

  /** The one line the refusal was logged with, naming the peer, the declared size and the limit. */
  function assertLogged(address: string): void {
    const lines = entries.filter((e) => e.address === address);
    assert.equal(lines.length, 1, `log lines for ${address}: ${JSON.stringify(lines)}`);
    const line = lines[0] as LogEntry;
    assert.equal(line.reasonCode, 0x95);
    assert.match(line.msg, new RegExp(`${address}.*${SIZE}.*${LIMIT}`));
  }

  test('[MQTT-3.2.2-6] [MQTT-3.2.2-7] (5.0) is answered with CONNACK 0x95 (Packet too large, session present 0), then closed and logged', async () => {
    const out = await exchange(b.port, [[0, HEADER + V5_START + '02003c0000']]);
    assert.equal(out.bytes, '2003009500');
    assert.ok(out.closed);
    assertLogged(out.address);
  });

  test('[MQTT-3.2.2-6] (3.1.1, 3.1) has no return code for it: closed without a CONNACK, and logged', async () => {
    for (const start of [V311_START, V31_START]) {
      const out = await exchange(b.port, [[0, HEADER + start + '02003c']]);
      assert.equal(out.bytes, '', `version bytes ${start}`);
      assert.ok(out.closed);
      assert.ok(out.afterMs < 1000, `closed at once, not at the connect timeout (${out.afterMs} ms)`);
      assertLogged(out.address);
    }
  });

  test('[MQTT-3.2.2-7] (5.0) a protocol level arriving some ms after the fixed header still gets CONNACK 0x95', async () => {
    // the fixed header alone, then split again inside the variable header
    const out = await exchange(b.port, [
      [0, '10c8'],
      [20, '0100'],
      [20, '044d5154'],
      [20, '54'],
      [20, '05'],
    ]);
    assert.equal(out.bytes, '2003009500');
    assert.ok(out.closed);
    assertLogged(out.address);
  });

  test('a CONNECT declaring 256 MB then silent is closed at the connect timeout, holding nothing for its size', async () => {
    const heapBefore = memoryMb();
    // 50 of them, the name's length sent but not the name: each waits for its protocol level
    const pending = Promise.all(Array.from({ length: 50 }, () => exchange(b.port, [[0, '10ffffff7f0004']], CONNECT_TIMEOUT_MS + 2000)));
    await new Promise((r) => setTimeout(r, CONNECT_TIMEOUT_MS / 2));
    const held = memoryMb() - heapBefore;
    for (const out of await pending) {
      assert.equal(out.bytes, '');
      assert.ok(out.closed, 'closed');
      assert.ok(out.afterMs >= CONNECT_TIMEOUT_MS - 300, `kept until the connect timeout, not closed after ${out.afterMs} ms`);
    }
    assert.ok(held < 20, `${held.toFixed(1)} MB held while they waited`);
  });

  test('a first packet over the limit that is no MQTT CONNECT is closed at once, without a CONNACK', async () => {
    const cases = [
      '30ffffff7f0003616263', // PUBLISH
      '12c801' + V5_START, // CONNECT with reserved flags set
      '10c801' + '00044d51545805', // "MQTX"
      '10c801' + '03e8', // a name 1000 bytes long is not waited for
    ];
    for (const hex of cases) {
      const out = await exchange(b.port, [[0, hex]]);
      assert.equal(out.bytes, '', hex);
      assert.ok(out.closed && out.afterMs < 1000, `${hex}: closed after ${out.afterMs} ms`);
    }
  });

  test('after CONNECT, a packet over the limit (a second CONNECT too) still gets DISCONNECT 0x95', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'second-connect' });
    raw.send(HEADER + V5_START + '02003c');
    assert.equal((await expectPacket(raw, 'disconnect')).reasonCode, 0x95);
    assert.ok(await raw.waitClosed());
  });
});

/** JS heap and buffers in use after a full collection, in MB. */
function memoryMb(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / 1e6;
}
