import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { collectFor, connackOf, connectClient, delay, type TestBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/raw-session.js';
import { skipWithoutRedis } from '../helpers/redis.js';
import { CLUSTER_TEST, clusterHarness, routesKnown, spawnNode } from '../helpers/cluster.js';

const persistent = (clientId: string): IClientOptions => ({ clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });

/** Publishes numbered QoS 1 messages one by one, two every 10 ms (each its own inbox entry), until stop() (and a second more). */
function steadily(pub: MqttClient, topic: string): { stop: () => Promise<number> } {
  let sent = 0;
  let until = Infinity;
  const acks: Array<Promise<unknown>> = [];
  const running = (async () => {
    while (Date.now() < until) {
      for (let k = 0; k < 2; k++, sent++) acks.push(pub.publishAsync(topic, String(sent), { qos: 1 }));
      await delay(10);
    }
  })();
  return {
    stop: async () => {
      until = Date.now() + 1000;
      await running;
      await Promise.all(acks);
      return sent;
    },
  };
}

/** The numbers received, each once, in the order first received; and those that came after a higher one. */
function orderOf(payloads: string[]): { unique: number[]; late: number[] } {
  const seen = new Set<number>();
  const unique: number[] = [];
  const late: number[] = [];
  let highest = -1;
  for (const p of payloads) {
    const n = Number(p);
    if (seen.has(n)) continue;
    seen.add(n);
    unique.push(n);
    if (n < highest) late.push(n);
    else highest = n;
  }
  return { unique, late };
}

describe('the backlog a gone node\'s inbox holds for a session comes ahead of what its publishers sent later', { skip: skipWithoutRedis }, () => {
  const h = clusterHarness();

  /** A session on a node that is killed while a third node publishes for it steadily; `takeUp` waits until it is taken up elsewhere. */
  async function killedWhilePublishing(clientId: string, takeUp: (nodes: TestBroker[]) => Promise<TestBroker>): Promise<void> {
    const prefix = h.prefix();
    // room for the thousands of messages the dead node's inbox holds for the session by then
    // (either node may take the session up offline)
    const taker = await h.node(prefix, 'takes', { limits: { maxQueuedMessages: 100_000 } });
    const relay = await h.node(prefix, 'relays', { limits: { maxQueuedMessages: 100_000 } });
    const { child, port } = await spawnNode(h.redis.url, prefix, 'falls');
    const before = new Set<string>();
    const first = await connectClient(port, persistent(clientId), (c) => c.on('message', (_t, p) => before.add(p.toString())));
    await first.subscribeAsync('ord/#', { qos: 1 });
    await routesKnown(relay, 1);
    const pub = await connectClient(relay.port, { clientId: `${clientId}-pub`, protocolVersion: 5 });
    const publishing = steadily(pub, 'ord/1');
    await delay(300);
    child.kill('SIGKILL');
    first.end(true);
    const there = await takeUp([taker, relay]);
    const payloads: string[] = [];
    const back = await connectClient(there.port, persistent(clientId), (c) => c.on('message', (_t, p) => payloads.push(p.toString())));
    assert.equal(connackOf(back).sessionPresent, true);
    const sent = await publishing.stop();
    await collectFor(back, 2000);
    const { unique, late } = orderOf(payloads);
    const received = new Set(unique);
    // what the client had on the node that was killed may or may not come again
    const lost = Array.from({ length: sent }, (_, n) => n).filter((n) => !received.has(n) && !before.has(String(n)));
    assert.deepEqual(late.slice(0, 20), [], `${late.length} messages came after later ones of their publisher`);
    assert.deepEqual(lost.slice(0, 20), [], `${lost.length} of ${sent} lost (taken up by ${there === taker ? 'the other node' : 'the publisher\'s node'})`);
  }

  test('[MQTT-4.6.0-5] a client that reconnects to another node after its node was killed gets the backlog there ahead of newer messages', CLUSTER_TEST, async () => {
    await killedWhilePublishing('ord-reconnect', async ([taker]) => {
      // found dead by then: the session is taken from Redis, and the inbox read for it
      await delay(6000);
      return taker as TestBroker;
    });
  });

  test('[MQTT-4.6.0-5] a session taken up offline after its node was killed gets the backlog ahead of newer messages', CLUSTER_TEST, async () => {
    await killedWhilePublishing('ord-offline', async (nodes) => {
      const adopted = (): TestBroker | undefined => nodes.find((n) => n.broker.stats.cluster?.orphanSessionsAdopted === 1);
      assert.ok(await eventually(() => adopted() !== undefined, 20_000), 'the session taken up offline');
      await delay(1000);
      return adopted() as TestBroker;
    });
  });
});
