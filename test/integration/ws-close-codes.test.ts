import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqttPacketLib from 'mqtt-packet';
import type mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { createBroker } from '../../src/index.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';

// The close frame is all a WebSocket client (a browser's above all) is sure to see of why it was
// let go: a 3.1.1 client gets no DISCONNECT, nor does any client refused or cut off before CONNACK.

const MAX_PACKET = 1024;

function gen(packet: Record<string, unknown>, protocolVersion = 4): Buffer {
  return mqttPacketLib.generate(packet as unknown as mqttPacket.Packet, { protocolVersion });
}

function connect(clientId: string, protocolVersion = 4): Buffer {
  return gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, keepalive: 0, clientId }, protocolVersion);
}

function decode(chunks: Buffer[], protocolVersion: number): mqttPacket.Packet[] {
  const parser = mqttPacketLib.parser({ protocolVersion });
  const packets: mqttPacket.Packet[] = [];
  parser.on('packet', (p: mqttPacket.Packet) => packets.push(p));
  parser.parse(Buffer.concat(chunks));
  return packets;
}

interface Client {
  ws: WebSocket;
  /** the close code the broker's close frame carried (1006: none came) */
  closed: Promise<number>;
  /** every binary message from the broker, in order */
  received: Buffer[];
}

async function open(port: number): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, ['mqtt']);
  const received: Buffer[] = [];
  ws.on('message', (d: Buffer) => received.push(d));
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((r) => ws.once('open', r));
  return { ws, closed, received };
}

/** Sends each frame in turn (a string as a text frame) and resolves with the broker's close code. */
async function closeCodeAfter(port: number, ...frames: Array<Buffer | string>): Promise<number> {
  const c = await open(port);
  for (const f of frames) c.ws.send(f, { binary: typeof f !== 'string' });
  return withTimeout(c.closed);
}

function withTimeout(closed: Promise<number>, ms = 5000): Promise<number> {
  return Promise.race([closed, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('the broker did not close')), ms).unref())]);
}

describe('WebSocket close codes say why the broker closed (RFC 6455 7.4.1)', () => {
  let tb: TestBroker;
  let port: number;

  before(async () => {
    tb = await startBroker({
      limits: { maxPacketSize: MAX_PACKET },
      hooks: { authenticate: (client) => client.id !== 'refused' },
    });
    port = (await tb.broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
  });
  after(async () => {
    await tb.close();
  });

  test('[MQTT-3.14.4-3] a client that sends DISCONNECT is closed with 1000 (normal)', async () => {
    assert.equal(await closeCodeAfter(port, connect('leaves'), gen({ cmd: 'disconnect' })), 1000);
  });

  test('[MQTT-3.1.0-1] a first packet other than CONNECT is a protocol error: 1002', async () => {
    assert.equal(await closeCodeAfter(port, gen({ cmd: 'pingreq' })), 1002);
  });

  test('[MQTT-4.8.0-1] (3.1.1) a malformed packet after CONNECT (SUBSCRIBE with reserved flags 0000) is closed with 1002', async () => {
    assert.equal(await closeCodeAfter(port, connect('malformed'), Buffer.from('8006000100012f00', 'hex')), 1002);
  });

  test('[MQTT-4.13.1-1] (5.0) a 5.0 protocol error (a second CONNECT) is closed with 1002 after its DISCONNECT 0x82', async () => {
    const c = await open(port);
    c.ws.send(connect('twice', 5));
    c.ws.send(connect('twice', 5));
    assert.equal(await withTimeout(c.closed), 1002);
    const packets = decode(c.received, 5);
    assert.deepEqual(packets.map((p) => p.cmd), ['connack', 'disconnect']);
    assert.equal((packets[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x82);
  });

  test('[MQTT-6.0.0-1] a text frame closes the connection with 1003 (data of a type it cannot accept)', async () => {
    assert.equal(await closeCodeAfter(port, connect('texts'), 'not binary'), 1003);
  });

  test('a WebSocket message over four maximum packets is closed with 1009 (message too big)', async () => {
    assert.equal(await closeCodeAfter(port, connect('big-frame'), Buffer.alloc(MAX_PACKET * 4 + 1)), 1009);
  });

  test('an MQTT packet over the maximum packet size, in small WebSocket frames, is closed with 1009, at once', async () => {
    const publish = gen({ cmd: 'publish', topic: 't', payload: Buffer.alloc(MAX_PACKET * 2), qos: 0, retain: false });
    const frames: Buffer[] = [];
    for (let i = 0; i < publish.length; i += 100) frames.push(publish.subarray(i, i + 100));
    const started = Date.now();
    assert.equal(await closeCodeAfter(port, connect('big-packet'), ...frames), 1009);
    // the frames behind the offending packet once held up the client's answer to the close
    // frame, and the broker cut the socket only a second later
    const took = Date.now() - started;
    assert.ok(took < 900, `closed after ${took} ms`);
  });

  for (const version of [4, 5]) {
    test(`[MQTT-3.2.2-7] (5.0) a refused CONNECT (authentication, MQTT ${version === 5 ? '5.0' : '3.1.1'}) is closed with 1008 (policy violation) after its CONNACK`, async () => {
      const c = await open(port);
      c.ws.send(connect('refused', version));
      assert.equal(await withTimeout(c.closed), 1008);
      const packets = decode(c.received, version);
      assert.deepEqual(packets.map((p) => p.cmd), ['connack']);
      assert.notEqual((packets[0] as mqttPacket.IConnackPacket)[version === 5 ? 'reasonCode' : 'returnCode'], 0);
    });
  }

  test('a CONNECT over a listener connection limit is closed with 1008 after its CONNACK 0x97', async () => {
    const limited = (await tb.broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws', maxConnections: 1 })).port;
    const first = await open(limited);
    const second = await open(limited);
    second.ws.send(connect('over-limit', 5));
    assert.equal(await withTimeout(second.closed), 1008);
    assert.equal((decode(second.received, 5)[0] as mqttPacket.IConnackPacket | undefined)?.reasonCode, 0x97);
    first.ws.close();
  });

  test('a client whose session is taken over is closed with 1000', async () => {
    const first = await open(port);
    first.ws.send(connect('taken', 5));
    const second = await open(port);
    second.ws.send(connect('taken', 5));
    assert.equal(await withTimeout(first.closed), 1000);
    second.ws.close();
  });

  test('a client that sends no CONNECT within the connect timeout is closed with 1008 (policy violation), as one past its keep alive', async () => {
    const broker = await createBroker({ persistence: 'memory', limits: { connectTimeoutMs: 300 } });
    try {
      const wsPort = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
      assert.equal(await withTimeout((await open(wsPort)).closed), 1008);
      const silent = await open(wsPort);
      silent.ws.send(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 1, clientId: 'silent' }));
      assert.equal(await withTimeout(silent.closed), 1008);
    } finally {
      await broker.close();
    }
  });

  test('broker shutdown closes WebSocket clients with 1001 (going away)', async () => {
    const broker = await createBroker({ persistence: 'memory' });
    const wsPort = (await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
    const clients = [await open(wsPort), await open(wsPort)];
    clients[0]?.ws.send(connect('shutdown-311', 4));
    clients[1]?.ws.send(connect('shutdown-50', 5));
    // both CONNACKs in: the broker knows both sessions
    while (clients.some((c) => c.received.length === 0)) await new Promise((r) => setTimeout(r, 10));
    await broker.close();
    assert.deepEqual(await Promise.all(clients.map((c) => withTimeout(c.closed))), [1001, 1001]);
  });
});
