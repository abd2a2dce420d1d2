import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import type { QoS } from '../../src/codec/packets.js';
import type { ClientInfo } from '../../src/index.js';
import { faultLog, startBroker, type TestBroker } from '../helpers/broker.js';

// Random sequences of what clients do (connect with a clean or a kept session and maybe a will,
// or take an online one over; subscribe with overlapping wildcards and, in 5.0, subscription
// options and shared subscriptions; unsubscribe; publish at every QoS with and without RETAIN; disconnect, or drop the
// connection so that the will goes out, while others publish) and of broker restarts, run against a real broker by MQTT.js clients and against a model of what MQTT 3.1.1
// and 5.0 promise. After every step each client must have
// received exactly what the model says it is owed: no message lost, none duplicated, none where no
// subscription asked for it, each with the QoS and RETAIN flag the model gives it. A shared
// subscription's message is owed to one member of its group, whichever the broker picks: to one
// that is connected when any is, else at most once to one whose session waits offline.

const CLIENTS = 3;
/** MODEL_RUNS_FACTOR=20 multiplies every property's runs, for a soak outside CI */
const RUNS_FACTOR = Math.max(1, Number(process.env.MODEL_RUNS_FACTOR ?? 1) || 1);
const TOPICS = ['a', 'a/b', 'a/c', 'b/b'];
const FILTERS = ['a', 'a/+', 'a/#', '#', '+/b', 'b/b', '+'];
/** 5.0 only: two groups on overlapping filters, and one group name on two filters (two groups) */
const SHARED = ['$share/g/a/+', '$share/g/#', '$share/h/a/#'];

type Version = 4 | 5;
/** `keep`: 5.0 Session Expiry Interval above 0 (3.1.1 keeps a session exactly when it is not clean) */
interface WillSpec {
  topic: string;
  qos: QoS;
  retain: boolean;
}
type Connect = { kind: 'connect'; client: number; clean: boolean; keep: boolean; will?: WillSpec | undefined };
type Command =
  | Connect
  | { kind: 'disconnect'; client: number }
  /** the connection closes without DISCONNECT: its will goes out */
  | { kind: 'drop'; client: number }
  /** nl, rap, rh: 5.0 No Local, Retain As Published, Retain Handling (not sent in 3.1.1) */
  | { kind: 'subscribe'; client: number; filter: string; qos: QoS; nl: boolean; rap: boolean; rh: 0 | 1 | 2 }
  | { kind: 'unsubscribe'; client: number; filter: string }
  /** the broker stops and starts again on the same store; every client is disconnected */
  | { kind: 'restart' }
  | { kind: 'publish'; client: number; topic: string; qos: QoS; retain: boolean; empty: boolean };

const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const qos = fc.constantFrom<QoS>(0, 1, 2);
const will = fc.option(fc.record({ topic: fc.constantFrom(...TOPICS), qos, retain: fc.boolean() }), { nil: undefined, freq: 2 });
const commandOf = (filters: string[]): fc.Arbitrary<Command> => fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('connect' as const), client, clean: fc.boolean(), keep: fc.boolean(), will }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('disconnect' as const), client }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('drop' as const), client }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('subscribe' as const),
      client,
      filter: fc.constantFrom(...filters),
      qos,
      nl: fc.boolean(),
      rap: fc.boolean(),
      rh: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('unsubscribe' as const), client, filter: fc.constantFrom(...filters) }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'restart' as const }), weight: 1 },
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

/** `$share/{group}/{filter}` split, or undefined for an ordinary filter. */
function shareOf(filter: string): { group: string; inner: string } | undefined {
  if (!filter.startsWith('$share/')) return undefined;
  const slash = filter.indexOf('/', 7);
  return { group: filter.slice(7, slash), inner: filter.slice(slash + 1) };
}

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

interface SubscriptionModel {
  qos: QoS;
  nl: boolean;
  rap: boolean;
}

interface SessionModel {
  readonly subscriptions: Map<string, SubscriptionModel>;
  /** messages owed while the client is away (QoS 1 and 2 only) */
  queued: string[];
  persistent: boolean;
}

interface ClientState {
  connection: MqttClient | undefined;
  /** the will of the open connection, with its payload */
  will: (WillSpec & { payload: string }) | undefined;
  session: SessionModel | undefined;
  expected: string[];
  received: string[];
}

