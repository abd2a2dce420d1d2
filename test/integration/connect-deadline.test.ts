import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { createBroker, type Broker } from '../../src/index.js';
import { delay } from '../helpers/broker.js';
import { createPki, type TestPki } from '../helpers/certs.js';

// limits.connectTimeoutMs is the time from the accept to the CONNECT, whatever comes between: a
// PROXY header, the TLS handshake, the HTTP upgrade. Each step alone here takes well under the
// timeout, all of them together take longer.

const CONNECT_TIMEOUT_MS = 2000;
const PROXY_V1 = 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 8883\r\n';
const UPGRADE = 'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n';
let clients = 0;
/** CONNECT, 3.1.1, clean, keep alive 60, a client id of its own */
function connectPacket(): Buffer {
  const id = Buffer.from(`deadline-${++clients}`);
  return Buffer.concat([Buffer.from([0x10, 12 + id.length, 0, 4]), Buffer.from('MQTT'), Buffer.from([4, 2, 0, 60, 0, id.length]), id]);
}
const PINGREQ = Buffer.from([0xc0, 0x00]);

type Step = number | 'proxy' | 'tls' | 'upgrade' | 'connect' | 'ping';

interface Outcome {
  connack: boolean;
  /** a PINGRESP came for the PINGREQ of a 'ping' step */
  pong: boolean;
  /** ms from the TCP connect to the broker's close, undefined while open */
  closedAfterMs: number | undefined;
}

interface LogLine {
  msg: string;
  code?: string;
}

