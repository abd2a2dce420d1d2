import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { expectPacket, rawConnect } from '../../helpers/raw-session.js';

describe('MQTT 5.0 session expiry (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ limits: { maxSessionExpiryInterval: 3600 } });
  });
  after(() => b.close());
  const pause = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const expiryOf = (p: { properties?: Record<string, unknown> }): number | undefined => p.properties?.sessionExpiryInterval as number | undefined;

  test('a Session Expiry Interval above the broker maximum is clamped, and CONNACK says so', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'clamp', properties: { sessionExpiryInterval: 0xffffffff } });
    assert.equal(expiryOf(connack), 3600);
    raw.close();
    const within = await rawConnect(b.port, 5, { clientId: 'within', properties: { sessionExpiryInterval: 60 } });
    assert.equal(expiryOf(within.connack), undefined, 'no property when the client value stands');
    within.raw.close();
  });

  test('a session outlives its connection for the interval, then ends', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'expires', clean: false, properties: { sessionExpiryInterval: 1 } });
    first.raw.close();
    await pause(300);
    const soon = await rawConnect(b.port, 5, { clientId: 'expires', clean: false, properties: { sessionExpiryInterval: 1 } });
    assert.equal(soon.connack.sessionPresent, true);
    soon.raw.close();
    await pause(1500);
    const late = await rawConnect(b.port, 5, { clientId: 'expires', clean: false, properties: { sessionExpiryInterval: 1 } });
    assert.equal(late.connack.sessionPresent, false);
    late.raw.close();
  });

  test('a client may change the interval at DISCONNECT: 0 ends the session at once', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'change0', clean: false, properties: { sessionExpiryInterval: 600 } });
    first.raw.sendPacket({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, 5);
    await first.raw.waitClosed();
    const again = await rawConnect(b.port, 5, { clientId: 'change0', clean: false, properties: { sessionExpiryInterval: 600 } });
    assert.equal(again.connack.sessionPresent, false);
    again.raw.close();
  });

  test('a client may lengthen the interval at DISCONNECT when it was not 0', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'change60', clean: false, properties: { sessionExpiryInterval: 1 } });
    first.raw.sendPacket({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 5);
    await first.raw.waitClosed();
    await pause(1500);
    const again = await rawConnect(b.port, 5, { clientId: 'change60', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(again.connack.sessionPresent, true);
    again.raw.close();
  });

  test('setting a non-zero interval at DISCONNECT after connecting with 0 is a protocol error (DISCONNECT 0x82)', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'was0', clean: false });
    first.raw.sendPacket({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 5);
    assert.equal((await expectPacket(first.raw, 'disconnect')).reasonCode, 0x82);
    assert.ok(await first.raw.waitClosed());
    const again = await rawConnect(b.port, 5, { clientId: 'was0', clean: false });
    assert.equal(again.connack.sessionPresent, false);
    again.raw.close();
  });
});
