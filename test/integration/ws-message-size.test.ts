import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import mqttPacketLib from 'mqtt-packet';
import type mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { startBroker, type TestBroker } from '../helpers/broker.js';

// ws hands over a WebSocket message only once all of it has come, so the broker bounds a message
// at four of its largest packets: packets may share a message [MQTT-6.0.0-2], and one past that is
// closed with 1009 before its bytes are kept.

const MAX_PACKET = 64 * 1024;
const MESSAGE_LIMIT = 4 * MAX_PACKET;

function gen(packet: Record<string, unknown>, protocolVersion: 4 | 5 = 4): Buffer {
  return mqttPacketLib.generate(packet as unknown as mqttPacket.Packet, { protocolVersion });
}

/** A QoS 1 PUBLISH of exactly `size` bytes in all. */
function publishOf(size: number, messageId: number): Buffer {
  const topic = 'big';
  // fixed header 1 + 3 length bytes (sizes here are 16 KB-2 MB), topic 2 + 3, packet id 2
  const payload = Buffer.alloc(size - 1 - 3 - 5 - 2, messageId);
  const bytes = gen({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false });
  assert.equal(bytes.length, size);
  return bytes;
}

interface Client {
  ws: WebSocket;
  closed: Promise<number>;
  packets: mqttPacket.Packet[];
}

async function connected(port: number, clientId: string, protocolVersion: 4 | 5 = 4): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, ['mqtt']);
  const packets: mqttPacket.Packet[] = [];
  const parser = mqttPacketLib.parser({ protocolVersion });
  parser.on('packet', (p: mqttPacket.Packet) => packets.push(p));
  ws.on('message', (d: Buffer) => parser.parse(d));
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((r) => ws.once('open', r));
  ws.send(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, keepalive: 0, clientId }, protocolVersion));
  await until(() => packets.length > 0, 'no CONNACK');
  assert.equal(packets.shift()?.cmd, 'connack');
  return { ws, closed, packets };
}

async function until(done: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function withTimeout(closed: Promise<number>, ms = 5000): Promise<number> {
  return Promise.race([closed, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('the broker did not close')), ms).unref())]);
}

