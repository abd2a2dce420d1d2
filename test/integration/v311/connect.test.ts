import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../../helpers/raw-session.js';

/** CONNECT, level 4, the given flags byte, keep alive 60, client id "a". */
function connectBytes(flags: number, name = 'MQTT', level = 4, clientId = 'a'): Buffer {
  const nameBytes = Buffer.from(name);
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, nameBytes.length]), nameBytes, Buffer.from([level, flags, 0, 60]),
    Buffer.from([0, id.length]), id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** A QoS 0 retained PUBLISH, to detect whether the server processed bytes after a CONNECT. */
function retainedPublish(topic: string, payload: string): Buffer {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([0, t.length]), t, Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x31, body.length]), body]);
}

describe('MQTT 3.1.1 CONNECT and CONNACK (3.1.1)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ limits: { maxClientIdLength: 23 } });
  });
  after(() => b.close());

  async function retainedOn(topic: string): Promise<boolean> {
    const { raw } = await rawConnect(b.port, 4, { clientId: `probe-${Math.random().toString(36).slice(2, 8)}` });
    await rawSubscribe(raw, 4, 1, [{ topic, qos: 0 }]);
    const got = await drainFor(raw, 200);
    raw.close();
    return got.some((p) => p.cmd === 'publish');
  }

  test('[MQTT-3.1.4-4] [MQTT-3.2.0-1] a valid CONNECT is answered first with CONNACK return code 0', async () => {
    const raw = await RawClient.open(b.port, 4);
    // a SUBSCRIBE right behind the CONNECT: the CONNACK must still come first
    raw.send(Buffer.concat([connectBytes(0x02), Buffer.from('820600010001610 0'.replace(/ /g, ''), 'hex')]));
    const first = await raw.next();
    assert.equal(first.cmd, 'connack');
    assert.equal((first as { returnCode?: number }).returnCode, 0);
    assert.equal((await raw.next()).cmd, 'suback');
    raw.close();
  });

  test('[MQTT-3.1.0-2] a second CONNECT is a protocol violation and closes the connection', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'twice' });
    raw.send(connectBytes(0x02, 'MQTT', 4, 'twice'));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0, 'no second CONNACK');
  });

  test('[MQTT-3.1.2-1] [MQTT-3.1.4-1] [MQTT-3.2.2-6] a protocol name other than MQTT closes the connection without a CONNACK', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(connectBytes(0x02, 'MQTX'));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0);
  });

  test('[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01 and the connection is closed', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(connectBytes(0x02, 'MQTT', 9));
    const ack = await expectPacket(raw, 'connack');
    assert.equal(ack.returnCode, 1);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.2-3] a CONNECT with the reserved flag set closes the connection', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(connectBytes(0x03));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0);
  });

  test('[MQTT-3.1.3-5] client ids of 1 to 23 letters and digits are accepted', async () => {
    for (const id of ['x', '0123456789abcdefghijklm', 'ABCDEFGHIJKLMNOPQRSTUVW']) {
      const { raw, connack } = await rawConnect(b.port, 4, { clientId: id });
      assert.equal(connack.returnCode, 0, id);
      raw.close();
    }
  });

  test('[MQTT-3.1.3-6] a zero-length client id with clean session is given a unique id', async () => {
    const seen: string[] = [];
    const onConnect = (c: { id: string }): void => void seen.push(c.id);
    b.broker.on('clientConnected', onConnect);
    const one = await rawConnect(b.port, 4, { clientId: '', clean: true });
    const two = await rawConnect(b.port, 4, { clientId: '', clean: true });
    b.broker.off('clientConnected', onConnect);
    assert.equal(one.connack.returnCode, 0);
    assert.equal(two.connack.returnCode, 0);
    assert.equal(seen.length, 2);
    assert.notEqual(seen[0], seen[1]);
    assert.ok((seen[0] ?? '').length > 0);
    // both stay connected: neither took the other over
    assert.ok(!one.raw.closed && !two.raw.closed);
    one.raw.close();
    two.raw.close();
  });

  test('[MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5] a zero-length client id without clean session: CONNACK 0x02, session present 0, closed', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(connectBytes(0x00, 'MQTT', 4, ''));
    const connack = await expectPacket(raw, 'connack');
    assert.equal(connack.returnCode, 2);
    assert.equal(connack.sessionPresent, false);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.3-9] a client id the server rejects (longer than its limit) gets CONNACK 0x02 and is closed', async () => {
    const { raw, connack } = await rawConnect(b.port, 4, { clientId: 'x'.repeat(24) });
    assert.equal(connack.returnCode, 2);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-3.1.4-5] after a refused CONNECT nothing the client sent behind it is processed', async () => {
    const raw = await RawClient.open(b.port, 4);
    raw.send(Buffer.concat([connectBytes(0x00, 'MQTT', 4, ''), retainedPublish('refused/after', 'should not exist')]));
    const ack = await expectPacket(raw, 'connack');
    assert.equal(ack.returnCode, 2);
    assert.ok(await raw.waitClosed());
    const raw2 = await RawClient.open(b.port, 4);
    raw2.send(Buffer.concat([connectBytes(0x02, 'MQTT', 7), retainedPublish('refused/after2', 'should not exist')]));
    assert.equal((await expectPacket(raw2, 'connack')).returnCode, 1);
    assert.ok(await raw2.waitClosed());
    assert.equal(await retainedOn('refused/#'), false);
  });

  test('[MQTT-3.1.4-2] a CONNECT with the client id of a connected client closes the existing connection', async () => {
    const first = await rawConnect(b.port, 4, { clientId: 'dup-id' });
    const second = await rawConnect(b.port, 4, { clientId: 'dup-id' });
    assert.equal(second.connack.returnCode, 0);
    assert.ok(await first.raw.waitClosed());
    assert.ok(!second.raw.closed);
    second.raw.close();
  });

  test('[MQTT-3.2.2-1] [MQTT-3.1.4-3] clean session 1: session present 0 even when a session was stored', async () => {
    const a = await rawConnect(b.port, 4, { clientId: 'cs-1', clean: false });
    await rawSubscribe(a.raw, 4, 1, [{ topic: 'cs/1', qos: 1 }]);
    a.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    const c = await rawConnect(b.port, 4, { clientId: 'cs-1', clean: true });
    assert.equal(c.connack.returnCode, 0);
    assert.equal(c.connack.sessionPresent, false);
    c.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    // clean session discarded the stored one: a persistent reconnect finds nothing
    const d = await rawConnect(b.port, 4, { clientId: 'cs-1', clean: false });
    assert.equal(d.connack.sessionPresent, false);
    d.raw.sendPacket({ cmd: 'disconnect' }, 4);
    d.raw.close();
  });

  test('[MQTT-3.2.2-2] [MQTT-3.2.2-3] clean session 0: session present says whether a session was stored', async () => {
    const a = await rawConnect(b.port, 4, { clientId: 'cs-0', clean: false });
    assert.equal(a.connack.sessionPresent, false);
    a.raw.sendPacket({ cmd: 'disconnect' }, 4);
    a.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    const c = await rawConnect(b.port, 4, { clientId: 'cs-0', clean: false });
    assert.equal(c.connack.sessionPresent, true);
    c.raw.close();
  });

  test('[MQTT-3.1.2-24] a connection silent for 1.5 x keep alive is closed', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'silent', keepalive: 1 });
    const t0 = Date.now();
    assert.ok(await raw.waitClosed(4000));
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 2600, `closed after ${took} ms`);
  });

  test('[MQTT-3.1.2-24] a client that sends PINGREQ within the keep alive stays connected', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'pinger', keepalive: 1 });
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 600));
      raw.send('c000');
      await expectPacket(raw, 'pingresp');
    }
    assert.ok(!raw.closed);
    raw.close();
  });

  test('[MQTT-3.12.4-1] PINGREQ is answered with PINGRESP', async () => {
    const { raw } = await rawConnect(b.port, 4, { clientId: 'ping' });
    raw.send('c000');
    await expectPacket(raw, 'pingresp');
    raw.close();
  });

  test('[MQTT-3.14.1-1] a DISCONNECT with reserved bits set closes the connection and the will is published', async () => {
    const watcher = await rawConnect(b.port, 4, { clientId: 'will-watch-314' });
    await rawSubscribe(watcher.raw, 4, 1, [{ topic: 'will/314', qos: 0 }]);
    const { raw } = await rawConnect(b.port, 4, { clientId: 'bad-disc', will: { topic: 'will/314', payload: Buffer.from('gone'), qos: 0, retain: false } });
    raw.send('e100');
    assert.ok(await raw.waitClosed());
    const will = await expectPacket(watcher.raw, 'publish');
    assert.equal(will.payload?.toString(), 'gone', 'a malformed DISCONNECT is not a normal one');
    watcher.raw.close();
  });

  test('[MQTT-3.1.2-21] [MQTT-3.1.4-1] the password flag without a password closes the connection without a CONNACK', async () => {
    const raw = await RawClient.open(b.port, 4);
    // flags c2: user name, password, clean session; the payload ends after the user name
    raw.send('10100004 4d515454 04c2 003c 000161 000175'.replace(/ /g, ''));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0);
  });

  test('[MQTT-3.1.2-20] [MQTT-3.1.4-1] a password present without its flag closes the connection without a CONNACK', async () => {
    const raw = await RawClient.open(b.port, 4);
    // flags 82: user name and clean session, no password flag; a password follows the user name
    raw.send('10130004 4d515454 0482 003c 000161 000175 000170'.replace(/ /g, ''));
    assert.ok(await raw.waitClosed());
    assert.equal(raw.received.length, 0);
  });

  test('[MQTT-4.8.0-1] a protocol violation after CONNECT closes the connection and nothing sent behind it is processed', async () => {
    const watcher = await rawConnect(b.port, 4, { clientId: 'will-watch-480' });
    await rawSubscribe(watcher.raw, 4, 1, [{ topic: 'v480/#', qos: 0 }]);
    const { raw } = await rawConnect(b.port, 4, { clientId: 'violator', will: { topic: 'v480/will', payload: Buffer.from('gone'), qos: 0, retain: false } });
    // a PUBREL must have flags 0010; 0000 is malformed. A retained PUBLISH rides behind it.
    raw.send(Buffer.concat([Buffer.from('60020001', 'hex'), retainedPublish('v480/after', 'late')]));
    assert.ok(await raw.waitClosed());
    const seen = (await drainFor(watcher.raw, 300)).filter((p) => p.cmd === 'publish').map((p) => p.topic);
    assert.deepEqual(seen, ['v480/will'], 'the will is published, the PUBLISH behind the violation is not');
    assert.equal(await retainedOn('v480/after'), false);
    watcher.raw.close();
  });
});
