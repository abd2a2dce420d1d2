import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import type { QoS } from '../../src/codec/packets.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';

// Random sequences of what clients do (connect with a clean or a kept session, subscribe with
// overlapping wildcards, unsubscribe, publish at every QoS with and without RETAIN, disconnect
// while others publish), run against a real broker by MQTT.js clients and against a model of what
// MQTT 3.1.1 promises. After every step each client must have received exactly what the model says
// it is owed: no message lost, none duplicated, none where no subscription asked for it.

const CLIENTS = 3;
const TOPICS = ['a', 'a/b', 'a/c', 'b/b'];
const FILTERS = ['a', 'a/+', 'a/#', '#', '+/b', 'b/b', '+'];

type Command =
  | { kind: 'connect'; client: number; clean: boolean }
  | { kind: 'disconnect'; client: number }
  | { kind: 'subscribe'; client: number; filter: string; qos: QoS }
  | { kind: 'unsubscribe'; client: number; filter: string }
  | { kind: 'publish'; client: number; topic: string; qos: QoS; retain: boolean; empty: boolean };

const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const qos = fc.constantFrom<QoS>(0, 1, 2);
const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('connect' as const), client, clean: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('disconnect' as const), client }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('subscribe' as const), client, filter: fc.constantFrom(...FILTERS), qos }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('unsubscribe' as const), client, filter: fc.constantFrom(...FILTERS) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      client,
      topic: fc.constantFrom(...TOPICS),
      qos,
      retain: fc.boolean(),
      empty: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
    }),
    weight: 6,
  },
);

/** Topic matching as 3.1.1 section 4.7 states it, written apart from the broker's trie. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

interface SessionModel {
  readonly subscriptions: Map<string, QoS>;
  /** messages owed while the client is away (QoS 1 and 2 only) */
  queued: string[];
  persistent: boolean;
}

interface ClientState {
  connection: MqttClient | undefined;
  session: SessionModel | undefined;
  expected: string[];
  received: string[];
}

const delivery = (topic: string, payload: string, q: QoS, retain: boolean): string => `${topic} "${payload}" qos ${q}${retain ? ' retained' : ''}`;
const min = (a: QoS, b: QoS): QoS => (a < b ? a : b);

class Run {
  private readonly clients: ClientState[] = Array.from({ length: CLIENTS }, () => ({ connection: undefined, session: undefined, expected: [], received: [] }));
  private readonly retained = new Map<string, { payload: string; qos: QoS }>();
  private sent = 0;
  readonly log: string[] = [];

  constructor(private readonly b: TestBroker) {}

