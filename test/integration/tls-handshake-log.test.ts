import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { pino } from 'pino';
import { createBroker, type Broker, type ClientInfo } from '../../src/index.js';
import { delay } from '../helpers/broker.js';
import { createPki, type TestPki } from '../helpers/certs.js';

interface LogLine {
  level: number;
  msg: string;
  listener?: string;
  address?: string;
  code?: string;
  err?: string;
  suppressed?: number;
}

const WARN = 40;

/** Resolves once the handshake is over, whichever way (TLS 1.3 tells the client of a refusal after it). */
function handshake(options: ConnectionOptions): Promise<void> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', servername: 'localhost', ...options });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.once('secureConnect', () => s.write(Buffer.from('101000044d5154540402003c0000', 'hex')));
  });
}

/** A TCP connection to a PROXY listener, its header sent. */
async function proxiedSocket(port: number): Promise<Socket> {
  const raw = netConnect({ port, host: '127.0.0.1' });
  raw.on('error', () => undefined);
  await new Promise((r) => raw.once('connect', r));
  raw.write('PROXY TCP4 203.0.113.7 10.0.0.1 51234 8883\r\n');
  return raw;
}

/** A CONNECT (3.1.1) over TLS: 'connack N' with its return code, or 'closed' when none comes. */
function mqttOver(options: ConnectionOptions, clientId = 'c'): Promise<string> {
  const id = Buffer.from(clientId);
  const connect = Buffer.concat([Buffer.from([0x10, 12 + id.length, 0, 4]), Buffer.from('MQTT'), Buffer.from([4, 2, 0, 60, 0, id.length]), id]);
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', servername: 'localhost', ...options });
    s.on('error', () => resolve('closed'));
    s.on('close', () => resolve('closed'));
    s.once('secureConnect', () => s.write(connect));
    s.once('data', (d: Buffer) => {
      resolve(d[0] === 0x20 ? `connack ${d[3]}` : `got ${d.toString('hex')}`);
      s.destroy();
    });
  });
}

