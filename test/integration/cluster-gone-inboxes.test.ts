import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { collectFor, connackOf, connectClient, delay, nextMessages } from '../helpers/broker.js';
import { eventually } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, routesKnown, spawnNode } from '../helpers/cluster.js';

const persistent = (clientId: string): IClientOptions => ({ clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });

/** Connects with a persistent session and takes everything that comes within `ms` after the CONNACK, in order. */
async function resume(port: number, clientId: string, ms: number): Promise<{ client: MqttClient; payloads: string[] }> {
  const payloads: string[] = [];
  const client = await connectClient(port, persistent(clientId), (c) => c.on('message', (_t, p) => payloads.push(p.toString())));
  await collectFor(client, ms);
  return { client, payloads };
}

describe('a cluster keeps what is published for the sessions of a node that goes, until they are taken up', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  test('[MQTT-3.1.2-5] [MQTT-4.3.3-2] QoS 1 messages published for the sessions of a node that died, before it was found dead and during the grace, reach them where they are taken up, once each', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    const a = await h.node(prefix, 'stays');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'dies');
    const sleeper = await connectClient(port, persistent('sleeper'));
    await sleeper.subscribeAsync('sleeper/#', { qos: 1 });
    await sleeper.endAsync();
    const awake = await connectClient(port, persistent('awake'));
    await awake.subscribeAsync('awake/#', { qos: 1 });
    // a subscriber of the surviving node's own, which the dead node's inbox is not read for
    const bystander = await connectClient(a.port, { clientId: 'bystander', protocolVersion: 5 });
    const seen: string[] = [];
    bystander.on('message', (_t, p) => seen.push(p.toString()));
    await bystander.subscribeAsync('awake/#', { qos: 1 });
    await routesKnown(a, 2);
    const pub = await connectClient(a.port, { clientId: 'gone-pub', protocolVersion: 5 });
    child.kill('SIGKILL');
    awake.end(true);
    // before the node is found dead (5 s): its routes are still known, the messages go to its inbox
    await pub.publishAsync('sleeper/1', 's1', { qos: 1 });
    await pub.publishAsync('awake/1', 'a1', { qos: 1 });
    assert.ok(await eventually(() => a.broker.stats.cluster?.nodes === 1, 9000), 'the dead node is found dead');
    // found dead, its sessions not taken up yet (5 s grace): its routes are kept, and so are these
    await pub.publishAsync('sleeper/2', 's2', { qos: 1 });
    await pub.publishAsync('awake/2', 'a2', { qos: 1 });
    const back = await resume(a.port, 'awake', 500);
    assert.equal(connackOf(back.client).sessionPresent, true);
    assert.deepEqual(back.payloads, ['a1', 'a2'], 'what waited in the dead node\'s inbox, ahead of anything new');
    assert.ok(await eventually(() => a.broker.stats.cluster?.orphanSessionsAdopted === 1, 12_000), 'the sleeping session taken up');
    const later = collectFor(back.client, 3000);
    await pub.publishAsync('sleeper/3', 's3', { qos: 1 });
    await pub.publishAsync('awake/3', 'a3', { qos: 1 });
    // the node's routes are still kept here: these went to its inbox as well, and are not given twice
    assert.deepEqual((await later).map((x) => x.payload.toString()), ['a3']);
    const woke = await resume(a.port, 'sleeper', 1000);
    assert.equal(connackOf(woke.client).sessionPresent, true);
    assert.deepEqual(woke.payloads, ['s1', 's2', 's3']);
    assert.equal(a.broker.stats.cluster?.goneInboxMessages, 4);
    assert.deepEqual(seen, ['a1', 'a2', 'a3'], 'the bystander got each once, as published');
  });

  test('[MQTT-4.3.3-2] messages a third node publishes all along, to the dead node still routed to and then to the node its session went to as well, reach the session once each', CLUSTER_TEST, async () => {
    const prefix = h.prefix();
    // room for the few thousand messages the dead node's inbox holds for the session by then
    const a = await h.node(prefix, 'takes', { limits: { maxQueuedMessages: 100_000 } });
    const relay = await h.node(prefix, 'relays');
    const { child, port } = await spawnNode(h.redis.url, prefix, 'falls');
    const c = await connectClient(port, persistent('burst'));
    await c.subscribeAsync('burst/#', { qos: 1 });
    await routesKnown(relay, 1);
    const pub = await connectClient(relay.port, { clientId: 'burst-pub', protocolVersion: 5 });
    child.kill('SIGKILL');
    c.end(true);
    // from the kill until a second after the session is taken up, 20 every 20 ms
    let sent = 0;
    let taken = false;
    const publishing = (async () => {
      for (let until = Infinity; Date.now() < until; sent += 20) {
        if (taken && until === Infinity) until = Date.now() + 1000;
        await Promise.all([delay(20), ...Array.from({ length: 20 }, (_, k) => pub.publishAsync(`burst/${sent + k}`, String(sent + k), { qos: 1 }))]);
      }
    })();
    assert.ok(await eventually(() => relay.broker.stats.cluster?.nodes === 2, 9000), 'the dead node is found dead');
    const payloads: string[] = [];
    const back = await connectClient(a.port, persistent('burst'), (cl) => cl.on('message', (_t, p) => payloads.push(p.toString())));
    assert.equal(connackOf(back).sessionPresent, true);
    taken = true;
    await publishing;
    await collectFor(back, 2000);
    assert.equal(new Set(payloads).size, sent, `every one of ${sent}`);
    assert.equal(payloads.length, sent, 'none twice');
  });

  test('[MQTT-3.1.2-5] a node that stops and comes back with its store finds what was published for its offline sessions meanwhile; a client that went elsewhere gets what was sent to the node for it there', CLUSTER_TEST, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-gone-inbox-'));
    const prefix = h.prefix();
    try {
      const a = await h.node(prefix, 'steady');
      const store = { persistence: 'lmdb' as const, dataDir: dir };
      const rolling = await h.node(prefix, 'rolling', store);
      const resting = await connectClient(rolling.port, persistent('resting'));
      await resting.subscribeAsync('resting/#', { qos: 1 });
      await resting.endAsync();
      const moving = await connectClient(rolling.port, persistent('moving'));
      await moving.subscribeAsync('moving/#', { qos: 1 });
      await routesKnown(a, 2);
      const pub = await connectClient(a.port, { clientId: 'rolling-pub', protocolVersion: 5 });
      await rolling.close();
      h.nodes.splice(h.nodes.indexOf(rolling), 1);
      moving.end(true);
      await pub.publishAsync('resting/1', 'r1', { qos: 1 });
      await pub.publishAsync('moving/1', 'm1', { qos: 1 });
      const moved = await resume(a.port, 'moving', 500);
      assert.equal(connackOf(moved.client).sessionPresent, true);
      assert.deepEqual(moved.payloads, ['m1'], 'sent to the stopped node for it, read from its inbox');
      const again = await h.node(prefix, 'rolling', store);
      assert.equal(again.broker.stats.sessions, 1, 'the session no other node took');
      const rested = await resume(again.port, 'resting', 1000);
      assert.equal(connackOf(rested.client).sessionPresent, true);
      assert.deepEqual(rested.payloads, ['r1'], 'published while its node was down');
      assert.deepEqual(await collectFor(moved.client, 1000), [], 'nothing given twice');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