/**
 * A message of a shared subscription: owed once to one of `to` (each with the delivery it would
 * get). `must`: a member was connected when it was published, so a connected one gets it now;
 * otherwise one offline member's session may hold it for later.
 */
interface GroupDue {
  to: Array<{ client: ClientState; delivery: string }>;
  must: boolean;
}

const delivery = (topic: string, payload: string, q: QoS, retain: boolean): string => `${topic} "${payload}" qos ${q}${retain ? ' retained' : ''}`;
const min = (a: QoS, b: QoS): QoS => (a < b ? a : b);

/**
 * A client acknowledges a delivery after it has it: a request answered on the same connection shows
 * the broker has read that acknowledgement too. Without this a connection could end with a delivery
 * still unacknowledged in the broker's eyes, and the broker would rightly send it again later.
 */
async function acknowledged(conn: MqttClient): Promise<void> {
  await conn.unsubscribeAsync('model/barrier');
}

class Run {
  private readonly clients: ClientState[] = Array.from({ length: CLIENTS }, () => ({ connection: undefined, will: undefined, session: undefined, expected: [], received: [] }));
  private readonly retained = new Map<string, { payload: string; qos: QoS; from: ClientState }>();
  private readonly groupDues: GroupDue[] = [];
  private sent = 0;

  constructor(
    private b: TestBroker,
    private readonly version: Version,
    /** starts the broker again on the same store, for `restart` */
    private readonly restart?: () => Promise<TestBroker>,
  ) {}

  get broker(): TestBroker {
    return this.b;
  }