describe('a TLS client refused at the handshake is logged, at a bounded rate', () => {
  let pki: TestPki;
  let stranger: TestPki;
  let broker: Broker;
  const lines: LogLine[] = [];
  let mtls: number;
  let wss: number;
  let proxied: number;
  const connected: ClientInfo[] = [];

  before(async () => {
    pki = createPki('device-1');
    stranger = createPki('intruder');
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    broker = await createBroker({ persistence: 'memory', logger, limits: { connectTimeoutMs: 1000 } });
    broker.on('clientConnected', (c) => connected.push(c));
    const tls = { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true };
    mtls = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'mqtts', tls })).port;
    wss = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'wss', tls })).port;
    proxied = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'mqtts', tls: { ...tls, certificateAsUsername: true }, proxyProtocol: true })).port;
  });
  after(async () => {
    await broker.close();
  });

  /** the handshake lines logged since `from`, once the broker has had a moment to log them */
  async function handshakeLines(from: number, count: number): Promise<LogLine[]> {
    const deadline = Date.now() + 3000;
    const found = (): LogLine[] => lines.slice(from).filter((l) => l.msg.startsWith('TLS handshake'));
    while (found().length < count && Date.now() < deadline) await delay(20);
    return found();
  }

  test('mqtts: a client without a certificate is logged (warn) with the listener, its address and the TLS error', async () => {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const from = lines.length;
      await handshake({ port: mtls, ca: readFileSync(pki.ca), maxVersion });
      const [line, ...more] = await handshakeLines(from, 1);
      assert.ok(line !== undefined, `nothing logged for ${maxVersion}`);
      assert.deepEqual(more, []);
      assert.equal(line.level, WARN);
      assert.equal(line.listener, `mqtts 127.0.0.1:${mtls}`);
      assert.match(line.address ?? '', /^127\.0\.0\.1:\d+$/);
      assert.equal(line.code, 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
      assert.equal(line.err, 'peer did not return a certificate');
    }
  });

  test('mqtts: a client certificate from another CA is logged', async () => {
    const from = lines.length;
    await handshake({ port: mtls, ca: readFileSync(pki.ca), cert: readFileSync(stranger.clientCert), key: readFileSync(stranger.clientKey) });
    const [line] = await handshakeLines(from, 1);
    assert.equal(line?.listener, `mqtts 127.0.0.1:${mtls}`);
    // Node checks it after the handshake and closes the socket: its address was kept from the start
    assert.match(line?.address ?? '', /^127\.0\.0\.1:\d+$/);
    // the issuer is not among the CAs the listener trusts
    assert.equal(line?.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.match(line?.err ?? '', /certificate/);
  });

  test('wss: a client without a certificate is logged', async () => {
    const from = lines.length;
    await handshake({ port: wss, ca: readFileSync(pki.ca) });
    const [line] = await handshakeLines(from, 1);
    assert.equal(line?.listener, `wss 127.0.0.1:${wss}`);
    assert.equal(line?.code, 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
  });

  test('mqtts behind a PROXY header: a client without a certificate is logged with the address the header names', async () => {
    const from = lines.length;
    await handshake({ socket: await proxiedSocket(proxied), ca: readFileSync(pki.ca) });
    const [line] = await handshakeLines(from, 1);
    assert.equal(line?.listener, `mqtts 127.0.0.1:${proxied}`);
    assert.equal(line?.address, '203.0.113.7:51234');
    assert.equal(line?.code, 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
  });

  test('mqtts behind a PROXY header: a client certificate from another CA is refused, and logged', async () => {
    const from = lines.length;
    const answer = await mqttOver({ socket: await proxiedSocket(proxied), ca: readFileSync(pki.ca), cert: readFileSync(stranger.clientCert), key: readFileSync(stranger.clientKey) });
    assert.equal(answer, 'closed', 'no CONNACK for an untrusted certificate');
    assert.deepEqual(connected.filter((c) => c.username === 'intruder'), []);
    const [line] = await handshakeLines(from, 1);
    assert.equal(line?.address, '203.0.113.7:51234');
    assert.match(line?.err ?? '', /certificate/);
  });

  test('mqtts behind a PROXY header: a verified client certificate connects, with its CN as the username and the address of the header', async () => {
    const answer = await mqttOver({ socket: await proxiedSocket(proxied), ca: readFileSync(pki.ca), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) }, 'proxied-mtls');
    assert.equal(answer, 'connack 0');
    const info = connected.find((c) => c.id === 'proxied-mtls');
    assert.equal(info?.username, 'device-1');
    assert.equal(info?.remoteAddress, '203.0.113.7:51234');
  });

  test('a peer that connects and hangs up without a handshake (a TCP health check) is not logged', async () => {
    const from = lines.length;
    await new Promise<void>((resolve) => {
      const s = netConnect({ port: mtls, host: '127.0.0.1' }, () => s.end());
      s.on('error', () => undefined);
      s.on('close', () => resolve());
    });
    await delay(200);
    assert.deepEqual(lines.slice(from), []);
  });

  test('a flood of refused handshakes is logged at most 10 lines a second, then one line counting the rest', async () => {
    await delay(1100); // a second of its own
    const from = lines.length;
    const tries = 40;
    await Promise.all(Array.from({ length: tries }, () => handshake({ port: mtls, ca: readFileSync(pki.ca) })));
    await delay(1200); // the count comes once the second is over
    const logged = lines.slice(from).filter((l) => l.msg.startsWith('TLS handshake'));
    const summaries = lines.slice(from).filter((l) => l.suppressed !== undefined);
    const suppressed = summaries.reduce((n, l) => n + (l.suppressed ?? 0), 0);
    assert.ok(logged.length <= 10 * (summaries.length + 1), `${logged.length} lines in ${summaries.length + 1} seconds`);
    assert.ok(summaries.length >= 1, 'the rest are counted');
    assert.equal(summaries[0]?.level, WARN);
    assert.equal(logged.length + suppressed, tries, 'every refusal is either logged or counted');
  });
});
