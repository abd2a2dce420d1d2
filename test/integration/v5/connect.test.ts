import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../../helpers/raw-session.js';

/** CONNECT bytes: protocol name, level, flags, keep alive 60, no properties, client id. */
function connectBytes(flags: number, clientId: string, name = 'MQTT', level = 5): Buffer {
  const n = Buffer.from(name);
  const id = Buffer.from(clientId);
  const props = level === 5 ? Buffer.from([0]) : Buffer.alloc(0);
  const body = Buffer.concat([Buffer.from([0, n.length]), n, Buffer.from([level, flags, 0, 60]), props, Buffer.from([0, id.length]), id]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

const CONNECT_REASON_CODES = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f];

describe('MQTT 5.0 CONNECT, CONNACK and DISCONNECT (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ limits: { maxClientIdLength: 23 }, hooks: { authenticate: (c) => c.id !== 'refused' } });
  });
  after(() => b.close());
  const pause = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('[MQTT-3.1.4-5] [MQTT-3.2.0-1] a valid CONNECT gets CONNACK 0x00 before any other packet', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.send(Buffer.concat([connectBytes(0x02, 'first'), Buffer.from('c000', 'hex')]));
    const first = await expectPacket(raw, 'connack');
    assert.equal(first.reasonCode, 0);
    await expectPacket(raw, 'pingresp');
    raw.close();
  });

  test('[MQTT-3.1.0-2] [MQTT-3.2.0-2] a second CONNECT is a protocol error: DISCONNECT 0x82, never a second CONNACK', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'twice5' });
    raw.send(connectBytes(0x02, 'twice5'));
    const d = await expectPacket(raw, 'disconnect');
    assert.equal(d.reasonCode, 0x82);
    assert.ok(await raw.waitClosed());
    assert.ok(!raw.received.some((p) => p.cmd === 'connack'));
  });

  test('[MQTT-3.1.2-2] a protocol version the server does not speak gets a CONNACK refusal and the connection is closed', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(connectBytes(0x02, 'v6', 'MQTT', 6));
    const ack = await expectPacket(raw, 'connack');
    assert.equal(ack.returnCode, 1, 'a CONNACK every client version can read: 3.1.1 code 1');
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.2-3] [MQTT-3.1.4-1] a CONNECT with the reserved flag set is refused (0x81 Malformed) and closed', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.send(connectBytes(0x03, 'reserved'));
    const got = await drainFor(raw, 300);
    assert.ok(got.every((p) => p.cmd === 'connack' && (p as { reasonCode?: number }).reasonCode === 0x81));
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.2-1] [MQTT-3.1.4-1] a CONNECT with an unknown protocol name is closed without a CONNACK', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.send(connectBytes(0x02, 'x', 'MQTZ'));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0);
  });

  test('[MQTT-3.1.3-5] client ids of 1 to 23 letters and digits are accepted', async () => {
    for (const id of ['a', 'Z9', 'abcdefghijklmnopqrstuvw']) {
      const { raw, connack } = await rawConnect(b.port, 5, { clientId: id });
      assert.equal(connack.reasonCode, 0, id);
      raw.close();
    }
  });

  test('[MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16] a zero-length client id is assigned a unique id, returned in CONNACK', async () => {
    const one = await rawConnect(b.port, 5, { clientId: '' });
    const two = await rawConnect(b.port, 5, { clientId: '' });
    const a = (one.connack.properties as { assignedClientIdentifier?: string }).assignedClientIdentifier;
    const c = (two.connack.properties as { assignedClientIdentifier?: string }).assignedClientIdentifier;
    assert.ok(a !== undefined && a.length > 0);
    assert.notEqual(a, c);
    assert.ok(!one.raw.closed && !two.raw.closed);
    one.raw.close();
    two.raw.close();
  });

  test('[MQTT-3.1.3-8] [MQTT-3.2.2-6] [MQTT-3.2.2-7] [MQTT-4.13.2-1] a rejected client id gets CONNACK 0x85, session present 0, and is closed', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'x'.repeat(24), clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(connack.reasonCode, 0x85);
    assert.equal(connack.sessionPresent, false);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.4-2] [MQTT-3.2.2-8] [MQTT-3.14.0-1] an authentication refusal closes the connection; refusals use Connect Reason Codes and no DISCONNECT is sent before a successful CONNACK', async () => {
    const refused = await rawConnect(b.port, 5, { clientId: 'refused' });
    assert.ok(CONNECT_REASON_CODES.includes(refused.connack.reasonCode as number));
    assert.equal(refused.connack.reasonCode, 0x86);
    assert.ok(await refused.raw.waitClosed());
    assert.ok(!refused.raw.received.some((p) => p.cmd === 'disconnect'));
  });

  test('[MQTT-3.1.4-6] after a refused CONNECT nothing sent behind it is processed', async () => {
    const raw = await RawClient.open(b.port, 5);
    const publish = Buffer.from('3112000d726566757365642f6166746572 00 78'.replace(/ /g, ''), 'hex');
    raw.send(Buffer.concat([connectBytes(0x02, 'refused'), publish]));
    assert.equal((await expectPacket(raw, 'connack')).reasonCode, 0x86);
    assert.ok(await raw.waitClosed());
    const probe = await rawConnect(b.port, 5, { clientId: 'probe' });
    await rawSubscribe(probe.raw, 5, 1, [{ topic: 'refused/#', qos: 0 }]);
    assert.equal((await drainFor(probe.raw, 200)).filter((p) => p.cmd === 'publish').length, 0);
    probe.raw.close();
  });

  test('[MQTT-3.1.4-3] [MQTT-3.14.2-2] [MQTT-3.14.4-1] [MQTT-3.14.4-2] a CONNECT with the id of a connected client: the old one gets DISCONNECT 0x8E, without Session Expiry', async () => {
    const old = await rawConnect(b.port, 5, { clientId: 'taken' });
    const fresh = await rawConnect(b.port, 5, { clientId: 'taken' });
    assert.equal(fresh.connack.reasonCode, 0);
    const d = await expectPacket(old.raw, 'disconnect');
    assert.equal(d.reasonCode, 0x8e);
    assert.equal((d.properties as { sessionExpiryInterval?: number } | undefined)?.sessionExpiryInterval, undefined);
    assert.ok(await old.raw.waitClosed());
    fresh.raw.close();
  });

  test('[MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.1.2-23] [MQTT-3.1.3-2] [MQTT-3.1.4-4] [MQTT-3.2.2-2] [MQTT-3.2.2-3] clean start and session present', async () => {
    const a = await rawConnect(b.port, 5, { clientId: 'sess5', clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(a.connack.sessionPresent, false, 'no session yet: a new one');
    await rawSubscribe(a.raw, 5, 1, [{ topic: 'sess5/#', qos: 1 }]);
    a.raw.close();
    await pause();
    await b.broker.publish({ topic: 'sess5/x', payload: 'kept', qos: 1 });
    const resumed = await rawConnect(b.port, 5, { clientId: 'sess5', clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(resumed.connack.sessionPresent, true, 'the session is resumed');
    assert.equal((await expectPacket(resumed.raw, 'publish')).payload?.toString(), 'kept');
    resumed.raw.close();
    await pause();
    const clean = await rawConnect(b.port, 5, { clientId: 'sess5', clean: true });
    assert.equal(clean.connack.sessionPresent, false, 'clean start discards it');
    await b.broker.publish({ topic: 'sess5/x', payload: 'after clean', qos: 1 });
    assert.equal((await drainFor(clean.raw, 200)).filter((p) => p.cmd === 'publish').length, 0, 'its subscriptions are gone');
    clean.raw.close();
  });

  test('[MQTT-4.1.0-2] with Session Expiry 0 the session ends when the connection closes', async () => {
    const a = await rawConnect(b.port, 5, { clientId: 'exp0', clean: false });
    await rawSubscribe(a.raw, 5, 1, [{ topic: 'exp0', qos: 1 }]);
    a.raw.close();
    await pause();
    const again = await rawConnect(b.port, 5, { clientId: 'exp0', clean: false });
    assert.equal(again.connack.sessionPresent, false);
    again.raw.close();
  });

  test('[MQTT-3.1.2-22] [MQTT-3.2.2-22] without Server Keep Alive the client keep alive applies: silent for 1.5 x it, DISCONNECT 0x8D', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'ka5', keepalive: 1 });
    assert.equal((connack.properties as { serverKeepAlive?: number } | undefined)?.serverKeepAlive, undefined);
    const t0 = Date.now();
    const d = await expectPacket(raw, 'disconnect', 4000);
    assert.equal(d.reasonCode, 0x8d);
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 2600, `after ${took} ms`);
  });

  test('[MQTT-3.12.4-1] PINGREQ is answered with PINGRESP', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'ping5' });
    raw.send('c000');
    await expectPacket(raw, 'pingresp');
    raw.close();
  });

  test('[MQTT-4.13.1-1] a malformed packet after CONNECT gets DISCONNECT 0x81 and the connection is closed', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'malformed5' });
    raw.send('36 06 0001 61 0001 00'.replace(/ /g, ''));
    assert.equal((await expectPacket(raw, 'disconnect')).reasonCode, 0x81);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.2-28] Request Response Information 0 (the default): no Response Information in CONNACK; 1: given', async () => {
    const off = await rawConnect(b.port, 5, { clientId: 'rri0' });
    assert.equal((off.connack.properties as { responseInformation?: string } | undefined)?.responseInformation, undefined);
    const on = await rawConnect(b.port, 5, { clientId: 'rri1', properties: { requestResponseInformation: true } });
    assert.equal((on.connack.properties as { responseInformation?: string }).responseInformation, 'response/rri1');
    off.raw.close();
    on.raw.close();
  });

  test('[MQTT-3.1.2-29] Request Problem Information 0: no Reason String on SUBACK, PUBACK or UNSUBACK; 1: they carry one', async () => {
    for (const rpi of [false, true]) {
      const { raw } = await rawConnect(b.port, 5, { clientId: `rpi-${rpi}`, properties: { requestProblemInformation: rpi } });
      const ack = await rawSubscribe(raw, 5, 1, [{ topic: 'bad/#/x', qos: 0 }]);
      assert.deepEqual(ack.granted, [0x8f]);
      raw.sendPacket({ cmd: 'publish', topic: '$SYS/nope', payload: Buffer.from('x'), qos: 1, messageId: 2 }, 5);
      const puback = await expectPacket(raw, 'puback');
      assert.equal(puback.reasonCode, 0x87);
      raw.sendPacket({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['never'] }, 5);
      const unsuback = await expectPacket(raw, 'unsuback');
      for (const p of [ack, puback, unsuback]) {
        const reason = (p.properties as { reasonString?: string } | undefined)?.reasonString;
        if (rpi) assert.ok(reason !== undefined && reason.length > 0, `${p.cmd} carries a reason`);
        else assert.equal(reason, undefined, `${p.cmd} carries no reason`);
      }
      raw.close();
    }
  });

  test('[MQTT-3.2.2-19] [MQTT-3.9.2-1] [MQTT-3.11.2-1] a Reason String that would exceed the client Maximum Packet Size is left out', async () => {
    const { raw } = await rawConnect(b.port, 5, { clientId: 'small-mps', properties: { maximumPacketSize: 24 } });
    const ack = await rawSubscribe(raw, 5, 1, [{ topic: 'bad/#/x', qos: 0 }]);
    assert.deepEqual(ack.granted, [0x8f]);
    assert.equal((ack.properties as { reasonString?: string } | undefined)?.reasonString, undefined);
    raw.sendPacket({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['never'] }, 5);
    const unsuback = await expectPacket(raw, 'unsuback');
    assert.deepEqual(unsuback.granted, [0x11]);
    assert.equal((unsuback.properties as { reasonString?: string } | undefined)?.reasonString, undefined);
    raw.close();
  });

  test('[MQTT-3.2.2-19] a refusing CONNACK leaves out its Reason String too when it would exceed the client Maximum Packet Size', async () => {
    const cases: Array<[string, Record<string, unknown>, number]> = [
      ['refused', {}, 0x86],
      ['unknown-method', { authenticationMethod: 'FOO' }, 0x8c],
      ['an-identifier-over-the-23-byte-limit', {}, 0x85],
    ];
    for (const [clientId, extra, code] of cases) {
      const raw = await RawClient.open(b.port, 5);
      raw.sendPacket({ cmd: 'connect', protocolVersion: 5, clientId, clean: true, keepalive: 60, properties: { maximumPacketSize: 10, ...extra } }, 5);
      const ack = await expectPacket(raw, 'connack');
      assert.equal(ack.reasonCode, code, clientId);
      assert.ok((ack.length ?? 0) + 2 <= 10, `${clientId}: CONNACK of ${(ack.length ?? 0) + 2} bytes`);
      assert.equal((ack.properties as { reasonString?: string } | undefined)?.reasonString, undefined);
      assert.ok(await raw.waitClosed());
      raw.close();
    }
  });

  test('Authentication Data without an Authentication Method is a Protocol Error: CONNACK 0x82, then close (section 3.1.2.11.10)', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolVersion: 5, clientId: 'data-no-method', clean: true, keepalive: 60, properties: { authenticationData: Buffer.from('secret') } }, 5);
    const ack = await expectPacket(raw, 'connack');
    assert.equal(ack.reasonCode, 0x82);
    assert.ok(await raw.waitClosed());
    raw.close();
  });

  test('[MQTT-3.2.0-1] [MQTT-3.2.2-16] a client whose Maximum Packet Size cannot take a CONNACK with its assigned identifier is disconnected, sent nothing', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolVersion: 5, clientId: '', clean: true, keepalive: 60, properties: { maximumPacketSize: 12 } }, 5);
    raw.send('c000');
    assert.ok(await raw.waitClosed(), 'closed');
    assert.deepEqual(raw.received.map((p) => p.cmd), [], 'no PINGRESP, SUBACK or PUBACK without a CONNACK first');
    // with room for the identifier it is let in as usual
    const roomy = await RawClient.open(b.port, 5);
    roomy.sendPacket({ cmd: 'connect', protocolVersion: 5, clientId: '', clean: true, keepalive: 60, properties: { maximumPacketSize: 64 } }, 5);
    const ack = await expectPacket(roomy, 'connack');
    assert.equal(ack.reasonCode, 0);
    assert.equal(typeof (ack.properties as { assignedClientIdentifier?: string }).assignedClientIdentifier, 'string');
    roomy.close();
  });

  test('[MQTT-3.2.2-20] [MQTT-3.9.2-2] [MQTT-3.11.2-2] User Properties are not added beyond the client Maximum Packet Size either', async () => {
    // the broker adds no User Properties to CONNACK, SUBACK or UNSUBACK; with a tiny maximum the packets still arrive whole
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'tiny-mps', properties: { maximumPacketSize: 64 } });
    assert.equal((connack.properties as { userProperties?: unknown }).userProperties, undefined);
    const ack = await rawSubscribe(raw, 5, 1, [{ topic: 'ok', qos: 0 }]);
    assert.equal((ack.properties as { userProperties?: unknown } | undefined)?.userProperties, undefined);
    raw.close();
  });
});

