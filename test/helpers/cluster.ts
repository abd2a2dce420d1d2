import assert from 'node:assert/strict';
import { after, afterEach, before } from 'node:test';
import type { MqttClient } from 'mqtt';
import { closeClients, connectClient, delay, nextMessages, startBroker, type TestBroker } from './broker.js';
import type { ChildProcess } from 'node:child_process';
import { killMidges, spawnMidge } from './cli.js';
import { eventually } from './raw-session.js';
import { startRedis, type TestRedis } from './redis.js';

/**
 * Each cluster test gets this long. A test stuck on a wait (a QoS 1 publish whose connection
 * dropped never settles in MQTT.js without reconnecting) then fails under its own name, and the
 * tests after it still run, instead of the whole file timing out unnamed.
 */
export const CLUSTER_TEST = { timeout: 60_000 };

/** What the cluster test files share: a Redis server per file, and nodes closed after each test. */
export interface ClusterHarness {
  /** the file's Redis server (set in `before`) */
  readonly redis: TestRedis;
  /** nodes the current test started; closed after it */
  readonly nodes: TestBroker[];
  /** a key prefix no other test of the file uses: a cluster of its own */
  prefix(): string;
  /** the prefix `prefix()` gave last */
  lastPrefix(): string;
  /** `count` nodes of a cluster of their own (a fresh key prefix) */
  cluster(count: number, options?: Record<string, unknown>): Promise<TestBroker[]>;
  /** one node named `nodeId` of the cluster with key prefix `prefix`, closed after the test */
  node(prefix: string, nodeId: string, options?: Record<string, unknown>): Promise<TestBroker>;
  /** closes the test's clients and nodes (before the Redis servers a test started itself) */
  closeNodes(): Promise<void>;
}

/** Registers the hooks of a cluster test file (inside its `describe`) and returns what its tests use. */
export function clusterHarness(): ClusterHarness {
  let redis: TestRedis | undefined;
  const nodes: TestBroker[] = [];
  let prefixes = 0;
  const closeNodes = async (): Promise<void> => {
    await closeClients();
    await Promise.all(nodes.splice(0).map((n) => n.close()));
  };
  before(async () => {
    redis = await startRedis();
  });
  afterEach(closeNodes);
  after(async () => {
    killMidges();
    await redis?.stop();
  });
  const harness: ClusterHarness = {
    get redis(): TestRedis {
      if (redis === undefined) throw new Error('the Redis server has not started');
      return redis;
    },
    nodes,
    prefix: () => `c${++prefixes}`,
    lastPrefix: () => `c${prefixes}`,
    cluster: async (count, options = {}) => {
      const prefix = harness.prefix();
      const out: TestBroker[] = [];
      for (let i = 0; i < count; i++) {
        const n = await startBroker({ clusterRedis: harness.redis.url, clusterNodeId: `n${i}`, clusterPrefix: prefix, sysInterval: 0, ...options });
        nodes.push(n);
        out.push(n);
      }
      return out;
    },
    node: async (prefix, nodeId, options = {}) => {
      const n = await startBroker({ clusterRedis: harness.redis.url, clusterNodeId: nodeId, clusterPrefix: prefix, sysInterval: 0, ...options });
      nodes.push(n);
      return n;
    },
    closeNodes,
  };
  return harness;
}

/** `rounds` times: `sub` subscribes to a new topic and `pub` publishes to it right after the SUBACK; returns the rounds whose message did not come. */
export async function missedAfterSuback(sub: MqttClient, pub: MqttClient, prefix: string, rounds: number): Promise<number[]> {
  const missed: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await sub.subscribeAsync(`${prefix}/${i}`, { qos: 1 });
    const got = nextMessages(sub, 1, 1000).catch(() => missed.push(i));
    await pub.publishAsync(`${prefix}/${i}`, String(i), { qos: 1 });
    await got;
  }
  return missed;
}

/** Polls an async check every 100 ms (a rejection counts as false) until it holds or `ms` pass. */
export async function poll(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await delay(100)) if (await check().catch(() => false)) return true;
  return false;
}

/**
 * Whether a message published on `node` reaches `sub` within 20 s, publishing again from a new
 * client each second, as clients cut off during a Redis failover connect again and resend.
 */
export function deliveredAgain(node: TestBroker, sub: MqttClient, topic: string): Promise<boolean> {
  return poll(async () => {
    const again = await connectClient(node.port, { clientId: `again-${Date.now()}` });
    const got = nextMessages(sub, 1, 1000).then(
      (m) => m[0]?.payload.toString() === 'after',
      () => false,
    );
    again.publish(topic, 'after', { qos: 1 });
    return got;
  }, 20_000);
}

/** Waits until `node` knows `count` routes of other nodes. */
export async function routesKnown(node: TestBroker, count: number): Promise<void> {
  assert.ok(await eventually(() => node.broker.stats.cluster?.remoteRoutes === count, 3000), `routes known: ${node.broker.stats.cluster?.remoteRoutes}, expected ${count}`);
}

/** A node of the cluster in a process of its own (no store), to be killed or stopped outright. */
export function spawnNode(redisUrl: string, prefix: string, nodeId: string): Promise<{ child: ChildProcess; port: number }> {
  return spawnMidge(['--port', '0', '--persistence', 'memory', '--cluster-redis', redisUrl, '--cluster-node-id', nodeId, '--cluster-prefix', prefix, '--log-level', 'warn', '--sys-interval', '0']);
}

/** A client of `node` subscribed to every will (`will/#`). */
export async function watchWills(node: TestBroker): Promise<MqttClient> {
  const sub = await connectClient(node.port, { clientId: `watch-${node.port}`, protocolVersion: 5 });
  await sub.subscribeAsync('will/#', { qos: 1 });
  return sub;
}
