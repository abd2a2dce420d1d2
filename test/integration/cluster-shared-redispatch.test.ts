import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { collectFor, connectClient } from '../helpers/broker.js';
import { eventually } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, routesKnown, spawnNode } from '../helpers/cluster.js';

const GROUP = '$share/workers/job/#';

/** Every payload a client gets from now on. */
function record(client: MqttClient): string[] {
  const got: string[] = [];
  client.on('message', (_t, p) => got.push(p.toString()));
  return got;
}

/** `count` QoS 1 messages job/0..count-1, each acknowledged before the next. */
async function publishJobs(pub: MqttClient, count: number): Promise<string[]> {
  const sent: string[] = [];
  for (let i = 0; i < count; i++) {
    await pub.publishAsync(`job/${i}`, `j${i}`, { qos: 1 });
    sent.push(`j${i}`);
  }
  return sent;
}

const sorted = (a: string[]): string[] => [...a].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)));

describe('the shared-subscription messages a gone node was sent go to its groups\' other members', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('[MQTT-4.3.2-4] (5.0) QoS 1 messages a shared group\'s turn gave a node that had died, before it was found dead, reach the group\'s other member once each', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'publishes');
    const b = await h.node(prefix, 'works');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'dies-working');
    const here = await connectClient(b.port, { clientId: 'worker-b', protocolVersion: 5 });
    const got = record(here);
    await here.subscribeAsync(GROUP, { qos: 1 });
    const there = await connectClient(port, { clientId: 'worker-c', protocolVersion: 5 });
    await there.subscribeAsync(GROUP, { qos: 1 });
    await routesKnown(a, 2);
    child.kill('SIGKILL');
    there.end(true);
    const pub = await connectClient(a.port, { clientId: 'job-pub', protocolVersion: 5 });
    // before the node is found dead (5 s): the group's turns still fall to it half the time
    const sent = await publishJobs(pub, 20);
    assert.ok(got.length < 20, 'some went to the dead node');
    assert.ok(await eventually(() => got.length >= 20, 12_000), `all reach the other member: ${got.length} of 20`);
    assert.deepEqual(sorted(got), sent, 'each once');
    const redispatched = (a.broker.stats.cluster?.sharedRedispatched ?? 0) + (b.broker.stats.cluster?.sharedRedispatched ?? 0);
    assert.equal(redispatched, 10, 'the turns that fell to the dead node, redispatched by one node');
    assert.deepEqual(await collectFor(here, 1000), [], 'nothing more');
  });

  test('a node found dead while only stalled does not give its own group member again what the other node redispatched', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'steady');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'stalls-working');
    const here = await connectClient(a.port, { clientId: 'steady-worker', protocolVersion: 5 });
    const gotHere = record(here);
    await here.subscribeAsync(GROUP, { qos: 1 });
    const there = await connectClient(port, { clientId: 'stalled-worker', protocolVersion: 5, keepalive: 0 });
    const gotThere = record(there);
    await there.subscribeAsync(GROUP, { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'stall-job-pub', protocolVersion: 5 });
    child.kill('SIGSTOP');
    let sent: string[];
    try {
      sent = await publishJobs(pub, 10);
      assert.ok(await eventually(() => gotHere.length >= 10, 15_000), `the stalled node's share reaches the member here: ${gotHere.length} of 10`);
    } finally {
      child.kill('SIGCONT');
    }
    assert.deepEqual(sorted(gotHere), sent);
    // back, it handles its inbox: those entries go to its direct subscribers only
    assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 2, 10_000), 'the node is back');
    await collectFor(there, 1500);
    assert.deepEqual(gotThere, [], 'not given again to the member on the node that was stalled');
  });

  test('[MQTT-4.3.2-4] (5.0) messages for a group whose only member is on a node found dead while stalled are left to that node, which gives them to its member once it is back', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'publishes-alone');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'holds-the-group');
    const only = await connectClient(port, { clientId: 'only-worker', protocolVersion: 5, keepalive: 0 });
    const got = record(only);
    await only.subscribeAsync(GROUP, { qos: 1 });
    await routesKnown(a, 1);
    const pub = await connectClient(a.port, { clientId: 'solo-pub', protocolVersion: 5 });
    child.kill('SIGSTOP');
    let sent: string[];
    try {
      // acknowledged while its routes are still known (before it is found dead)
      sent = await publishJobs(pub, 5);
      assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 1, 9000), 'found dead');
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(a.broker.stats.cluster?.sharedRedispatched, 5, 'read from its inbox, with no other member to go to');
    } finally {
      child.kill('SIGCONT');
    }
    assert.ok(await eventually(() => got.length >= 5, 10_000), `the member gets them once its node is back: ${got.length} of 5`);
    assert.deepEqual(sorted(got), sent);
    assert.deepEqual(await collectFor(only, 1000), [], 'once each');
  });
});