describe('WebSocket messages larger than one packet', () => {
  let tb: TestBroker;
  let port: number;

  before(async () => {
    tb = await startBroker({ limits: { maxPacketSize: MAX_PACKET } });
    port = (await tb.broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
  });
  after(async () => {
    await tb.close();
  });

  test('[MQTT-6.0.0-2] two PUBLISHes under the maximum packet size that share one WebSocket message over it are both handled', async () => {
    const c = await connected(port, 'shared-message');
    const size = Math.floor(MAX_PACKET * 0.6);
    c.ws.send(Buffer.concat([publishOf(size, 1), publishOf(size, 2)]));
    await until(() => c.packets.length >= 2, `PUBACKs: ${c.packets.map((p) => p.cmd).join(', ')}`);
    assert.deepEqual(c.packets.map((p) => [p.cmd, (p as mqttPacket.IPubackPacket).messageId]), [['puback', 1], ['puback', 2]]);
    c.ws.send(gen({ cmd: 'pingreq' }));
    await until(() => c.packets.length === 3, 'no PINGRESP: the connection was closed');
    c.ws.close();
  });

  test('[MQTT-6.0.0-2] four packets of the maximum size in one WebSocket message are all handled', async () => {
    const c = await connected(port, 'four-largest');
    const message = Buffer.concat([1, 2, 3, 4].map((id) => publishOf(MAX_PACKET, id)));
    assert.equal(message.length, MESSAGE_LIMIT);
    c.ws.send(message);
    await until(() => c.packets.length >= 4, `PUBACKs: ${c.packets.map((p) => p.cmd).join(', ')}`);
    assert.deepEqual(c.packets.map((p) => (p as mqttPacket.IPubackPacket).messageId), [1, 2, 3, 4]);
    c.ws.close();
  });

  test('a WebSocket message past four maximum packets is closed with 1009 (message too big)', async () => {
    const c = await connected(port, 'past-the-limit');
    const message = Buffer.concat([...[1, 2, 3, 4].map((id) => publishOf(MAX_PACKET, id)), gen({ cmd: 'pingreq' })]);
    c.ws.send(message);
    assert.equal(await withTimeout(c.closed), 1009);
    assert.deepEqual(c.packets, [], 'nothing of the message was handled');
  });

  test('[MQTT-4.13.1-1] [MQTT-4.13.2-1] (5.0) a WebSocket message past four maximum packets is answered with DISCONNECT 0x95 (Packet too large) before the close with 1009', async () => {
    const c = await connected(port, 'past-the-limit-5', 5);
    const message = Buffer.concat([...[1, 2, 3, 4].map((id) => publishOf(MAX_PACKET, id)), gen({ cmd: 'pingreq' }, 5)]);
    c.ws.send(message);
    assert.equal(await withTimeout(c.closed), 1009);
    assert.deepEqual(
      c.packets.map((p) => [p.cmd, (p as mqttPacket.IDisconnectPacket).reasonCode]),
      [['disconnect', 0x95]],
      'a DISCONNECT, and nothing of the message handled',
    );
  });

  test('fragments that add up past the bound are closed with 1009 as the fragment that crosses it comes', async () => {
    const c = await connected(port, 'fragments');
    const piece = Buffer.alloc(MAX_PACKET);
    for (let i = 0; i < 4; i++) c.ws.send(piece, { binary: true, fin: false });
    c.ws.send(Buffer.alloc(1), { binary: true, fin: false });
    assert.equal(await withTimeout(c.closed), 1009);
  });

  test('a frame announcing 1 GB is closed with 1009 at its header, with none of its payload sent', async () => {
    const socket = netConnect({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    let reply = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => (reply = Buffer.concat([reply, d])));
    const closed = new Promise((r) => socket.once('close', r));
    await new Promise((r) => socket.once('connect', r));
    socket.write('GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n');
    await until(() => reply.includes('\r\n\r\n'), 'no upgrade');
    assert.match(reply.toString('latin1'), /^HTTP\/1\.1 101/);
    const afterUpgrade = reply.indexOf('\r\n\r\n') + 4;
    // FIN + binary, masked, 64-bit length 2^30, then the mask
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
    socket.write(header);
    await until(() => reply.length >= afterUpgrade + 4, 'no close frame');
    const frame = reply.subarray(afterUpgrade);
    assert.equal(frame[0], 0x88, 'a close frame');
    assert.equal(frame.readUInt16BE(2), 1009);
    socket.end();
    await closed;
  });
});

describe('the WebSocket message bound follows a reload of maxPacketSize', () => {
  let tb: TestBroker;
  let port: number;
  // what the command line does on SIGHUP with a changed config file
  const reload = (maxPacketSize: number): string[] => tb.broker.updateConfig({ ...tb.broker.config, limits: { ...tb.broker.config.limits, maxPacketSize } });

  before(async () => {
    tb = await startBroker({ limits: { maxPacketSize: MAX_PACKET } });
    port = (await tb.broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws' })).port;
  });
  after(async () => {
    await tb.close();
  });

  test('a smaller maxPacketSize: a message within the old bound but past the new one is closed with 1009', async () => {
    reload(MAX_PACKET / 2);
    const c = await connected(port, 'reload-smaller');
    // five packets of 30 KB: 150 KB, within 4 x 64 KB, past 4 x 32 KB
    c.ws.send(Buffer.concat([1, 2, 3, 4, 5].map((id) => publishOf(30 * 1024, id))));
    assert.equal(await withTimeout(c.closed), 1009);
    assert.deepEqual(c.packets, [], 'nothing of the message was handled');
  });

  test('a larger maxPacketSize: a message past the old bound but within the new one is handled', async () => {
    reload(MAX_PACKET * 2);
    const c = await connected(port, 'reload-larger');
    // four packets of 100 KB: 400 KB, past 4 x 64 KB, within 4 x 128 KB
    c.ws.send(Buffer.concat([1, 2, 3, 4].map((id) => publishOf(100 * 1024, id))));
    await until(() => c.packets.length >= 4, `PUBACKs: ${c.packets.map((p) => p.cmd).join(', ')}`);
    assert.deepEqual(c.packets.map((p) => [p.cmd, (p as mqttPacket.IPubackPacket).messageId]), [['puback', 1], ['puback', 2], ['puback', 3], ['puback', 4]]);
    c.ws.close();
  });
});