  async step(cmd: Command): Promise<void> {
    const c = this.clients[cmd.client] as ClientState;
    const id = `c${cmd.client}`;
    switch (cmd.kind) {
      case 'connect': {
        if (c.connection !== undefined) return;
        // [MQTT-3.1.2-6] a clean session starts empty; [MQTT-3.1.2-4] otherwise the stored one resumes
        const present = !cmd.clean && c.session !== undefined;
        if (!present) c.session = { subscriptions: new Map(), queued: [], persistent: !cmd.clean };
        const session = c.session as SessionModel;
        c.expected.push(...session.queued);
        session.queued = [];
        const conn = mqtt.connect({ host: '127.0.0.1', port: this.b.port, clientId: id, clean: cmd.clean, protocolVersion: 4, reconnectPeriod: 0 });
        conn.on('message', (topic, payload, packet) => c.received.push(delivery(topic, payload.toString(), packet.qos, packet.retain)));
        const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
          conn.once('connect', resolve);
          conn.once('error', reject);
        });
        c.connection = conn;
        // [MQTT-3.2.2-2] [MQTT-3.2.2-1]
        assert.equal(connack.sessionPresent, present, `${id}: session present`);
        break;
      }
      case 'disconnect': {
        const conn = c.connection;
        if (conn === undefined) return;
        await this.settled();
        const gone = new Promise<void>((resolve) => {
          const onGone = (info: { id: string }): void => {
            if (info.id !== id) return;
            this.b.broker.off('clientDisconnected', onGone);
            resolve();
          };
          this.b.broker.on('clientDisconnected', onGone);
        });
        await conn.endAsync();
        await gone;
        c.connection = undefined;
        // a clean session ends with its connection
        if (c.session?.persistent !== true) c.session = undefined;
        break;
      }
      case 'subscribe': {
        const conn = c.connection;
        if (conn === undefined) return;
        const granted = await conn.subscribeAsync(cmd.filter, { qos: cmd.qos });
        assert.equal(granted[0]?.qos, cmd.qos, `${id}: granted QoS for ${cmd.filter}`);
        (c.session as SessionModel).subscriptions.set(cmd.filter, cmd.qos);
        // [MQTT-3.3.1-6] [MQTT-3.8.4-3] retained messages matching the filter follow, at most at the granted QoS
        for (const [topic, r] of this.retained) {
          if (matches(cmd.filter, topic)) c.expected.push(delivery(topic, r.payload, min(r.qos, cmd.qos), true));
        }
        break;
      }
      case 'unsubscribe': {
        const conn = c.connection;
        if (conn === undefined) return;
        await conn.unsubscribeAsync(cmd.filter);
        (c.session as SessionModel).subscriptions.delete(cmd.filter);
        break;
      }
      case 'publish': {
        const conn = c.connection;
        if (conn === undefined) return;
        const payload = cmd.empty ? '' : `m${++this.sent}`;
        for (const other of this.clients) {
          const session = other.session;
          if (session === undefined) continue;
          let best = -1;
          for (const [filter, granted] of session.subscriptions) if (matches(filter, cmd.topic) && granted > best) best = granted;
          if (best < 0) continue;
          // [MQTT-3.3.5-1] one copy, at the highest QoS granted by the matching subscriptions; RETAIN
          // cleared for an established subscription [MQTT-3.3.1-9]
          const d = delivery(cmd.topic, payload, min(cmd.qos, best as QoS), false);
          if (other.connection !== undefined) other.expected.push(d);
          else if (session.persistent && min(cmd.qos, best as QoS) > 0) session.queued.push(d);
        }
        if (cmd.retain) {
          // [MQTT-3.3.1-10] [MQTT-3.3.1-11] an empty retained payload removes what the topic kept
          if (payload === '') this.retained.delete(cmd.topic);
          else this.retained.set(cmd.topic, { payload, qos: cmd.qos });
        }
        await conn.publishAsync(cmd.topic, payload, { qos: cmd.qos, retain: cmd.retain });
        break;
      }
    }
    await this.settled();
  }

  /** Waits until every client has at least what it is owed, then checks it has no more. */
  async settled(graceMs = 0): Promise<void> {
    const deadline = Date.now() + 3000;
    while (this.clients.some((c) => c.received.length < c.expected.length) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
    }
    if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    this.clients.forEach((c, i) => {
      assert.deepEqual([...c.received].sort(), [...c.expected].sort(), `c${i}: received against owed`);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.connection?.endAsync(true).catch(() => undefined)));
  }
}

describe('model-based: random client sessions against what MQTT 3.1.1 promises', () => {
  test('[MQTT-4.5.0-1] [MQTT-3.1.2-5] [MQTT-3.3.5-1] [MQTT-3.3.1-6] every delivery owed arrives exactly once, and nothing else', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: CLIENTS, maxLength: CLIENTS }), fc.array(command, { minLength: 15, maxLength: 40, size: 'max' }), async (clean, commands) => {
        const b = await startBroker({ sysInterval: 0 });
        const run = new Run(b);
        try {
          // every client starts connected: commands of a client that is away do nothing
          for (let i = 0; i < CLIENTS; i++) await run.step({ kind: 'connect', client: i, clean: clean[i] as boolean });
          for (const cmd of commands) await run.step(cmd);
          await run.settled(100);
        } finally {
          await run.close();
          await b.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