describe('the connect timeout counts from the accept, over every step before the CONNECT', () => {
  let pki: TestPki;
  let broker: Broker;
  const ports: Record<string, number> = {};
  const lines: LogLine[] = [];

  before(async () => {
    pki = createPki();
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    broker = await createBroker({ persistence: 'memory', logger, limits: { connectTimeoutMs: CONNECT_TIMEOUT_MS } });
    const tls = { cert: pki.serverCert, key: pki.serverKey };
    const at = async (name: string, options: Parameters<Broker['listen']>[0]): Promise<void> => {
      ports[name] = (await broker.listen({ port: 0, host: '127.0.0.1', ...options })).port;
    };
    await at('mqtt', {});
    await at('mqtts', { protocol: 'mqtts', tls });
    await at('ws', { protocol: 'ws' });
    await at('wss', { protocol: 'wss', tls });
    await at('proxied mqtts', { protocol: 'mqtts', tls, proxyProtocol: true });
    await at('proxied wss', { protocol: 'wss', tls, proxyProtocol: true });
  });
  after(async () => {
    await broker.close();
  });

  /** Takes the steps in turn, a number being a pause in ms; stops once the broker closes. */
  async function attempt(port: number, steps: Step[]): Promise<Outcome> {
    const raw = netConnect({ port, host: '127.0.0.1' });
    raw.on('error', () => undefined);
    await new Promise((r) => raw.once('connect', r));
    const started = Date.now();
    let closedAfterMs: number | undefined;
    raw.once('close', () => (closedAfterMs = Date.now() - started));
    let stream: Duplex = raw;
    let received = Buffer.alloc(0);
    let overWs = false;
    const read = (d: Buffer): void => {
      received = Buffer.concat([received, d]);
      // a close frame: the broker cuts the socket only a second later, when no answer comes
      if (overWs && received[0] === 0x88) closedAfterMs ??= Date.now() - started;
    };
    raw.on('data', read);
    const until = async (done: () => boolean, ms: number): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!done() && closedAfterMs === undefined && Date.now() < deadline) await delay(10);
    };
    for (const step of steps) {
      if (closedAfterMs !== undefined) break;
      if (typeof step === 'number') await until(() => false, step);
      else if (step === 'proxy') raw.write(PROXY_V1);
      else if (step === 'tls') {
        raw.off('data', read);
        const secure = tlsConnect({ socket: raw, ca: readFileSync(pki.ca), servername: 'localhost' });
        secure.on('error', () => undefined);
        secure.on('data', read);
        let done = false;
        secure.once('secureConnect', () => (done = true));
        await until(() => done, 5000);
        stream = secure;
      } else if (step === 'upgrade') {
        stream.write(UPGRADE);
        await until(() => received.includes('\r\n\r\n'), 5000);
        assert.match(received.toString('latin1'), /^HTTP\/1\.1 101 /);
        received = received.subarray(received.indexOf('\r\n\r\n') + 4);
        overWs = true;
      } else {
        const packet = step === 'connect' ? connectPacket() : PINGREQ;
        // a masked binary frame, mask 0
        stream.write(overWs ? Buffer.concat([Buffer.from([0x82, 0x80 | packet.length, 0, 0, 0, 0]), packet]) : packet);
        const expected = (overWs ? 2 : 0) + 4 + (step === 'ping' ? (overWs ? 2 : 0) + 2 : 0);
        await until(() => received.length >= expected, 1500);
      }
    }
    // CONNACK (4 bytes), then PINGRESP (2), each in a frame of its own over WebSocket
    const mqtt = overWs ? Buffer.concat([received.subarray(2, 6), received.subarray(8, 10)]) : received;
    raw.destroy();
    return { connack: mqtt[0] === 0x20, pong: mqtt[4] === 0xd0, closedAfterMs };
  }

  function assertCutAtTimeout(outcome: Outcome, what: string): void {
    assert.equal(outcome.connack, false, `${what}: let in`);
    const at = outcome.closedAfterMs;
    assert.ok(at !== undefined && at >= CONNECT_TIMEOUT_MS - 100 && at < CONNECT_TIMEOUT_MS + 700, `${what}: closed after ${at} ms`);
  }

  test('the steps in time: each listener lets the client in, and it stays past the connect timeout', async () => {
    const after = CONNECT_TIMEOUT_MS + 500;
    const outcomes = await Promise.all([
      attempt(ports['mqtt'] as number, [1200, 'connect', after, 'ping']),
      attempt(ports['mqtts'] as number, [600, 'tls', 600, 'connect', after, 'ping']),
      attempt(ports['ws'] as number, [600, 'upgrade', 600, 'connect', after, 'ping']),
      attempt(ports['wss'] as number, [400, 'tls', 400, 'upgrade', 400, 'connect', after, 'ping']),
      attempt(ports['proxied mqtts'] as number, [400, 'proxy', 400, 'tls', 400, 'connect', after, 'ping']),
      attempt(ports['proxied wss'] as number, [300, 'proxy', 300, 'tls', 300, 'upgrade', 300, 'connect', after, 'ping']),
    ]);
    assert.deepEqual(outcomes, Array.from({ length: 6 }, () => ({ connack: true, pong: true, closedAfterMs: undefined })));
  });

  test('mqtts: a TLS handshake and then a CONNECT, each late by less than the timeout, are too late together', async () => {
    assertCutAtTimeout(await attempt(ports['mqtts'] as number, [1400, 'tls', 1400, 'connect']), 'mqtts');
  });

  test('ws: an upgrade and then a CONNECT, each late by less than the timeout, are too late together', async () => {
    assertCutAtTimeout(await attempt(ports['ws'] as number, [1400, 'upgrade', 1400, 'connect']), 'ws');
  });

  test('wss: a TLS handshake, an upgrade and a CONNECT, each late by less than the timeout, are too late together', async () => {
    assertCutAtTimeout(await attempt(ports['wss'] as number, [900, 'tls', 900, 'upgrade', 900, 'connect']), 'wss');
  });

  test('PROXY listeners: the header counts too (mqtts, wss)', async () => {
    const [mqtts, wss] = await Promise.all([
      attempt(ports['proxied mqtts'] as number, [900, 'proxy', 900, 'tls', 900, 'connect']),
      attempt(ports['proxied wss'] as number, [700, 'proxy', 700, 'tls', 700, 'upgrade', 700, 'connect']),
    ]);
    assertCutAtTimeout(mqtts, 'proxied mqtts');
    assertCutAtTimeout(wss, 'proxied wss');
  });

  test('a TLS handshake cut at the connect timeout is logged as a handshake timeout', async () => {
    const from = lines.length;
    const outcome = await attempt(ports['mqtts'] as number, [CONNECT_TIMEOUT_MS + 1000]);
    assertCutAtTimeout(outcome, 'silent mqtts');
    const logged = lines.slice(from).filter((l) => l.msg.startsWith('TLS handshake'));
    assert.deepEqual(logged.map((l) => l.code), ['ERR_TLS_HANDSHAKE_TIMEOUT']);
  });
});