  async step(cmd: Command): Promise<void> {
    if (cmd.kind === 'restart') {
      if (this.restart === undefined) return;
      await this.settled();
      await Promise.all(this.clients.map((c) => c.connection && acknowledged(c.connection)));
      await this.b.close();
      for (const c of this.clients) {
        c.connection?.end(true);
        c.connection = undefined;
        // [MQTT-4.1.0-1] (3.1.1) [MQTT-3.1.2-23] (5.0) a kept session and what it is owed outlive the
        // broker; the others end here
        if (c.session?.persistent !== true) c.session = undefined;
      }
      this.b = await this.restart();
      return;
    }
    const c = this.clients[cmd.client] as ClientState;
    const id = `c${cmd.client}`;
    switch (cmd.kind) {
      case 'connect': {
        const old = c.connection;
        if (old !== undefined) {
          // [MQTT-3.1.4-2] (3.1.1) [MQTT-3.1.4-3] (5.0) the same client id again: the broker closes the connection it had, and a
          // session that was to end with that connection ends with it
          await this.settled();
          await acknowledged(old);
          const closed = new Promise<void>((resolve) => old.once('close', () => resolve()));
          this.connectionLost(c);
          await this.connect(c, id, cmd);
          await closed;
          old.end(true);
          break;
        }
        await this.connect(c, id, cmd);
        break;
      }
      case 'disconnect': {
        const conn = c.connection;
        if (conn === undefined) return;
        await this.settled();
        const gone = this.brokerSaw('clientDisconnected', id);
        await conn.endAsync();
        await gone;
        c.connection = undefined;
        // [MQTT-3.1.2-10] (3.1.1) DISCONNECT discards the will
        c.will = undefined;
        // a clean session ends with its connection
        if (c.session?.persistent !== true) c.session = undefined;
        break;
      }
      case 'drop': {
        const conn = c.connection;
        if (conn === undefined) return;
        await this.settled();
        await acknowledged(conn);
        const gone = this.brokerSaw('clientDisconnected', id);
        conn.stream.destroy();
        await gone;
        conn.end(true);
        this.connectionLost(c);
        break;
      }
      case 'subscribe': {
        const conn = c.connection;
        if (conn === undefined) return;
        const v5 = this.version === 5;
        const shared = shareOf(cmd.filter) !== undefined;
        // [MQTT-3.8.3-4] (5.0) No Local on a shared subscription is a protocol error: never sent
        const nl = cmd.nl && !shared;
        const granted = await conn.subscribeAsync(cmd.filter, v5 ? { qos: cmd.qos, nl, rap: cmd.rap, rh: cmd.rh } : { qos: cmd.qos });
        assert.equal(granted[0]?.qos, cmd.qos, `${id}: granted QoS for ${cmd.filter}`);
        const subscriptions = (c.session as SessionModel).subscriptions;
        const existed = subscriptions.has(cmd.filter);
        subscriptions.set(cmd.filter, v5 ? { qos: cmd.qos, nl, rap: cmd.rap } : { qos: cmd.qos, nl: false, rap: false });
        // MQTT 5.0 section 4.8.2: retained messages are not sent for a shared subscription
        if (shared) break;
        // [MQTT-3.3.1-6] (3.1.1) [MQTT-3.8.4-3] retained messages matching the filter follow, at most at
        // the granted QoS; [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] (5.0) as Retain Handling says
        const sendRetained = !v5 || cmd.rh === 0 || (cmd.rh === 1 && !existed);
        for (const [topic, r] of this.retained) {
          // No Local holds back the client's own retained messages too: sending one is forwarding it
          if (v5 && cmd.nl && r.from === c) continue;
          if (sendRetained && matches(cmd.filter, topic)) c.expected.push(delivery(topic, r.payload, min(r.qos, cmd.qos), true));
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
        this.route(c, cmd.topic, payload, cmd.qos, cmd.retain);
        // a QoS 0 publish is done on the client's side once written: wait for the broker to take it,
        // or a later step on another connection could overtake it
        const taken = this.brokerSaw('messagePublished', id);
        await conn.publishAsync(cmd.topic, payload, { qos: cmd.qos, retain: cmd.retain });
        await taken;
        break;
      }
    }
    await this.settled();
  }

  /** What a message published by `from` owes every session, and what it does to the retained store. */
  private route(from: ClientState, topic: string, payload: string, q: QoS, retain: boolean): void {
    for (const other of this.clients) {
      const session = other.session;
      if (session === undefined) continue;
      let best = -1;
      let retainAsPublished = false;
      for (const [filter, sub] of session.subscriptions) {
        // [MQTT-3.8.3-3] (5.0) No Local: not back to the publisher's own client id
        if (shareOf(filter) !== undefined || !matches(filter, topic) || (sub.nl && other === from)) continue;
        if (sub.qos > best) best = sub.qos;
        if (sub.rap) retainAsPublished = true;
      }
      if (best < 0) continue;
      // [MQTT-3.3.5-1] (3.1.1) [MQTT-3.3.4-2] (5.0) one copy, at the highest QoS granted by the
      // matching subscriptions; RETAIN cleared for an established subscription ([MQTT-3.3.1-9]
      // (3.1.1)), kept when one asked for Retain As Published ([MQTT-3.3.1-12] [MQTT-3.3.1-13] (5.0))
      const d = delivery(topic, payload, min(q, best as QoS), retain && retainAsPublished);
      if (other.connection !== undefined) other.expected.push(d);
      else if (session.persistent && min(q, best as QoS) > 0) session.queued.push(d);
    }
    this.routeShared(from, topic, payload, q, retain);
    if (retain) {
      // [MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1) an empty retained payload removes what the topic kept
      if (payload === '') this.retained.delete(topic);
      else this.retained.set(topic, { payload, qos: q, from });
    }
  }

  /** MQTT 5.0 section 4.8.2: each matching group owes the message to one of its members. */
  private routeShared(from: ClientState, topic: string, payload: string, q: QoS, retain: boolean): void {
    for (const filter of SHARED) {
      const share = shareOf(filter) as { group: string; inner: string };
      if (!matches(share.inner, topic)) continue;
      const members = this.clients.filter((c) => c.session?.subscriptions.has(filter) === true);
      const online = members.filter((c) => c.connection !== undefined);
      // an offline member's session keeps only QoS 1 and 2 for later
      const to = (online.length > 0 ? online : members.filter((c) => c.session?.persistent === true))
        .map((c) => {
          const sub = (c.session as SessionModel).subscriptions.get(filter) as SubscriptionModel;
          return { client: c, qos: min(q, sub.qos), delivery: delivery(topic, payload, min(q, sub.qos), retain && sub.rap) };
        })
        .filter((d) => online.length > 0 || d.qos > 0);
      if (to.length > 0) this.groupDues.push({ to, must: online.length > 0 });
    }
  }

  /**
   * The connection closed without DISCONNECT (dropped, or taken over): the session is left as it
   * would be after a DISCONNECT, then the will goes out ([MQTT-3.1.2-8] (3.1.1)), so a will that
   * matches the client's own kept subscriptions waits in its session ([MQTT-3.1.2-5] (3.1.1)).
   */
  private connectionLost(c: ClientState): void {
    c.connection = undefined;
    if (c.session?.persistent !== true) c.session = undefined;
    const w = c.will;
    c.will = undefined;
    if (w !== undefined) this.route(c, w.topic, w.payload, w.qos, w.retain);
  }

  private async connect(c: ClientState, id: string, cmd: Connect): Promise<void> {
    const v5 = this.version === 5;
    const keep = v5 ? cmd.keep : !cmd.clean;
    // [MQTT-3.1.2-6] (3.1.1) [MQTT-3.1.2-4] (5.0) a clean session starts empty; [MQTT-3.1.2-4] (3.1.1)
    // [MQTT-3.1.2-5] (5.0) otherwise the stored one resumes
    const present = !cmd.clean && c.session !== undefined;
    if (!present) c.session = { subscriptions: new Map(), queued: [], persistent: keep };
    const session = c.session as SessionModel;
    // 5.0: the expiry of this CONNECT is the one that applies when the connection ends
    session.persistent = keep;
    c.expected.push(...session.queued);
    session.queued = [];
    // wills go out as the broker shuts down, in an order the model does not follow: none with restarts
    const spec = this.restart === undefined ? cmd.will : undefined;
    c.will = spec === undefined ? undefined : { ...spec, payload: `w${++this.sent}` };
    const conn = mqtt.connect({
      ...(c.will === undefined ? {} : { will: { topic: c.will.topic, payload: Buffer.from(c.will.payload), qos: c.will.qos, retain: c.will.retain } }),
      host: '127.0.0.1',
      port: this.b.port,
      clientId: id,
      clean: cmd.clean,
      protocolVersion: this.version,
      reconnectPeriod: 0,
      ...(v5 ? { properties: { sessionExpiryInterval: keep ? 3600 : 0 } } : {}),
    });
    conn.on('message', (topic, payload, packet) => c.received.push(delivery(topic, payload.toString(), packet.qos, packet.retain)));
    const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
      conn.once('connect', resolve);
      conn.once('error', reject);
    });
    c.connection = conn;
    // [MQTT-3.2.2-1] [MQTT-3.2.2-2] (3.1.1) [MQTT-3.2.2-2] [MQTT-3.2.2-3] (5.0)
    assert.equal(connack.sessionPresent, present, `${id}: session present`);
  }

  /** Resolves when the broker emits `event` for client `id` (it routes a message right after saying so). */
  private brokerSaw(event: 'clientDisconnected' | 'messagePublished', id: string): Promise<void> {
    return new Promise((resolve) => {
      const listener = (...args: unknown[]): void => {
        const client = (event === 'clientDisconnected' ? args[0] : args[1]) as ClientInfo | undefined;
        if (client?.id !== id) return;
        this.b.broker.off(event, listener);
        resolve();
      };
      this.b.broker.on(event, listener);
    });
  }

  /**
   * Waits until every client has at least what it is owed, then checks it has no more: what a client
   * received beyond its own dues must each be a shared-subscription message that no other member took.
   */
  async settled(graceMs = 0): Promise<void> {
    const deadline = Date.now() + 3000;
    while (this.shortfall() !== undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
    }
    if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    const wrong = this.shortfall();
    assert.equal(wrong, undefined, wrong);
  }

  /** What is still wrong with what the clients received, or undefined when nothing is. */
  private shortfall(): string | undefined {
    const extras: Array<{ client: ClientState; delivery: string }> = [];
    for (const [i, c] of this.clients.entries()) {
      const rest = [...c.received];
      for (const e of c.expected) {
        const k = rest.indexOf(e);
        if (k < 0) return `c${i}: owed ${e}, received ${JSON.stringify(c.received)}`;
        rest.splice(k, 1);
      }
      for (const x of rest) extras.push({ client: c, delivery: x });
    }
    // Match group dues to the extra deliveries (augmenting paths): the dues owed to a connected
    // member first, so that any matching that serves all of them is found.
    const taker = new Array<number>(extras.length).fill(-1);
    const dues = this.groupDues;
    const fits = (d: GroupDue, x: { client: ClientState; delivery: string }): boolean => d.to.some((t) => t.client === x.client && t.delivery === x.delivery);
    const augment = (di: number, seen: boolean[]): boolean => {
      for (let xi = 0; xi < extras.length; xi++) {
        if (seen[xi] || !fits(dues[di] as GroupDue, extras[xi] as { client: ClientState; delivery: string })) continue;
        seen[xi] = true;
        if (taker[xi] === -1 || augment(taker[xi] as number, seen)) {
          taker[xi] = di;
          return true;
        }
      }
      return false;
    };
    const order = [...dues.keys()].sort((a, b) => Number((dues[b] as GroupDue).must) - Number((dues[a] as GroupDue).must));
    for (const di of order) {
      const served = augment(di, new Array<boolean>(extras.length).fill(false));
      if (!served && (dues[di] as GroupDue).must) return `no connected member of a shared group received ${(dues[di] as GroupDue).to[0]?.delivery}`;
    }
    const stray = taker.indexOf(-1);
    if (stray >= 0) {
      const x = extras[stray] as { client: ClientState; delivery: string };
      return `c${this.clients.indexOf(x.client)}: received ${x.delivery}, which nothing owed it (or another member of its group had it)`;
    }
    return undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.connection?.endAsync(true).catch(() => undefined)));
  }
}

