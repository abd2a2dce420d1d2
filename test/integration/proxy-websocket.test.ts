import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import WebSocket from 'ws';
import { createBroker, type Broker, type ClientInfo } from '../../src/index.js';
import { delay } from '../helpers/broker.js';
import { createPki, type TestPki } from '../helpers/certs.js';

// HAProxy's send-proxy in front of MQTT over WebSocket: the PROXY header comes first on the TCP
// connection, before the HTTP upgrade (and, for wss, before the TLS handshake).

const CONNECT_TIMEOUT_MS = 1000;
const UPGRADE = 'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n';

const V1 = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n');
// v2, PROXY command, TCP over IPv4: 198.51.100.9:60000 -> 10.0.0.1:443
const V2 = Buffer.concat([
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]),
  Buffer.from([198, 51, 100, 9, 10, 0, 0, 1]),
  Buffer.from([0xea, 0x60, 0x01, 0xbb]),
]);
const HEADERS = [
  { version: 'v1', header: V1, address: '203.0.113.7:51234' },
  { version: 'v2', header: V2, address: '198.51.100.9:60000' },
];

/** CONNECT, 3.1.1, clean, keep alive 60 */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  return Buffer.concat([Buffer.from([0x10, 12 + id.length, 0, 4]), Buffer.from('MQTT'), Buffer.from([4, 2, 0, 60, 0, id.length]), id]);
}

/** Resolves after `ms`, holding no test open meanwhile. */
function later(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  return Promise.race([p, later(5000).then(() => Promise.reject(new Error(what)))]);
}

interface LogLine {
  msg: string;
  clientId?: string;
  address?: string;
}

describe('PROXY protocol on WebSocket listeners (ws and wss)', () => {
  let pki: TestPki;
  let broker: Broker;
  let ws: number;
  let wss: number;
  const connected: ClientInfo[] = [];
  const lines: LogLine[] = [];

  before(async () => {
    pki = createPki();
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    broker = await createBroker({ persistence: 'memory', logger, limits: { connectTimeoutMs: CONNECT_TIMEOUT_MS } });
    broker.on('clientConnected', (c) => connected.push(c));
    ws = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws', proxyProtocol: true })).port;
    wss = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'wss', proxyProtocol: true, tls: { cert: pki.serverCert, key: pki.serverKey } })).port;
  });
  after(async () => {
    await broker.close();
  });

  /** A WebSocket whose TCP connection starts with `header`; resolves with its CONNACK's bytes. */
  async function connackOver(protocol: 'ws' | 'wss', header: Buffer, clientId: string): Promise<string> {
    const port = protocol === 'ws' ? ws : wss;
    const socket = new WebSocket(`${protocol}://127.0.0.1:${port}/mqtt`, ['mqtt'], {
      createConnection: () => {
        const raw = netConnect({ port, host: '127.0.0.1' });
        raw.write(header);
        return protocol === 'ws' ? raw : tlsConnect({ socket: raw, ca: readFileSync(pki.ca), servername: 'localhost' });
      },
    });
    try {
      await withTimeout(new Promise((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      }), 'no upgrade');
      const answer = new Promise<Buffer>((resolve) => socket.once('message', (d: Buffer) => resolve(d)));
      socket.send(connectPacket(clientId));
      return (await withTimeout(answer, 'no CONNACK')).toString('hex');
    } finally {
      socket.terminate();
    }
  }

  for (const protocol of ['ws', 'wss'] as const) {
    for (const { version, header, address } of HEADERS) {
      test(`${protocol}: the client address of a PROXY ${version} header before the upgrade is the client's, in its events and log lines`, async () => {
        const id = `proxied-${protocol}-${version}`;
        assert.equal(await connackOver(protocol, header, id), '20020000');
        assert.equal(connected.find((c) => c.id === id)?.remoteAddress, address);
        const line = lines.find((l) => l.msg === 'client connected' && l.clientId === id);
        assert.equal(line?.address, address);
      });
    }
  }

  /** A raw TCP connection to `port` that writes each of `writes` in turn, a number being a pause in ms; resolves with what came back and when the broker closed it (-1: not within 5 s). */
  async function rawExchange(port: number, ...writes: Array<Buffer | string | number>): Promise<{ reply: string; closedAfterMs: number }> {
    const socket: Socket = netConnect({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    const started = Date.now();
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
    await new Promise((r) => socket.once('connect', r));
    for (const w of writes) {
      if (typeof w === 'number') await delay(w);
      else socket.write(w);
    }
    const closedAfterMs = await Promise.race([closed, later(5000).then(() => -1)]);
    socket.destroy();
    return { reply, closedAfterMs };
  }

  test('ws: a PROXY header and the upgrade request that come in pieces are put together', async () => {
    // upgraded, it sends no CONNECT: the broker closes it at the connect timeout
    const { reply } = await rawExchange(ws, V1.subarray(0, 10), 50, Buffer.concat([V1.subarray(10), Buffer.from(UPGRADE.slice(0, 20))]), 50, UPGRADE.slice(20));
    assert.match(reply, /^HTTP\/1\.1 101 /);
  });

  for (const protocol of ['ws', 'wss'] as const) {
    test(`${protocol}: an upgrade request with no PROXY header, or a malformed one, closes the connection at once, with no HTTP answer`, async () => {
      const port = protocol === 'ws' ? ws : wss;
      for (const first of [UPGRADE, 'PROXY TCP4 203.0.113.7 10.0.0.1 port 443\r\n', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05])]) {
        const { reply, closedAfterMs } = await rawExchange(port, first);
        assert.equal(reply, '', `answered ${JSON.stringify(reply)}`);
        assert.ok(closedAfterMs >= 0 && closedAfterMs < CONNECT_TIMEOUT_MS / 2, `closed after ${closedAfterMs} ms`);
      }
    });

    test(`${protocol}: a connection whose PROXY header does not come is closed at the connect timeout`, async () => {
      const port = protocol === 'ws' ? ws : wss;
      const { reply, closedAfterMs } = await rawExchange(port, 'PROXY TCP4 203.0');
      assert.equal(reply, '');
      assert.ok(closedAfterMs >= CONNECT_TIMEOUT_MS - 50 && closedAfterMs < CONNECT_TIMEOUT_MS + 1000, `closed after ${closedAfterMs} ms`);
    });
  }
});
