import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions } from 'mqtt';
import { closeClients, collectFor, connectClient, delay, nextMessages, startBroker, type TestBroker } from '../../helpers/broker.js';

/** The MQTT 5 features end to end with MQTT.js, as applications use them. */
describe('MQTT 5.0 features with MQTT.js 5 (5.0)', () => {
  let b: TestBroker;
  let n = 0;
  before(async () => {
    b = await startBroker();
  });
  after(async () => {
    await closeClients();
    await b.close();
  });
  const v5 = (options: IClientOptions = {}): ReturnType<typeof connectClient> => connectClient(b.port, { protocolVersion: 5, clientId: `js5-${++n}`, ...options });

  test('request/response: Response Topic and Correlation Data reach the responder, and the answer comes back', async () => {
    const requester = await v5({ properties: { requestResponseInformation: true } });
    const responder = await v5();
    await responder.subscribeAsync('svc/time', { qos: 1 });
    await requester.subscribeAsync('reply/js', { qos: 1 });
    responder.on('message', (_t, _p, packet) => {
      const props = packet.properties ?? {};
      void responder.publishAsync(props.responseTopic as string, 'noon', { qos: 1, properties: { correlationData: props.correlationData } });
    });
    const answer = nextMessages(requester, 1);
    await requester.publishAsync('svc/time', 'what time?', { qos: 1, properties: { responseTopic: 'reply/js', correlationData: Buffer.from('req-1') } });
    const [got] = await answer;
    assert.equal(got?.payload.toString(), 'noon');
    assert.equal(got?.packet.properties?.correlationData?.toString(), 'req-1');
  });

  test('user properties, content type and payload format arrive as sent', async () => {
    const sub = await v5();
    await sub.subscribeAsync('props/js', { qos: 1 });
    const pub = await v5();
    const got = nextMessages(sub, 1);
    await pub.publishAsync('props/js', '{"t":21}', { qos: 1, properties: { userProperties: { site: 'a', unit: ['c', 'f'] }, contentType: 'application/json', payloadFormatIndicator: true } });
    const props = (await got)[0]?.packet.properties;
    assert.deepEqual({ ...props?.userProperties }, { site: 'a', unit: ['c', 'f'] });
    assert.equal(props?.contentType, 'application/json');
    assert.equal(props?.payloadFormatIndicator, true);
  });

  test('subscription identifiers come back with each message', async () => {
    const sub = await v5();
    await sub.subscribeAsync('sid/+', { qos: 1, properties: { subscriptionIdentifier: 42 } });
    const got = nextMessages(sub, 1);
    await b.broker.publish({ topic: 'sid/x', payload: 'x', qos: 1 });
    assert.deepEqual([(await got)[0]?.packet.properties?.subscriptionIdentifier].flat(), [42]);
  });

  test('topic aliases both ways: MQTT.js assigns them on publish, the broker on delivery', async () => {
    const sub = await v5({ properties: { topicAliasMaximum: 5 } });
    await sub.subscribeAsync('alias/js/#', { qos: 1 });
    const pub = await v5({ autoAssignTopicAlias: true });
    const got = nextMessages(sub, 3);
    for (let i = 0; i < 3; i++) await pub.publishAsync('alias/js/long/topic/name', String(i), { qos: 1 });
    assert.deepEqual((await got).map((m) => [m.topic, m.payload.toString()]), [0, 1, 2].map((i) => ['alias/js/long/topic/name', String(i)]));
  });

  test('shared subscriptions spread messages over the members of a group', async () => {
    const a = await v5();
    const c = await v5();
    await a.subscribeAsync('$share/workers/jobs', { qos: 1 });
    await c.subscribeAsync('$share/workers/jobs', { qos: 1 });
    const gotA = collectFor(a, 500);
    const gotC = collectFor(c, 500);
    for (let i = 0; i < 10; i++) await b.broker.publish({ topic: 'jobs', payload: String(i), qos: 1 });
    const [ra, rc] = await Promise.all([gotA, gotC]);
    assert.equal(ra.length + rc.length, 10);
    assert.ok(ra.length > 0 && rc.length > 0);
  });

  test('No Local, Retain As Published and Retain Handling as subscription options', async () => {
    await b.broker.publish({ topic: 'opts/js', payload: 'retained', retain: true });
    const c = await v5();
    const initial = collectFor(c, 300);
    await c.subscribeAsync('opts/js', { qos: 1, nl: true, rap: true, rh: 2 });
    assert.equal((await initial).length, 0, 'Retain Handling 2: no retained message');
    const other = await v5();
    const got = collectFor(c, 300);
    await c.publishAsync('opts/js', 'own', { qos: 1 });
    await other.publishAsync('opts/js', 'theirs', { qos: 1, retain: true });
    const msgs = await got;
    assert.deepEqual(msgs.map((m) => [m.payload.toString(), m.packet.retain]), [['theirs', true]]);
    await other.publishAsync('opts/js', '', { qos: 1, retain: true });
  });

  test('message expiry: the remaining lifetime is forwarded', async () => {
    const sub = await v5();
    await sub.subscribeAsync('exp/js', { qos: 1 });
    const got = nextMessages(sub, 1);
    await b.broker.publish({ topic: 'exp/js', payload: 'x', qos: 1, properties: { messageExpiryInterval: 60 } });
    const left = (await got)[0]?.packet.properties?.messageExpiryInterval as number;
    assert.ok(left > 0 && left <= 60);
  });

  test('session expiry and a delayed will with MQTT.js', async () => {
    const watcher = await v5();
    await watcher.subscribeAsync('will/js', { qos: 1 });
    const dying = await v5({
      clean: false,
      properties: { sessionExpiryInterval: 30 },
      will: { topic: 'will/js', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
    });
    const got = nextMessages(watcher, 1, 4000);
    dying.stream.destroy();
    const t0 = Date.now();
    assert.equal((await got)[0]?.payload.toString(), 'gone');
    assert.ok(Date.now() - t0 >= 800, 'after the will delay');
  });

  test('flow control: with Receive Maximum 1 every message still arrives, one at a time', async () => {
    const sub = await v5({ properties: { receiveMaximum: 1 } });
    await sub.subscribeAsync('flow/js', { qos: 1 });
    const got = nextMessages(sub, 20);
    for (let i = 0; i < 20; i++) await b.broker.publish({ topic: 'flow/js', payload: String(i), qos: 1 });
    assert.deepEqual((await got).map((m) => Number(m.payload.toString())), Array.from({ length: 20 }, (_, i) => i));
  });

  test('a refused publish is reported to MQTT.js as PUBACK 0x87', async () => {
    const c = await v5();
    await assert.rejects(c.publishAsync('$SYS/forged', 'x', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x87 || /87|authori/i.test(err.message));
    await delay(10);
  });
});