async function check(version: Version, restarts: boolean, numRuns: number): Promise<void> {
  // shared filters weighted up, so that groups with members both connected and away come often
  const command = commandOf(version === 5 ? [...FILTERS, ...SHARED, ...SHARED, ...SHARED] : FILTERS);
  const start = fc.array(fc.record({ clean: fc.boolean(), keep: fc.boolean() }), { minLength: CLIENTS, maxLength: CLIENTS });
  await fc.assert(
    fc.asyncProperty(start, fc.array(command, { minLength: 15, maxLength: 40, size: 'max' }), async (first, commands) => {
      const dataDir = restarts ? mkdtempSync(join(tmpdir(), 'midge-model-')) : undefined;
      const { logger, faults } = faultLog();
      const open = (): Promise<TestBroker> => startBroker(dataDir === undefined ? { sysInterval: 0, logger } : { sysInterval: 0, logger, persistence: 'lmdb', dataDir });
      const run = new Run(await open(), version, dataDir === undefined ? undefined : open);
      try {
        // every client starts connected: commands of a client that is away do nothing
        for (let i = 0; i < CLIENTS; i++) await run.step({ kind: 'connect', client: i, ...(first[i] as { clean: boolean; keep: boolean }) });
        for (const cmd of commands) await run.step(cmd);
        await run.settled(100);
        // a fault the broker logged and went on from would otherwise pass as a dropped client
        assert.deepEqual(faults, []);
      } finally {
        await run.close();
        await run.broker.close();
        if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
      }
    }),
    { numRuns: numRuns * RUNS_FACTOR },
  );
}

describe('model-based: random client sessions against what MQTT promises', () => {
  test('[MQTT-4.5.0-1] [MQTT-3.1.2-5] [MQTT-3.3.5-1] [MQTT-3.3.1-6] (3.1.1) every delivery owed arrives exactly once, and nothing else', () => check(4, false, 40));
  test('[MQTT-4.5.0-1] [MQTT-3.1.2-23] [MQTT-3.3.4-2] [MQTT-3.8.3-3] [MQTT-3.3.1-10] [MQTT-3.3.1-13] (5.0) every delivery owed arrives exactly once, with its subscriptions\' options; a shared subscription\'s to one member', () =>
    check(5, false, 40));
  test('[MQTT-4.1.0-1] (3.1.1) kept sessions, what they are owed and retained messages survive broker restarts (lmdb)', () => check(4, true, 30));
  test('[MQTT-3.1.2-23] (5.0) kept sessions, their shared subscriptions, what they are owed and retained messages survive broker restarts (lmdb)', () => check(5, true, 30));
});
