import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createConnection, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket, { WebSocketServer, createWebSocketStream } from 'ws';
import { createBroker, type Broker } from '../../src/index.js';
import { closeClients, connectClient, nextMessages } from '../helpers/broker.js';
import { expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

const dir = mkdtempSync(join(tmpdir(), 'midge-handle-'));
let sockets = 0;
const servers: Server[] = [];
const brokers: Broker[] = [];

/** A broker closed after the file's tests even when one fails halfway (close() is idempotent). */
async function newBroker(options: Parameters<typeof createBroker>[0] = {}): Promise<Broker> {
  const b = await createBroker({ persistence: 'memory', ...options });
  brokers.push(b);
  return b;
}

/** An application's own Unix-socket server whose every connection is handed to the broker. */
async function unixServer(broker: Broker, options: Parameters<Broker['handle']>[1] = {}): Promise<string> {
  const path = join(dir, `s${sockets++}.sock`);
  const server = createServer((socket) => broker.handle(socket, options));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

/** MQTT.js over a stream of the test's choosing, resolved at CONNACK. */
function clientOver(path: string, options: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = new MqttClient(() => createConnection(path), { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
    client.once('connect', () => resolve(client));
  });
}

/** MQTT.js over WebSocket to the application's own HTTP server of the WebSocket test. */
function wsClient(port: number, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`ws://127.0.0.1:${port}/app/mqtt`, { clientId, reconnectPeriod: 0 });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

after(async () => {
  await closeClients();
  await Promise.all(brokers.map((b) => b.close()));
  for (const s of servers) s.close();
});

describe('embedding: broker.handle(stream) serves streams the application accepted itself', () => {
  test('MQTT.js over a Unix domain socket and over TCP: QoS 1 both ways through one broker', async () => {
    const broker = await newBroker();
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const path = await unixServer(broker);
    const local = await clientOver(path, { clientId: 'local', protocolVersion: 5 });
    const remote = await connectClient(port, { clientId: 'remote' });
    await local.subscribeAsync('to/local', { qos: 1 });
    await remote.subscribeAsync('to/remote', { qos: 1 });
    const atLocal = nextMessages(local, 1);
    const atRemote = nextMessages(remote, 1);
    await remote.publishAsync('to/local', 'from tcp', { qos: 1 });
    await local.publishAsync('to/remote', 'from unix', { qos: 1 });
    assert.equal((await atLocal)[0]?.payload.toString(), 'from tcp');
    assert.equal((await atRemote)[0]?.payload.toString(), 'from unix');
    assert.equal(broker.stats.clientsConnected, 2);
    await local.endAsync();
    await broker.close();
  });

  test('a WebSocket upgraded by the application\'s own HTTP server (ws createWebSocketStream)', async () => {
    const broker = await newBroker();
    const http = createHttpServer((_req, res) => res.end('the application\'s page\n'));
    const wss = new WebSocketServer({ server: http, path: '/app/mqtt' });
    wss.on('connection', (ws, req) => broker.handle(createWebSocketStream(ws), { remoteAddress: `${req.socket.remoteAddress}:${req.socket.remotePort}` }));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;
    const client = await wsClient(port, 'browser-like');
    await client.subscribeAsync('page/+', { qos: 1 });
    const got = nextMessages(client, 1);
    await broker.publish({ topic: 'page/1', payload: 'hello page', qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'hello page');
    const page = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await page.text(), 'the application\'s page\n');
    // a client that says DISCONNECT is seen to go
    const gone = new Promise<string>((resolve) => broker.on('clientDisconnected', (c) => resolve(c.id)));
    await client.endAsync();
    assert.equal(await gone, 'browser-like');
    assert.equal(broker.stats.clientsConnected, 0);
    // a WebSocket dropped without DISCONNECT: its stream only ends, and the will still goes out
    const watcher = await wsClient(port, 'watcher');
    await watcher.subscribeAsync('wills/#', { qos: 1 });
    const will = nextMessages(watcher, 1);
    const raw = new WebSocket(`ws://127.0.0.1:${port}/app/mqtt`, 'mqtt');
    await new Promise((resolve, reject) => {
      raw.once('open', resolve);
      raw.once('error', reject);
    });
    const connack = new Promise<Buffer>((resolve) => raw.once('message', (data) => resolve(data as Buffer)));
    raw.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dropped', clean: true, keepalive: 0, will: { topic: 'wills/dropped', payload: Buffer.from('gone'), qos: 1, retain: false } }));
    assert.equal((await connack).toString('hex'), '20020000');
    raw.terminate();
    assert.equal((await will)[0]?.payload.toString(), 'gone');
    await watcher.endAsync();
    await broker.close();
    wss.close();
    http.close();
  });

  test('[MQTT-3.1.2-24] a handled stream silent for 1.5 x keep alive is closed', async () => {
    const broker = await newBroker();
    const path = await unixServer(broker);
    const { raw, connack } = await rawConnect(path, 4, { clientId: 'quiet', keepalive: 1 });
    assert.equal(connack.returnCode, 0);
    const started = Date.now();
    assert.ok(await raw.waitClosed(4000), 'closed by the broker');
    const waited = Date.now() - started;
    assert.ok(waited >= 1400 && waited < 2600, `closed after ${waited} ms`);
    await broker.close();
  });

  test('the broker-wide connection limit counts handled streams with listeners: 5.0 CONNACK 0x97', async () => {
    const broker = await newBroker({ limits: { maxConnections: 1 } });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const path = await unixServer(broker);
    const first = await rawConnect(port, 5, { clientId: 'first' });
    assert.equal(first.connack.reasonCode, 0);
    const second = await rawConnect(path, 5, { clientId: 'second' });
    assert.equal(second.connack.reasonCode, 0x97);
    assert.ok(await second.raw.waitClosed());
    first.raw.close();
    await broker.close();
  });

  test('allowAnonymous per stream: refused on the broker\'s policy, accepted where the application allows it', async () => {
    const broker = await newBroker({ allowAnonymous: false });
    const strict = await unixServer(broker);
    const trusted = await unixServer(broker, { allowAnonymous: true });
    const refused = await rawConnect(strict, 5, { clientId: 'anon' });
    assert.equal(refused.connack.reasonCode, 0x86);
    const accepted = await rawConnect(trusted, 5, { clientId: 'anon-local' });
    assert.equal(accepted.connack.reasonCode, 0);
    accepted.raw.close();
    await broker.close();
  });

  test('verifiedUsername: the application\'s verified identity is the client\'s user name, with no password asked', async () => {
    const seen: Array<string | undefined> = [];
    const broker = await newBroker({ allowAnonymous: false });
    broker.on('clientConnected', (c) => seen.push(c.username));
    const verified = await unixServer(broker, { verifiedUsername: 'device-7' });
    const plain = await unixServer(broker);
    // no user name in the CONNECT, and anonymous clients are refused: the verified one is in
    const ok = await rawConnect(verified, 5, { clientId: 'v' });
    assert.equal(ok.connack.reasonCode, 0);
    // a user name the client claims gives way to the verified one
    const claims = await rawConnect(verified, 5, { clientId: 'w', username: 'someone-else' });
    assert.equal(claims.connack.reasonCode, 0);
    assert.deepEqual(seen, ['device-7', 'device-7']);
    const refused = await rawConnect(plain, 5, { clientId: 'p' });
    assert.equal(refused.connack.reasonCode, 0x86);
    claims.raw.close();
    ok.raw.close();
    await broker.close();
  });

  test('a malformed packet on a handled stream closes that stream only', async () => {
    const broker = await newBroker();
    const path = await unixServer(broker);
    const good = await rawConnect(path, 4, { clientId: 'good' });
    await rawSubscribe(good.raw, 4, 1, [{ topic: 't', qos: 0 }]);
    const bad = await rawConnect(path, 4, { clientId: 'bad' });
    // [MQTT-3.3.1-4] (3.1.1) a PUBLISH with both QoS bits set is malformed
    bad.raw.send('36 05 00 01 74 00 01');
    assert.ok(await bad.raw.waitClosed());
    good.raw.sendPacket({ cmd: 'publish', topic: 't', payload: Buffer.from('still here'), qos: 0 });
    assert.equal((await expectPacket(good.raw, 'publish')).payload?.toString(), 'still here');
    good.raw.close();
    await broker.close();
  });

  test('close() sends a handled 5.0 client DISCONNECT 0x8B and ends its stream', async () => {
    const broker = await newBroker();
    const path = await unixServer(broker);
    const { raw } = await rawConnect(path, 5, { clientId: 'leaving' });
    const closing = broker.close();
    assert.equal((await expectPacket(raw, 'disconnect')).reasonCode, 0x8b);
    assert.ok(await raw.waitClosed());
    await closing;
  });

  test('/readyz: a broker that only serves handled streams is ready once it serves one', async () => {
    const broker = await newBroker();
    const http = await broker.listenHttp({ port: 0 });
    const ready = async (): Promise<number> => (await fetch(`http://127.0.0.1:${http.port}/readyz`)).status;
    assert.equal(await ready(), 503);
    const path = await unixServer(broker);
    const { raw } = await rawConnect(path, 4, { clientId: 'first' });
    assert.equal(await ready(), 200);
    raw.close();
    await broker.close();
  });

  test('bad input: a text or object-mode stream, or one handed twice, is refused with a TypeError; a closed broker destroys what it is handed', async () => {
    const broker = await newBroker();
    assert.throws(() => broker.handle(new PassThrough({ objectMode: true })), /byte stream/);
    const text = new PassThrough();
    text.setEncoding('utf8');
    assert.throws(() => broker.handle(text), /byte stream/);
    const twice = new PassThrough();
    broker.handle(twice);
    assert.throws(() => broker.handle(twice), /already serves/);
    twice.destroy();
    await broker.close();
    const late = new PassThrough();
    broker.handle(late);
    assert.equal(late.destroyed, true);
  });
});
