import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { collectFor, connectClient, type TestBroker } from '../helpers/broker.js';
import { drainFor, eventually, rawConnect, rawSubscribe } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, routesKnown } from '../helpers/cluster.js';

const GROUP = '$share/g/t';
const COUNT = 10;

/** Every payload a client gets from now on. */
function record(client: MqttClient): string[] {
  const got: string[] = [];
  client.on('message', (_t, p) => got.push(p.toString()));
  return got;
}

const sorted = (a: string[]): string[] => [...a].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)));

/**
 * Member A of GROUP on node `one`, persistent and offline (session expiry `expiry` s), member B
 * on node `two`, online; with a direct subscriber and another group of the topic on `two` too.
 * COUNT QoS 1 messages are published on `one`: the group's turns give about half to A, queued.
 */
async function memberAwayWithMessages(one: TestBroker, two: TestBroker, expiry: number): Promise<{ b: MqttClient; gotB: string[]; gotDirect: string[]; gotOther: string[]; sent: string[] }> {
  const a = await connectClient(one.port, { clientId: 'member-a', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: expiry } });
  await a.subscribeAsync(GROUP, { qos: 1 });
  await a.endAsync();
  assert.ok(await eventually(() => one.broker.stats.clientsConnected === 0 && one.broker.stats.clientsDisconnected === 1), 'A is offline');
  const b = await connectClient(two.port, { clientId: 'member-b', protocolVersion: 5 });
  const gotB = record(b);
  await b.subscribeAsync(GROUP, { qos: 1 });
  const direct = await connectClient(two.port, { clientId: 'direct', protocolVersion: 5 });
  const gotDirect = record(direct);
  await direct.subscribeAsync('t', { qos: 1 });
  const other = await connectClient(two.port, { clientId: 'other-group', protocolVersion: 5 });
  const gotOther = record(other);
  await other.subscribeAsync('$share/other/t', { qos: 1 });
  await routesKnown(one, 3);
  await routesKnown(two, 1);
  const pub = await connectClient(one.port, { clientId: 'publisher', protocolVersion: 5 });
  const sent: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    await pub.publishAsync('t', `m${i}`, { qos: 1 });
    sent.push(`m${i}`);
  }
  // the other subscribers have every message: what B has by then is all it is sent while A is away
  assert.ok(await eventually(() => gotDirect.length >= COUNT && gotOther.length >= COUNT, 5000), 'the other subscribers have every message');
  await collectFor(b, 200);
  assert.ok(gotB.length > 0 && gotB.length < COUNT, `A holds some of the group's messages (B has ${gotB.length} of ${COUNT})`);
  return { b, gotB, gotDirect, gotOther, sent };
}

describe('the messages a shared-group member held when its session ended go to the group\'s members on other nodes', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('(5.0 4.8.2) a member whose session expires offline hands what was queued for it to the group\'s member on another node, once each, and to no other subscriber', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const one = await h.node(prefix, 'holds');
    const two = await h.node(prefix, 'takes');
    const { b, gotB, gotDirect, gotOther, sent } = await memberAwayWithMessages(one, two, 2);
    assert.ok(await eventually(() => gotB.length >= COUNT, 8000), `B gets every message once A's session expired: ${gotB.length} of ${COUNT}`);
    await collectFor(b, 1000);
    assert.deepEqual(sorted(gotB), sent, 'each once');
    assert.deepEqual(sorted(gotDirect), sent, 'the direct subscriber is not sent them again');
    assert.deepEqual(sorted(gotOther), sent, 'nor the other group');
  });

  test('(5.0 4.8.2) a member that reconnects with Clean Start hands what was queued for its discarded session to the group\'s member on another node', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const one = await h.node(prefix, 'holds');
    const two = await h.node(prefix, 'takes');
    const { b, gotB, gotDirect, sent } = await memberAwayWithMessages(one, two, 600);
    const a = await connectClient(one.port, { clientId: 'member-a', protocolVersion: 5, clean: true });
    const gotA = record(a);
    assert.ok(await eventually(() => gotB.length >= COUNT, 5000), `B gets every message A's discarded session held: ${gotB.length} of ${COUNT}`);
    await collectFor(b, 1000);
    assert.deepEqual(sorted(gotB), sent, 'each once');
    assert.deepEqual(gotA, [], 'A, started clean, is sent none of them');
    assert.deepEqual(sorted(gotDirect), sent, 'the direct subscriber is not sent them again');
  });

  test('[MQTT-4.8.2-5] (5.0) a member whose session expires hands the QoS 1 messages it was sent and never acknowledged to the group\'s member on another node; its QoS 2 ones go to no one', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const one = await h.node(prefix, 'holds');
    const two = await h.node(prefix, 'takes');
    const a = await rawConnect(one.port, 5, { clientId: 'member-a', clean: true, properties: { sessionExpiryInterval: 2 } });
    await rawSubscribe(a.raw, 5, 1, [{ topic: GROUP, qos: 2 }]);
    const b = await connectClient(two.port, { clientId: 'member-b', protocolVersion: 5 });
    const gotB = record(b);
    await b.subscribeAsync(GROUP, { qos: 2 });
    await routesKnown(one, 1);
    await routesKnown(two, 1);
    const pub = await connectClient(one.port, { clientId: 'publisher', protocolVersion: 5 });
    for (let i = 0; i < COUNT; i++) await pub.publishAsync('t', `m${i}`, { qos: i % 4 < 2 ? 1 : 2 });
    // A answers none of them, and leaves
    const toA = (await drainFor(a.raw, 500)).filter((p) => p.cmd === 'publish');
    a.raw.close();
    const heldQos1 = toA.filter((p) => p.qos === 1).map((p) => String(p.payload));
    const heldQos2 = toA.filter((p) => p.qos === 2).map((p) => String(p.payload));
    assert.ok(heldQos1.length > 0 && heldQos2.length > 0, `A was sent QoS 1 and QoS 2 messages: ${JSON.stringify(toA.map((p) => String(p.payload)))}`);
    const expected = Array.from({ length: COUNT }, (_, i) => `m${i}`).filter((m) => !heldQos2.includes(m));
    assert.ok(await eventually(() => gotB.length >= expected.length, 8000), `B gets A's QoS 1 messages once its session expired: ${JSON.stringify(sorted(gotB))}`);
    await collectFor(b, 1000);
    assert.deepEqual(sorted(gotB), expected, 'each once, and none of the QoS 2 messages A was sent');
  });
});
