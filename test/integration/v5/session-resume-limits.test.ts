import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, eventually, rawConnect, rawSubscribe, type Loose } from '../../helpers/raw-session.js';

// A resumed session's in-flight messages go again under the limits of the new connection: the
// Maximum Packet Size of the client's new CONNECT, and the broker's maxInflightBytes in force now.

const publishes = async (raw: RawClient, ms = 300): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');

/** Bytes of the whole packet: fixed header byte, Remaining Length bytes, and what it counts. */
function packetSize(p: Loose): number {
  const remaining = (p as Loose & { length: number }).length;
  return 1 + (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4) + remaining;
}

const label = (p: Loose): string => (p.payload?.toString() ?? '').slice(0, 6);

describe('a resumed session is sent its in-flight messages within the new connection\'s limits (5.0)', () => {
  test('[MQTT-3.1.2-24] [MQTT-3.1.2-25] an in-flight message larger than the Maximum Packet Size of the new CONNECT is not sent again; it frees its packet id and later messages flow', async () => {
    const b = await startBroker();
    try {
      const id = 'resume-smaller-mps';
      const session = { sessionExpiryInterval: 60 };
      const first = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: session });
      await rawSubscribe(first.raw, 5, 1, [{ topic: 'rmps', qos: 1 }]);
      await b.broker.publish({ topic: 'rmps', payload: 'small0', qos: 1 });
      await b.broker.publish({ topic: 'rmps', payload: 'large1'.padEnd(2000, '.'), qos: 1 });
      await b.broker.publish({ topic: 'rmps', payload: 'small2', qos: 1 });
      // none acknowledged: all three stay in flight
      assert.deepEqual((await publishes(first.raw)).map(label), ['small0', 'large1', 'small2']);
      first.raw.close();
      await eventually(() => b.broker.stats.clientsConnected === 0);
      const dropped = b.broker.stats.droppedByReason.tooLarge ?? 0;

      // one message in flight at a time: the large one, if it kept its slot, would hold back the rest
      const maximumPacketSize = 500;
      const back = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: { ...session, maximumPacketSize, receiveMaximum: 1 } });
      assert.equal(back.connack.sessionPresent, true);
      const got: Loose[] = [];
      const take = async (): Promise<Loose[]> => {
        const next = await publishes(back.raw);
        got.push(...next);
        return next;
      };
      assert.deepEqual((await take()).map((p) => [label(p), p.dup]), [['small0', true]]);
      back.raw.sendPacket({ cmd: 'puback', messageId: got[0]?.messageId }, 5);
      assert.deepEqual((await take()).map((p) => [label(p), p.dup]), [['small2', true]]);
      back.raw.sendPacket({ cmd: 'puback', messageId: got[1]?.messageId }, 5);
      await b.broker.publish({ topic: 'rmps', payload: 'after3', qos: 1 });
      assert.deepEqual((await take()).map((p) => [label(p), p.dup]), [['after3', false]]);
      back.raw.sendPacket({ cmd: 'puback', messageId: got[2]?.messageId }, 5);

      for (const p of got) assert.ok(packetSize(p) <= maximumPacketSize, `a PUBLISH of ${packetSize(p)} bytes`);
      assert.equal((b.broker.stats.droppedByReason.tooLarge ?? 0) - dropped, 1);
      assert.ok(await eventually(() => b.broker.stats.inflight === 0), `${b.broker.stats.inflight} still in flight`);
      back.raw.close();
    } finally {
      await b.close();
    }
  });

  test('maxInflightBytes lowered while the client was away bounds what its resumed session is sent again', async () => {
    const b = await startBroker({ sysInterval: 0, limits: { maxInflight: 100 } });
    // what the command line does on SIGHUP with a changed config file
    const reload = (limits: Record<string, unknown>): string[] =>
      b.broker.updateConfig({ ...b.broker.config, sysInterval: 0, limits: { ...b.broker.config.limits, ...limits } });
    try {
      const id = 'resume-inflight-bytes';
      const session = { sessionExpiryInterval: 60 };
      const first = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: session });
      await rawSubscribe(first.raw, 5, 1, [{ topic: 'rib', qos: 1 }]);
      const payload = (i: number): string => `m${i}`.padEnd(400, '.');
      for (let i = 0; i < 5; i++) await b.broker.publish({ topic: 'rib', payload: payload(i), qos: 1 });
      assert.equal((await publishes(first.raw)).length, 5);
      first.raw.close();
      await eventually(() => b.broker.stats.clientsConnected === 0);

      assert.deepEqual(reload({ maxInflightBytes: 1000 }), []);
      const back = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: session });
      assert.equal(back.connack.sessionPresent, true);
      // 0, 400 and 800 bytes in flight let a message go; 1200 does not
      const resent = await publishes(back.raw);
      assert.deepEqual(resent.map(label), ['m0....', 'm1....', 'm2....']);
      assert.ok(resent.every((p) => p.dup === true));
      // 800 bytes in flight once two are acknowledged: one more goes, then the last
      for (const p of resent.slice(0, 2)) back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
      const rest = await publishes(back.raw);
      assert.deepEqual(rest.map(label), ['m3....', 'm4....']);
      for (const p of [resent[2], ...rest]) back.raw.sendPacket({ cmd: 'puback', messageId: p?.messageId }, 5);
      assert.ok(await eventually(() => b.broker.stats.inflight === 0), `${b.broker.stats.inflight} still in flight`);
      back.raw.close();
    } finally {
      await b.close();
    }
  });
});
