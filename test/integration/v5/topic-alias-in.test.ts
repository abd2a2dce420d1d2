import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../../helpers/raw-session.js';

/** A topic of exactly `bytes` UTF-8 bytes under `prefix`. */
const topicOf = (prefix: string, bytes: number): string => prefix + 'x'.repeat(bytes - prefix.length);

describe('inbound topic aliases: limits.maxTopicAliasBytes (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ limits: { maxTopicAliasBytes: 100 } });
  });
  after(() => b.close());

  function publish(raw: RawClient, topic: string, alias: number, payload: string): void {
    raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, properties: { topicAlias: alias } }, 5);
  }
  const received = async (raw: RawClient): Promise<string[][]> =>
    (await drainFor(raw, 300)).filter((p) => p.cmd === 'publish').map((p) => [p.topic as string, (p.payload as Buffer).toString()]);

  test('aliases within the limit work, a replaced topic no longer counts, and going beyond it gets DISCONNECT 0x97 with a reason', async () => {
    const { raw: sub } = await rawConnect(b.port, 5, { clientId: 'tab-sub' });
    await rawSubscribe(sub, 5, 1, [{ topic: 'tab/#', qos: 0 }]);
    const { raw: pub } = await rawConnect(b.port, 5, { clientId: 'tab-pub' });
    const first = topicOf('tab/1/', 40);
    const second = topicOf('tab/2/', 40);
    const replacement = topicOf('tab/r/', 55);
    publish(pub, first, 1, 'a');
    publish(pub, second, 2, 'b');
    publish(pub, '', 1, 'c');
    publish(pub, '', 2, 'd');
    // 40 + 40 bytes held; replacing alias 1 leaves 40 + 55 = 95, within the 100 allowed
    publish(pub, replacement, 1, 'e');
    publish(pub, '', 1, 'f');
    publish(pub, replacement, 1, 'g');
    assert.deepEqual(await received(sub), [
      [first, 'a'],
      [second, 'b'],
      [first, 'c'],
      [second, 'd'],
      [replacement, 'e'],
      [replacement, 'f'],
      [replacement, 'g'],
    ]);
    assert.equal(pub.closed, false);

    publish(pub, 'tab/3/abc', 3, 'over');
    const disconnect = await expectPacket(pub, 'disconnect');
    assert.equal(disconnect.reasonCode, 0x97);
    assert.match(String(disconnect.properties?.reasonString), /topic alias/);
    assert.deepEqual(await received(sub), [], 'the PUBLISH that went over the limit is not delivered');
    sub.close();
  });

  test('the limit counts UTF-8 bytes, and topics published without an alias are not counted', async () => {
    const { raw: pub } = await rawConnect(b.port, 5, { clientId: 'tab-utf8' });
    pub.sendPacket({ cmd: 'publish', topic: topicOf('tab/long/', 500), payload: Buffer.from('x'), qos: 0, retain: false }, 5);
    // 53 characters, 102 bytes
    publish(pub, 'tab/' + 'ü'.repeat(49), 1, 'x');
    assert.equal((await expectPacket(pub, 'disconnect')).reasonCode, 0x97);
  });
});
