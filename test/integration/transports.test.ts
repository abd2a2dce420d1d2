import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { MAX_SOCKET_PATH_BYTES } from '../../src/config/socket-path.js';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import mqtt from 'mqtt';
import mqttPacketLib from 'mqtt-packet';
import type mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { createBroker, type Broker, type ClientInfo } from '../../src/index.js';
import { closeClients, collectFor, connectClient, delay, nextMessages } from '../helpers/broker.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { RawClient } from '../helpers/raw-client.js';

describe('transports: TLS, mutual TLS, WebSocket, PROXY protocol, listener limits', () => {
  let broker: Broker;
  let pki: TestPki;
  let tcp: number;
  let tls: number;
  let mtls: number;
  let ws: number;
  let wss: number;
  let proxied: number;
  let limited: number;
  const connected: ClientInfo[] = [];

  before(async () => {
    pki = createPki('device-1');
    broker = await createBroker({ persistence: 'memory', limits: { connectTimeoutMs: 1000 } });
    broker.on('clientConnected', (c) => connected.push(c));
    const tlsFiles = { cert: pki.serverCert, key: pki.serverKey };
    tcp = (await broker.listen({ port: 0, host: '127.0.0.1' })).port;
    tls = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'mqtts', tls: tlsFiles })).port;
    mtls = (await broker.listen({
      port: 0,
      host: '127.0.0.1',
      protocol: 'mqtts',
      tls: { ...tlsFiles, ca: pki.ca, requireClientCert: true, certificateAsUsername: true },
    })).port;
    ws = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
    wss = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'wss', tls: tlsFiles })).port;
    proxied = (await broker.listen({ port: 0, host: '127.0.0.1', proxyProtocol: true })).port;
    limited = (await broker.listen({ port: 0, host: '127.0.0.1', maxConnections: 1 })).port;
  });
  after(async () => {
    await closeClients();
    await broker.close();
  });

  async function roundTrip(sub: mqtt.MqttClient, pub: mqtt.MqttClient, topic: string): Promise<void> {
    await sub.subscribeAsync(topic, { qos: 1 });
    const got = nextMessages(sub, 1);
    await pub.publishAsync(topic, 'over the wire', { qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'over the wire');
  }

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`MQTT over ${version}: a publish crosses from a TLS client to a TCP client`, async () => {
      const secure = await connectClient(tls, {
        protocol: 'mqtts',
        ca: readFileSync(pki.ca),
        minVersion: version,
        maxVersion: version,
        clientId: `tls-${version}`,
      } as mqtt.IClientOptions);
      const plain = await connectClient(tcp, { clientId: `plain-${version}` });
      await roundTrip(plain, secure, `tls/${version}`);
    });
  }

  test('TLS older than 1.2 is refused', async () => {
    const err = await new Promise<Error | undefined>((resolve) => {
      const s = tlsConnect({ port: tls, host: '127.0.0.1', ca: readFileSync(pki.ca), minVersion: 'TLSv1', maxVersion: 'TLSv1.1', servername: 'localhost' });
      s.once('secureConnect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('error', (e) => resolve(e));
    });
    assert.ok(err !== undefined, 'handshake must fail');
  });

  test('a TLS 1.2 client may not renegotiate: the broker refuses, and does not spend a handshake on each try', async () => {
    const s = tlsConnect({ port: tls, host: '127.0.0.1', ca: readFileSync(pki.ca), maxVersion: 'TLSv1.2', servername: 'localhost' });
    s.on('error', () => undefined);
    await new Promise((r) => s.once('secureConnect', r));
    const closed = new Promise((r) => s.once('close', r));
    s.write(Buffer.from('101000044d5154540402003c0004726e6567', 'hex'));
    let accepted = 0;
    for (let i = 0; i < 5; i++) {
      const outcome = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('no answer'), 2000);
        const started = s.renegotiate({}, (err) => {
          clearTimeout(timer);
          resolve(err === null || err === undefined ? 'ok' : 'refused');
        });
        if (!started) {
          clearTimeout(timer);
          resolve('refused');
        }
      });
      if (outcome !== 'ok') break;
      accepted++;
    }
    assert.equal(accepted, 0, 'no renegotiation accepted');
    s.destroy();
    await closed;
  });

  test('mutual TLS: a client without a certificate is refused at the handshake', async () => {
    const failed = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ port: mtls, host: '127.0.0.1', ca: readFileSync(pki.ca), servername: 'localhost' });
      s.once('secureConnect', () => {
        // TLS 1.3 reports the refusal after the handshake, as the connection closes
        s.once('close', () => resolve(true));
        s.write(Buffer.from('101000044d5154540402003c0000', 'hex'));
        setTimeout(() => resolve(false), 2000);
      });
      s.once('error', () => resolve(true));
    });
    assert.ok(failed);
  });

  test('mutual TLS: a verified client certificate connects and its CN becomes the username', async () => {
    const before = connected.length;
    const c = await connectClient(mtls, {
      protocol: 'mqtts',
      ca: readFileSync(pki.ca),
      cert: readFileSync(pki.clientCert),
      key: readFileSync(pki.clientKey),
      clientId: 'mtls-client',
      username: 'ignored-name',
    } as mqtt.IClientOptions);
    assert.ok(c.connected);
    const info = connected.slice(before).find((x) => x.id === 'mtls-client');
    assert.equal(info?.username, 'device-1');
  });

  test('mutual TLS with certificateAsUsername: a certificate without a CN is refused (0x86), whatever user name the client sends; of several CNs the first is the name', async () => {
    const [noCnCert, noCnKey] = pki.issueClient('no-cn', '/O=No CN');
    const [twoCert, twoKey] = pki.issueClient('two-cn', '/CN=device-2/CN=admin');
    const before = connected.length;
    for (const protocolVersion of [5, 4] as const) {
      const refused = mqtt.connect(`mqtts://127.0.0.1:${mtls}`, {
        ca: readFileSync(pki.ca),
        cert: readFileSync(noCnCert),
        key: readFileSync(noCnKey),
        clientId: `no-cn-${protocolVersion}`,
        username: 'admin',
        protocolVersion,
        reconnectPeriod: 0,
      } as mqtt.IClientOptions);
      const err = await new Promise<Error & { code?: number }>((resolve) => {
        refused.once('error', resolve);
        refused.once('connect', () => resolve(new Error('let in')));
      });
      refused.end(true);
      assert.equal(err.code, protocolVersion === 5 ? 0x86 : 4, err.message);
    }
    assert.equal(connected.slice(before).length, 0, 'no client with that certificate was let in');
    const named = await connectClient(mtls, {
      protocol: 'mqtts',
      ca: readFileSync(pki.ca),
      cert: readFileSync(twoCert),
      key: readFileSync(twoKey),
      clientId: 'two-cn',
      username: 'admin',
    } as mqtt.IClientOptions);
    assert.ok(named.connected);
    assert.equal(connected.slice(before).find((x) => x.id === 'two-cn')?.username, 'device-2');
  });

  test('certificates are reloaded without dropping live connections', async () => {
    const live = await connectClient(tls, { protocol: 'mqtts', ca: readFileSync(pki.ca), clientId: 'before-reload' } as mqtt.IClientOptions);
    const serialOf = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ port: tls, host: '127.0.0.1', ca: readFileSync(pki.ca), servername: 'localhost' }, () => {
          const serial = s.getPeerCertificate().serialNumber;
          s.destroy();
          resolve(serial);
        });
        s.once('error', reject);
      });
    const first = await serialOf();
    const [cert, key] = pki.issueServer('renewed');
    copyFileSync(cert, pki.serverCert);
    copyFileSync(key, pki.serverKey);
    broker.reloadTls();
    const second = await serialOf();
    assert.notEqual(first, second, 'new handshakes see the new certificate');
    await live.publishAsync('still/alive', 'yes', { qos: 1 });
    assert.ok(live.connected);
    // renewed on disk again, with no reload call: the broker notices the files changed
    const [cert2, key2] = pki.issueServer('renewed-again');
    copyFileSync(cert2, pki.serverCert);
    copyFileSync(key2, pki.serverKey);
    let third = second;
    const deadline = Date.now() + 8000;
    while (third === second && Date.now() < deadline) {
      await delay(250);
      third = await serialOf();
    }
    assert.notEqual(third, second, 'a changed certificate file is picked up by itself');
    assert.ok(live.connected);
  });

  test('a TLS client that stalls mid-handshake is cut off while others are served', async () => {
    const stalled = netConnect({ port: tls, host: '127.0.0.1' });
    await new Promise((r) => stalled.once('connect', r));
    stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // the start of a ClientHello
    const closed = new Promise<number>((resolve) => {
      const t0 = Date.now();
      stalled.once('close', () => resolve(Date.now() - t0));
    });
    stalled.on('error', () => undefined);
    const other = await connectClient(tls, { protocol: 'mqtts', ca: readFileSync(pki.ca), clientId: 'during-stall' } as mqtt.IClientOptions);
    assert.ok(other.connected);
    const took = await closed;
    assert.ok(took < 3000, `closed after ${took} ms`);
  });

  test('[MQTT-6.0.0-4] WebSocket: subprotocol "mqtt" is selected and messages flow both ways', async () => {
    const viaWs = await connectClient(ws, { protocol: 'ws', path: '/mqtt', clientId: 'ws-client' } as mqtt.IClientOptions);
    const plain = await connectClient(tcp, { clientId: 'ws-peer' });
    await roundTrip(viaWs, plain, 'ws/in');
    await roundTrip(plain, viaWs, 'ws/out');
    const proto = await new Promise<string>((resolve, reject) => {
      const s = new WebSocket(`ws://127.0.0.1:${ws}/mqtt`, ['mqtt']);
      s.once('open', () => {
        resolve(s.protocol);
        s.close();
      });
      s.once('error', reject);
    });
    assert.equal(proto, 'mqtt');
  });

  test('WebSocket over TLS (wss) with MQTT 5', async () => {
    const viaWss = await connectClient(wss, { protocol: 'wss', path: '/mqtt', ca: readFileSync(pki.ca), protocolVersion: 5, clientId: 'wss-client' } as mqtt.IClientOptions);
    const plain = await connectClient(tcp, { clientId: 'wss-peer', protocolVersion: 5 });
    await roundTrip(viaWss, plain, 'wss/x');
  });

  test('[MQTT-6.0.0-1] a text WebSocket frame closes the connection', async () => {
    const code = await new Promise<number>((resolve, reject) => {
      const s = new WebSocket(`ws://127.0.0.1:${ws}/mqtt`, ['mqtt']);
      s.once('open', () => s.send('not binary'));
      s.once('close', (c) => resolve(c));
      s.once('error', reject);
    });
    assert.ok(code === 1003 || code === 1006, `closed with ${code}`);
  });

  test('[MQTT-6.0.0-2] MQTT packets split across and packed into WebSocket frames', async () => {
    const s = new WebSocket(`ws://127.0.0.1:${ws}/mqtt`, ['mqtt']);
    await new Promise((r) => s.once('open', r));
    const connect = Buffer.from('101000044d5154540402003c000477732d66', 'hex');
    const fixed = Buffer.from(connect);
    fixed[1] = fixed.length - 2;
    // CONNECT in two frames, then PINGREQ + PINGREQ in one frame
    const replies: Buffer[] = [];
    s.on('message', (d: Buffer) => replies.push(d));
    s.send(fixed.subarray(0, 5));
    s.send(fixed.subarray(5));
    await delay(100);
    s.send(Buffer.from([0xc0, 0x00, 0xc0, 0x00]));
    await delay(300);
    const all = Buffer.concat(replies);
    assert.equal(all[0], 0x20, 'CONNACK first');
    assert.equal(all[3], 0, 'accepted');
    assert.deepEqual([...all.subarray(4)], [0xd0, 0x00, 0xd0, 0x00], 'two PINGRESPs');
    s.close();
  });

  test('[MQTT-3.1.2-10] a throttled WebSocket client that closes after DISCONNECT: what it sent is all handled, and its will is not published', async () => {
    const slow = await createBroker({ persistence: 'memory', limits: { maxPublishRate: 10 } });
    try {
      const tcpPort = (await slow.listen({ port: 0, host: '127.0.0.1' })).port;
      const wsPort = (await slow.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
      const sub = await connectClient(tcpPort, { clientId: 'ws-throttle-sub' });
      await sub.subscribeAsync(['ws-throttled/#', 'will/ws-throttled'], { qos: 0 });
      const got = collectFor(sub, 3500);
      const s = new WebSocket(`ws://127.0.0.1:${wsPort}/mqtt`, ['mqtt']);
      await new Promise((r) => s.once('open', r));
      const gen = (p: Record<string, unknown>): Buffer => mqttPacketLib.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 });
      const frames = [gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'ws-throttled', will: { topic: 'will/ws-throttled', payload: Buffer.from('gone'), qos: 0, retain: false } })];
      // 3.1.1 clients over a publish rate are throttled, never refused: read more slowly
      for (let i = 0; i < 20; i++) frames.push(gen({ cmd: 'publish', topic: `ws-throttled/${i}`, payload: Buffer.from(String(i)), qos: 0, retain: false }));
      frames.push(gen({ cmd: 'disconnect' }));
      s.send(Buffer.concat(frames));
      await delay(100);
      s.close();
      const topics = (await got).map((m) => m.topic);
      assert.equal(topics.filter((t) => t.startsWith('ws-throttled/')).length, 20, 'every message it sent before closing');
      assert.ok(!topics.includes('will/ws-throttled'), 'no will after its DISCONNECT');
    } finally {
      await slow.close();
    }
  });

  test('a plain HTTP request to a WebSocket listener gets 426 rather than a hang, naming the upgrade it needs', async () => {
    const res = await fetch(`http://127.0.0.1:${ws}/mqtt`);
    assert.equal(res.status, 426);
    assert.equal(res.headers.get('upgrade'), 'websocket');
  });

  test('[MQTT-6.0.0-4] a WebSocket client that offers subprotocols but not mqtt is refused (400); one that offers none is taken', async () => {
    const refused = await new Promise<number | string>((resolve) => {
      const s = new WebSocket(`ws://127.0.0.1:${ws}/mqtt`, ['foo']);
      s.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        s.terminate();
      });
      s.once('open', () => {
        resolve('upgraded');
        s.close();
      });
      // a client offered no subprotocol back fails the handshake itself
      s.once('error', (err) => resolve(`upgraded without a subprotocol (${err.message})`));
    });
    assert.equal(refused, 400);
    const plain = new WebSocket(`ws://127.0.0.1:${ws}/mqtt`);
    await new Promise((r) => plain.once('open', r));
    plain.close();
  });

  test('a WebSocket client that never sends CONNECT, nor answers the close frame, is cut off soon after the connect timeout; so is a request that never ends its headers', async () => {
    const cutAfter = async (bytes: string): Promise<number> => {
      const started = Date.now();
      const s = netConnect({ port: ws, host: '127.0.0.1' });
      s.on('data', () => undefined);
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      s.write(bytes);
      await new Promise((r) => s.once('close', r));
      return Date.now() - started;
    };
    // a raw upgrade: the socket reads what the server sends and answers nothing
    const upgraded = cutAfter('GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n');
    const unfinished = cutAfter('GET /mqtt HTTP/1.1\r\nHost: x\r\n');
    const [a, b] = await Promise.all([upgraded, unfinished]);
    // connect timeout 1 s here; before, ws waited 30 s for the close reply and Node checked
    // unfinished headers every 30 s
    assert.ok(a < 8000, `upgraded, silent: cut after ${a} ms`);
    assert.ok(b < 5000, `headers never ended: cut after ${b} ms`);
  });

  test('PROXY protocol v1: the address in the header is the client address', async () => {
    const raw = await RawClient.open(proxied, 4);
    raw.send(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n'));
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'proxied-v1' });
    assert.equal((await raw.next()).cmd, 'connack');
    assert.equal(connected.find((c) => c.id === 'proxied-v1')?.remoteAddress, '203.0.113.7:51234');
    raw.close();
  });

  test('PROXY protocol v2: the address in the header is the client address', async () => {
    const raw = await RawClient.open(proxied, 4);
    const header = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]),
      Buffer.from([198, 51, 100, 9, 10, 0, 0, 1]),
      Buffer.from([0xea, 0x60, 0x07, 0x5b]),
    ]);
    raw.send(header);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'proxied-v2' });
    assert.equal((await raw.next()).cmd, 'connack');
    assert.equal(connected.find((c) => c.id === 'proxied-v2')?.remoteAddress, '198.51.100.9:60000');
    raw.close();
  });

  test('a PROXY listener closes a connection that does not start with a header', async () => {
    const raw = await RawClient.open(proxied, 4);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'no-header' });
    assert.ok(await raw.waitClosed());
  });

  test('Unix socket listeners: MQTT.js over mqtt, and MQTT over WebSocket, on socket files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-unix-'));
    const plain = await broker.listen({ socket: join(dir, 'mqtt.sock') });
    assert.deepEqual(plain, { protocol: 'mqtt', host: '', port: 0, socket: join(dir, 'mqtt.sock') });
    const local = await new Promise<mqtt.MqttClient>((resolve, reject) => {
      const c = new mqtt.MqttClient(() => netConnect(join(dir, 'mqtt.sock')), { clientId: 'unix-local', reconnectPeriod: 0 });
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    const remote = await connectClient(tcp, { clientId: 'unix-remote' });
    await roundTrip(local, remote, 'unix/in');
    assert.equal(connected.find((c) => c.id === 'unix-local')?.remoteAddress, `unix:${join(dir, 'mqtt.sock')}`);
    await local.endAsync();
    await broker.listen({ socket: join(dir, 'ws.sock'), protocol: 'ws' });
    const socket = new WebSocket(`ws+unix:${join(dir, 'ws.sock')}:/mqtt`, 'mqtt');
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const answer = new Promise<Buffer>((resolve) => socket.once('message', (data) => resolve(data as Buffer)));
    // CONNECT, 3.1.1, clean, keep alive 0, client id "u"
    socket.send(Buffer.from('100d00044d51545404020000000175', 'hex'));
    assert.equal((await answer).toString('hex'), '20020000');
    socket.close();
    // a path longer than sun_path takes is refused, not cut short into a file of another name
    const long = join(dir, 's'.repeat(120) + '.sock');
    await assert.rejects(broker.listen({ socket: long }), (err: Error) => err.message === `listen: socket ${long} is ${Buffer.byteLength(long)} bytes long; a Unix socket path may have at most ${String(MAX_SOCKET_PATH_BYTES)} bytes on this system`);
    assert.deepEqual(readdirSync(dir).sort(), ['mqtt.sock', 'ws.sock']);
  });

  test('a listener connection limit: the next 5.0 client gets CONNACK 0x97, a 3.1.1 client return code 3', async () => {
    const first = await connectClient(limited, { clientId: 'limit-1' });
    for (const [protocolVersion, code] of [[5, 0x97], [4, 3]] as const) {
      const raw = await RawClient.open(limited, protocolVersion);
      raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, keepalive: 30, clientId: `limit-${protocolVersion}` }, protocolVersion);
      const ack = (await raw.next()) as mqttPacket.IConnackPacket;
      assert.equal(protocolVersion === 5 ? ack.reasonCode : ack.returnCode, code);
      assert.ok(await raw.waitClosed());
    }
    await first.endAsync();
    await delay(50);
    const again = await connectClient(limited, { clientId: 'limit-again' });
    assert.ok(again.connected);
  });
});
