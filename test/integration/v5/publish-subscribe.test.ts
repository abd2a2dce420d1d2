import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, receiveAcking, type Loose } from '../../helpers/raw-session.js';

type Sub = { topic: string; qos: 0 | 1 | 2; nl?: boolean; rap?: boolean; rh?: 0 | 1 | 2 };
const SUBACK_CODES = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2];

describe('MQTT 5.0 publish and subscribe (5.0)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker({ limits: { topicAliasMaximum: 3 } });
  });
  after(() => b.close());

  async function client(options: Record<string, unknown> = {}): Promise<RawClient> {
    return (await rawConnect(b.port, 5, { clientId: `c5-${++n}`, ...options })).raw;
  }
  async function subscribe(raw: RawClient, subs: Sub[], properties?: Record<string, unknown>, id = 1): Promise<Loose> {
    raw.sendPacket({ cmd: 'subscribe', messageId: id, subscriptions: subs, ...(properties ? { properties } : {}) }, 5);
    const ack = await expectPacket(raw, 'suback');
    assert.equal(ack.messageId, id);
    return ack;
  }
  function publish(raw: RawClient, topic: string, payload: string, qos: 0 | 1 | 2 = 0, extra: Record<string, unknown> = {}): void {
    raw.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, ...(qos > 0 ? { messageId: ++n } : {}), ...extra }, 5);
  }
  const publishes = async (raw: RawClient, ms = 250): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');
  const pause = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('[MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.8.4-7] [MQTT-3.9.3-1] [MQTT-3.9.3-2] one SUBACK with a Subscribe Reason Code per filter, in order', async () => {
    const raw = await client();
    const ack = await subscribe(raw, [{ topic: 'a/+', qos: 2 }, { topic: 'a/#/b', qos: 0 }, { topic: 'b', qos: 1 }, { topic: 'c', qos: 0 }]);
    assert.deepEqual(ack.granted, [2, 0x8f, 1, 0]);
    assert.ok((ack.granted as number[]).every((c) => SUBACK_CODES.includes(c)));
    raw.close();
  });

  test('[MQTT-3.3.2-3] [MQTT-4.5.0-1] [MQTT-4.7.2-1] [MQTT-4.7.3-4] matching: wildcards, no $ for a leading wildcard, no normalisation', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'm5/+/x', qos: 0 }, { topic: '#', qos: 0 }]);
    const pub = await client();
    await b.broker.publish({ topic: '$internal/x', payload: 'hidden' });
    publish(pub, 'm5/a/x', 'match');
    publish(pub, 'M5/a/x', 'case');
    const got = (await publishes(sub)).map((p) => [p.topic, p.payload?.toString()]);
    assert.deepEqual(got, [['m5/a/x', 'match'], ['M5/a/x', 'case']], 'one copy each, "$internal/x" not matched by "#"');
    sub.close();
    pub.close();
  });

  test('[MQTT-2.2.1-4] packet identifiers the server assigns are non-zero and unused while in flight', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'ids5/#', qos: 2 }]);
    for (let i = 0; i < 30; i++) await b.broker.publish({ topic: `ids5/${i}`, payload: 'x', qos: ((i % 2) + 1) as 1 | 2 });
    const ids = (await publishes(sub)).map((p) => p.messageId as number);
    assert.equal(ids.length, 30);
    assert.ok(ids.every((id) => id > 0));
    assert.equal(new Set(ids).size, 30);
    sub.close();
  });

  test('[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.1-8] retained messages: replaced, cleared by an empty payload, untouched by RETAIN 0', async () => {
    const pub = await client();
    publish(pub, 'r5/a', 'one', 0, { retain: true });
    publish(pub, 'r5/a', 'two', 0, { retain: true });
    publish(pub, 'r5/a', 'not retained', 0, { retain: false });
    publish(pub, 'r5/b', 'will be cleared', 0, { retain: true });
    await pause();
    const live = await client();
    await subscribe(live, [{ topic: 'r5/b', qos: 0 }]);
    await publishes(live, 100);
    publish(pub, 'r5/b', '', 0, { retain: true });
    const cleared = await expectPacket(live, 'publish');
    assert.equal(cleared.payload?.length, 0, 'the empty message is delivered as normal');
    const late = await client();
    await subscribe(late, [{ topic: 'r5/+', qos: 0 }]);
    assert.deepEqual((await publishes(late)).map((p) => [p.topic, p.payload?.toString()]), [['r5/a', 'two']]);
    for (const c of [pub, live, late]) c.close();
  });

  test('[MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.8.4-4] Retain Handling 0 sends retained messages on every subscribe, 1 only for a new subscription, 2 never', async () => {
    await b.broker.publish({ topic: 'rh5/x', payload: 'kept', retain: true });
    const count = async (raw: RawClient, rh: 0 | 1 | 2, id: number): Promise<number> => {
      await subscribe(raw, [{ topic: 'rh5/x', qos: 0, rh }], undefined, id);
      return (await publishes(raw, 150)).length;
    };
    const c0 = await client();
    assert.deepEqual([await count(c0, 0, 1), await count(c0, 0, 2)], [1, 1]);
    const c1 = await client();
    assert.deepEqual([await count(c1, 1, 1), await count(c1, 1, 2)], [1, 0]);
    const c2 = await client();
    assert.deepEqual([await count(c2, 2, 1), await count(c2, 2, 2)], [0, 0]);
    for (const c of [c0, c1, c2]) c.close();
  });

  test('[MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published: 0 clears the RETAIN flag on forwarded messages, 1 keeps it', async () => {
    const rap0 = await client();
    await subscribe(rap0, [{ topic: 'rap5', qos: 0, rap: false }]);
    const rap1 = await client();
    await subscribe(rap1, [{ topic: 'rap5', qos: 0, rap: true }]);
    const pub = await client();
    publish(pub, 'rap5', 'x', 0, { retain: true });
    assert.equal((await expectPacket(rap0, 'publish')).retain, false);
    assert.equal((await expectPacket(rap1, 'publish')).retain, true);
    for (const c of [rap0, rap1, pub]) c.close();
  });

  test('[MQTT-3.8.3-3] No Local: a client does not receive its own messages on a No Local subscription', async () => {
    const c = await client();
    await subscribe(c, [{ topic: 'nl5', qos: 0, nl: true }]);
    const other = await client();
    publish(c, 'nl5', 'own');
    publish(other, 'nl5', 'other');
    assert.deepEqual((await publishes(c)).map((p) => p.payload?.toString()), ['other']);
    c.close();
    other.close();
  });

  test('[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20] properties are forwarded unaltered, User Properties in order', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'props5', qos: 1 }]);
    const pub = await client();
    const userProperties = { b: '1', a: ['2', '3'], c: '' + 4 };
    publish(pub, 'props5', 'héllo', 1, {
      properties: { payloadFormatIndicator: true, contentType: 'text/plain; charset=utf-8', responseTopic: 'reply/here', correlationData: Buffer.from([0, 1, 2]), userProperties },
    });
    const got = await expectPacket(sub, 'publish');
    const p = got.properties as Record<string, unknown>;
    assert.equal(p.payloadFormatIndicator, true);
    assert.equal(p.contentType, 'text/plain; charset=utf-8');
    assert.equal(p.responseTopic, 'reply/here');
    assert.deepEqual([...(p.correlationData as Buffer)], [0, 1, 2]);
    assert.deepEqual(Object.entries(p.userProperties as object), Object.entries(userProperties));
    sub.close();
    pub.close();
  });

  test('a Payload Format Indicator of 1 with a payload that is not UTF-8 is refused with 0x99', async () => {
    const pub = await client();
    pub.sendPacket({ cmd: 'publish', topic: 'pfi5', payload: Buffer.from([0xff, 0xfe]), qos: 1, messageId: 9, properties: { payloadFormatIndicator: true } }, 5);
    assert.equal((await expectPacket(pub, 'puback')).reasonCode, 0x99);
    pub.close();
  });

  test('[MQTT-3.3.2-5] [MQTT-3.3.2-6] message expiry: an expired queued message is not delivered; others carry the remaining lifetime', async () => {
    const first = await rawConnect(b.port, 5, { clientId: 'expiry5', clean: false, properties: { sessionExpiryInterval: 60 } });
    await subscribe(first.raw, [{ topic: 'exp5/#', qos: 1 }]);
    first.raw.close();
    await pause();
    await b.broker.publish({ topic: 'exp5/short', payload: 'short', qos: 1, properties: { messageExpiryInterval: 1 } });
    await b.broker.publish({ topic: 'exp5/long', payload: 'long', qos: 1, properties: { messageExpiryInterval: 30 } });
    await pause(1300);
    const back = await rawConnect(b.port, 5, { clientId: 'expiry5', clean: false, properties: { sessionExpiryInterval: 60 } });
    const got = await publishes(back.raw);
    assert.deepEqual(got.map((p) => p.topic), ['exp5/long']);
    const left = (got[0]?.properties as { messageExpiryInterval?: number }).messageExpiryInterval as number;
    assert.ok(left <= 29 && left >= 27, `remaining ${left}`);
    back.raw.close();
  });

  test('[MQTT-3.3.2-5] [MQTT-3.3.2-6] a Message Expiry Interval of 0 reaches the subscribers it can be sent to at once, and is kept for no one', async () => {
    const live = await client();
    await subscribe(live, [{ topic: 'exp0/#', qos: 1 }]);
    // a subscriber whose one-message window is taken: the next message would have to wait
    const full = await client({ properties: { receiveMaximum: 1 } });
    await subscribe(full, [{ topic: 'exp0/#', qos: 1 }]);
    const away = await rawConnect(b.port, 5, { clientId: 'exp0-away', clean: false, properties: { sessionExpiryInterval: 60 } });
    await subscribe(away.raw, [{ topic: 'exp0/#', qos: 1 }]);
    away.raw.close();
    await pause();
    const pub = await client();
    publish(pub, 'exp0/a', 'first', 1);
    publish(pub, 'exp0/b', 'now or never', 1, { properties: { messageExpiryInterval: 0 } });
    publish(pub, 'exp0/r', 'retained for no one', 0, { retain: true, properties: { messageExpiryInterval: 0 } });
    const got = await publishes(live);
    assert.deepEqual(got.map((p) => p.payload?.toString()), ['first', 'now or never', 'retained for no one']);
    assert.equal((got[1]?.properties as { messageExpiryInterval?: number }).messageExpiryInterval, 0);
    // the window held 'first' unacknowledged: the QoS 1 message that would have had to wait is not
    // kept, the QoS 0 one, which no window holds back, goes at once; nothing follows the PUBACK
    const held = await publishes(full);
    assert.deepEqual(held.map((p) => p.payload?.toString()), ['first', 'retained for no one']);
    full.sendPacket({ cmd: 'puback', messageId: held[0]?.messageId as number }, 5);
    assert.deepEqual(await publishes(full), []);
    const back = await rawConnect(b.port, 5, { clientId: 'exp0-away', clean: false, properties: { sessionExpiryInterval: 0 } });
    assert.deepEqual((await publishes(back.raw)).map((p) => p.payload?.toString()), ['first']);
    const late = await client();
    await subscribe(late, [{ topic: 'exp0/r', qos: 0 }]);
    assert.equal((await publishes(late)).length, 0, 'no retained copy for a later subscriber');
    for (const raw of [live, full, back.raw, late, pub]) raw.close();
  });

  test('an expired retained message is not sent to a new subscriber', async () => {
    await b.broker.publish({ topic: 'exp5r', payload: 'gone soon', retain: true, properties: { messageExpiryInterval: 1 } });
    await pause(1200);
    const late = await client();
    await subscribe(late, [{ topic: 'exp5r', qos: 0 }]);
    assert.equal((await publishes(late)).length, 0);
    late.close();
  });

  test('[MQTT-3.3.2-12] topic aliases 1 to the Topic Alias Maximum are accepted; one above it gets DISCONNECT 0x94', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'alias5/#', qos: 0 }]);
    const { raw: pub, connack } = await rawConnect(b.port, 5, { clientId: 'alias-pub' });
    assert.equal((connack.properties as { topicAliasMaximum?: number }).topicAliasMaximum, 3);
    for (const alias of [1, 2, 3]) publish(pub, `alias5/${alias}`, 'set', 0, { properties: { topicAlias: alias } });
    for (const alias of [1, 2, 3]) publish(pub, '', 'use', 0, { properties: { topicAlias: alias } });
    const got = (await publishes(sub)).map((p) => p.topic);
    assert.deepEqual(got, ['alias5/1', 'alias5/2', 'alias5/3', 'alias5/1', 'alias5/2', 'alias5/3']);
    publish(pub, 'alias5/4', 'x', 0, { properties: { topicAlias: 4 } });
    assert.equal((await expectPacket(pub, 'disconnect')).reasonCode, 0x94);
    sub.close();
  });

  test('[MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-4.8.2-3] overlapping subscriptions: one copy, highest QoS, every Subscription Identifier', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'ov5/+', qos: 1 }], { subscriptionIdentifier: 11 }, 1);
    await subscribe(sub, [{ topic: 'ov5/#', qos: 2 }], { subscriptionIdentifier: 22 }, 2);
    await subscribe(sub, [{ topic: 'ov5/x', qos: 0 }], undefined, 3);
    await b.broker.publish({ topic: 'ov5/x', payload: 'x', qos: 2 });
    const got = await publishes(sub);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.qos, 2);
    const ids = (got[0]?.properties as { subscriptionIdentifier?: number | number[] }).subscriptionIdentifier;
    assert.deepEqual([ids].flat().sort((a, c) => (a as number) - (c as number)), [11, 22]);
    sub.close();
  });

  test('[MQTT-3.3.4-5] a shared and a non-shared subscription give two copies, each with its own Subscription Identifier', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'two5/x', qos: 1 }], { subscriptionIdentifier: 5 }, 1);
    await subscribe(sub, [{ topic: '$share/g/two5/x', qos: 1 }], { subscriptionIdentifier: 6 }, 2);
    await b.broker.publish({ topic: 'two5/x', payload: 'x', qos: 1 });
    const got = await publishes(sub);
    const ids = got.map((p) => [(p.properties as { subscriptionIdentifier?: number | number[] }).subscriptionIdentifier].flat()[0]).sort();
    assert.deepEqual(ids, [5, 6]);
    sub.close();
  });

  test('[MQTT-3.8.4-3] subscribing again to the same filter replaces the subscription (options and identifier)', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'rep5', qos: 0 }], { subscriptionIdentifier: 1 }, 1);
    await subscribe(sub, [{ topic: 'rep5', qos: 1 }], { subscriptionIdentifier: 2 }, 2);
    await b.broker.publish({ topic: 'rep5', payload: 'x', qos: 1 });
    const got = await publishes(sub);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.qos, 1);
    assert.deepEqual([(got[0]?.properties as { subscriptionIdentifier?: number | number[] }).subscriptionIdentifier].flat(), [2]);
    sub.close();
  });

  test('[MQTT-3.8.4-8] the delivered QoS is the lower of the published and the granted QoS', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'qm5/1', qos: 1 }]);
    await b.broker.publish({ topic: 'qm5/1', payload: 'x', qos: 2 });
    await b.broker.publish({ topic: 'qm5/1', payload: 'y', qos: 0 });
    assert.deepEqual((await publishes(sub)).map((p) => p.qos), [1, 0]);
    sub.close();
  });

  test('[MQTT-3.10.4-5] UNSUBACK says 0x8F for a filter no subscription can have, and 0x11 for a valid one not held', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'u8f/a', qos: 0 }]);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 78, unsubscriptions: ['u8f/#/b', 'u8f/a', 'u8f/x+', '$share/g+/u8f', 'u8f/none'] }, 5);
    const ack = await expectPacket(sub, 'unsuback');
    assert.deepEqual(ack.granted, [0x8f, 0x00, 0x8f, 0x8f, 0x11]);
    assert.match(String((ack.properties as { reasonString?: string } | undefined)?.reasonString), /u8f\/#\/b/);
    sub.close();
  });

  test('[MQTT-2.2.1-6] [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6] [MQTT-3.11.3-1] [MQTT-3.11.3-2] UNSUBSCRIBE: exact match, one UNSUBACK with a code per filter', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'u5/a', qos: 0 }, { topic: 'u5/+', qos: 0 }]);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 77, unsubscriptions: ['u5/+', 'u5/none', 'u5/#'] }, 5);
    const ack = await expectPacket(sub, 'unsuback');
    assert.equal(ack.messageId, 77);
    assert.deepEqual(ack.granted, [0x00, 0x11, 0x11]);
    await b.broker.publish({ topic: 'u5/a', payload: 'still' });
    await b.broker.publish({ topic: 'u5/b', payload: 'gone' });
    assert.deepEqual((await publishes(sub)).map((p) => p.topic), ['u5/a']);
    assert.equal(sub.received.filter((p) => p.cmd === 'unsuback').length, 0, 'just one UNSUBACK');
    sub.close();
  });

  test('[MQTT-3.10.4-2] [MQTT-3.10.4-3] after UNSUBSCRIBE no new messages come, and QoS 1 and 2 deliveries under way complete', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'uw5/#', qos: 2 }]);
    await b.broker.publish({ topic: 'uw5/1', payload: 'one', qos: 1 });
    await b.broker.publish({ topic: 'uw5/2', payload: 'two', qos: 2 });
    const inflight = await publishes(sub);
    sub.sendPacket({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['uw5/#'] }, 5);
    await expectPacket(sub, 'unsuback');
    const q1 = inflight.find((p) => p.qos === 1) as Loose;
    const q2 = inflight.find((p) => p.qos === 2) as Loose;
    sub.sendPacket({ cmd: 'puback', messageId: q1.messageId }, 5);
    sub.sendPacket({ cmd: 'pubrec', messageId: q2.messageId }, 5);
    assert.equal((await expectPacket(sub, 'pubrel')).messageId, q2.messageId);
    sub.sendPacket({ cmd: 'pubcomp', messageId: q2.messageId }, 5);
    await b.broker.publish({ topic: 'uw5/3', payload: 'after', qos: 1 });
    assert.equal((await publishes(sub)).length, 0);
    sub.close();
  });

  test('[MQTT-3.3.4-9] [MQTT-3.3.4-10] [MQTT-4.9.0-1] [MQTT-4.9.0-2] [MQTT-4.9.0-3] the client Receive Maximum bounds unacknowledged deliveries; PINGRESP is not held back', async () => {
    const sub = await client({ properties: { receiveMaximum: 2 } });
    await subscribe(sub, [{ topic: 'rm5', qos: 1 }]);
    for (let i = 0; i < 5; i++) await b.broker.publish({ topic: 'rm5', payload: String(i), qos: 1 });
    const first = await publishes(sub);
    assert.equal(first.length, 2);
    sub.send('c000');
    await expectPacket(sub, 'pingresp');
    sub.sendPacket({ cmd: 'puback', messageId: first[0]?.messageId }, 5);
    const next = await publishes(sub);
    assert.deepEqual(next.map((p) => p.payload?.toString()), ['2']);
    sub.close();
  });

  test('[MQTT-3.3.4-9] [MQTT-4.4.0-1] a session resumed with a smaller Receive Maximum is sent its in-flight messages again as its acknowledgements make room, in order, before new ones', async () => {
    const id = 'rm5-resume';
    const first = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: { sessionExpiryInterval: 60 } });
    await subscribe(first.raw, [{ topic: 'rm5r/#', qos: 2 }]);
    for (let i = 0; i < 8; i++) await b.broker.publish({ topic: 'rm5r/a', payload: String(i), qos: i % 2 === 0 ? 1 : 2 });
    const sent = await publishes(first.raw);
    assert.equal(sent.length, 8);
    // the QoS 2 message '1' is received: it awaits PUBCOMP, and takes room in the window as it does
    first.raw.sendPacket({ cmd: 'pubrec', messageId: sent[1]?.messageId as number }, 5);
    await expectPacket(first.raw, 'pubrel');
    first.raw.close();
    // once the session is offline: 'new' is queued, not in flight
    await pause();
    await b.broker.publish({ topic: 'rm5r/a', payload: 'new', qos: 1 });
    const back = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: { sessionExpiryInterval: 60, receiveMaximum: 3 } });
    assert.equal(back.connack.sessionPresent, true);
    const resumed = await drainFor(back.raw, 300);
    // in their first order: two of the seven PUBLISHes and the PUBREL, three unacknowledged with
    // the one awaiting PUBCOMP
    assert.deepEqual(resumed.map((p) => p.cmd), ['publish', 'pubrel', 'publish']);
    const got: Loose[] = resumed.filter((p) => p.cmd === 'publish');
    assert.deepEqual(got.map((p) => [p.payload?.toString(), p.dup]), [['0', true], ['2', true]]);
    // '4' had reached the client before it went, its PUBACK lost with the connection: acknowledged
    // now, it is not sent again, and takes no room
    back.raw.sendPacket({ cmd: 'puback', messageId: sent[4]?.messageId as number }, 5);
    // a QoS 0 message, which no window holds, waits behind them all the same
    await b.broker.publish({ topic: 'rm5r/a', payload: 'zero', qos: 0 });
    assert.deepEqual(await publishes(back.raw, 200), []);
    // each acknowledgement lets one more go, the resumed ones first, then what was queued
    const ack = (p: Loose): void => back.raw.sendPacket(p.qos === 1 ? { cmd: 'puback', messageId: p.messageId as number } : { cmd: 'pubrec', messageId: p.messageId as number }, 5);
    back.raw.sendPacket({ cmd: 'pubcomp', messageId: sent[1]?.messageId as number }, 5);
    for (let i = 0; i < 5; i++) {
      const next = await publishes(back.raw, 200);
      assert.equal(next.filter((p) => p.qos !== 0).length, 1, `step ${i}: ${next.length} sent for one acknowledgement`);
      got.push(...next);
      ack(got[i] as Loose);
      if ((got[i] as Loose).qos === 2) {
        await expectPacket(back.raw, 'pubrel');
        back.raw.sendPacket({ cmd: 'pubcomp', messageId: (got[i] as Loose).messageId as number }, 5);
      }
    }
    assert.deepEqual(got.map((p) => p.payload?.toString()), ['0', '2', '3', '5', '6', '7', 'new', 'zero']);
    assert.deepEqual(got.map((p) => p.dup === true), [true, true, true, true, true, true, false, false]);
    back.raw.close();
  });

  test('[MQTT-3.1.2-24] [MQTT-3.1.2-25] a message larger than the client Maximum Packet Size is not sent to it; later ones are', async () => {
    const sub = await client({ properties: { maximumPacketSize: 200 } });
    await subscribe(sub, [{ topic: 'mps5', qos: 1 }]);
    const before = b.broker.stats.droppedByReason.tooLarge ?? 0;
    await b.broker.publish({ topic: 'mps5', payload: Buffer.alloc(500), qos: 1 });
    await b.broker.publish({ topic: 'mps5', payload: 'small', qos: 1 });
    assert.deepEqual((await publishes(sub)).map((p) => p.payload?.toString()), ['small']);
    assert.equal((b.broker.stats.droppedByReason.tooLarge ?? 0) - before, 1);
    sub.close();
  });

  test('[MQTT-4.6.0-5] [MQTT-4.6.0-6] [MQTT-4.2.0-1] messages from one publisher reach a subscriber in order, across QoS levels', async () => {
    const sub = await client();
    await subscribe(sub, [{ topic: 'ord5/#', qos: 2 }]);
    const pub = await client();
    const count = 200;
    for (let i = 0; i < count; i++) publish(pub, `ord5/${i % 3}`, String(i), (i % 3) as 0 | 1 | 2);
    const got = (await receiveAcking(sub, 5, count)).map(Number);
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => i));
    sub.close();
    pub.close();
  });
});