describe('MQTT 5.0 capabilities (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ mqtt5: { maximumQoS: 1, retainAvailable: false }, limits: { maxKeepAlive: 30 } });
  });
  after(() => b.close());

  test('[MQTT-3.2.2-9] [MQTT-3.2.2-10] with QoS 2 unsupported: CONNACK says Maximum QoS 1, and a QoS 2 SUBSCRIBE is granted QoS 1', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'mq1' });
    assert.equal((connack.properties as { maximumQoS?: number }).maximumQoS, 1);
    const ack = await rawSubscribe(raw, 5, 1, [{ topic: 'q2', qos: 2 }]);
    assert.deepEqual(ack.granted, [1]);
    raw.close();
  });

  test('[MQTT-3.2.2-12] a will QoS above the maximum is refused with CONNACK 0x9B', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'willq2', will: { topic: 'w', payload: Buffer.from('x'), qos: 2, retain: false } });
    assert.equal(connack.reasonCode, 0x9b);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.2.2-13] a retained will when retain is unavailable is refused with CONNACK 0x9A', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'willret', will: { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: true } });
    assert.equal(connack.reasonCode, 0x9a);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.2.2-21] (5.0) a keep alive above the cap is replaced by Server Keep Alive in CONNACK', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'ska', keepalive: 120 });
    assert.equal((connack.properties as { serverKeepAlive?: number }).serverKeepAlive, 30);
    raw.close();
  });
});