describe('MQTT 5.0 shared subscription delivery guarantees (5.0)', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  after(() => b.close());
  const publishes = async (raw: RawClient, ms = 250): Promise<Loose[]> => (await drainFor(raw, ms)).filter((p) => p.cmd === 'publish');

  async function member(id: string, qos: 0 | 1 | 2, props: Record<string, unknown> = {}): Promise<RawClient> {
    const { raw } = await rawConnect(b.port, 5, { clientId: id, clean: false, properties: props });
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$share/g/${id.split('-')[0]}`, qos }] }, 5);
    await expectPacket(raw, 'suback');
    return raw;
  }

  test('[MQTT-4.8.2-4] [MQTT-4.4.0-1] [MQTT-3.3.1-1] a QoS 2 message under way to a member that drops is completed with that member when it reconnects', async () => {
    const a = await member('q2-a', 2, { sessionExpiryInterval: 60 });
    await b.broker.publish({ topic: 'q2', payload: 'exactly once', qos: 2 });
    const got = await expectPacket(a, 'publish');
    a.close();
    await new Promise((r) => setTimeout(r, 50));
    const other = await member('q2-b', 2);
    assert.equal((await publishes(other)).length, 0, 'not given to another member');
    const back = await rawConnect(b.port, 5, { clientId: 'q2-a', clean: false, properties: { sessionExpiryInterval: 60 } });
    const again = await expectPacket(back.raw, 'publish');
    assert.equal(again.messageId, got.messageId);
    assert.equal(again.dup, true);
    back.raw.close();
    other.close();
  });

  test('[MQTT-4.8.2-5] if that member session ends instead, the QoS 2 message goes to no one else', async () => {
    const a = await member('q2s-a', 2, { sessionExpiryInterval: 1 });
    const other = await member('q2s-b', 2);
    // make "a" the chosen member: "other" has no room once it holds an unacknowledged message
    await b.broker.publish({ topic: 'q2s', payload: 'first', qos: 2 });
    await b.broker.publish({ topic: 'q2s', payload: 'second', qos: 2 });
    const toA = await publishes(a);
    const toOther = await publishes(other);
    assert.equal(toA.length + toOther.length, 2);
    a.close();
    await new Promise((r) => setTimeout(r, 1600));
    assert.equal((await publishes(other)).length, 0);
    other.close();
  });

  test('[MQTT-4.8.2-6] a member that answers PUBACK 0x80 or above: the message is discarded, not sent to another member', async () => {
    const a = await member('rej-a', 1);
    const c = await member('rej-b', 1);
    await b.broker.publish({ topic: 'rej', payload: 'refused', qos: 1 });
    const [atA] = await publishes(a, 150);
    const [atC] = await publishes(c, 150);
    const holder = atA !== undefined ? a : c;
    const msg = (atA ?? atC) as Loose;
    holder.sendPacket({ cmd: 'puback', messageId: msg.messageId, reasonCode: 0x80 }, 5);
    assert.equal((await publishes(a)).length + (await publishes(c)).length, 0);
    a.close();
    c.close();
  });
});
