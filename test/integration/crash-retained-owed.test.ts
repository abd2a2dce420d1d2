import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import type { RawClient } from '../helpers/raw-client.js';
import { pino } from 'pino';
import { createBroker, type Broker } from '../../src/index.js';
import type { Delivery } from '../../src/session/message.js';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import { CommitFaultStore } from '../helpers/faulty-store.js';
import { expectPacket, rawConnect, takeAckingUntilQuiet, type Loose } from '../helpers/raw-session.js';

/** Several of the slices owed retained messages are journaled in (1,000 a turn). */
const COUNT = 20_000;

function startBroker(dataDir: string): ReturnType<typeof spawnMidge> {
  const config = join(dataDir, '..', `${dataDir.split('/').pop() ?? 'x'}.yaml`);
  writeFileSync(config, 'limits:\n  maxInflight: 10\n');
  return spawnMidge(['--config', config, '--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
}

async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
}

/** A data dir holding COUNT retained QoS 1 messages `owed/0`.., made once: each test starts from a copy. */
async function seedRetained(): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-owed-seed-'));
  const broker = await startBroker(dataDir);
  const pub = await rawConnect(broker.port, 4, { clientId: 'owed-publisher' });
  for (let i = 0; i < COUNT; i += 250) {
    for (let j = i; j < i + 250; j++) pub.raw.sendPacket({ cmd: 'publish', topic: `owed/${j}`, payload: Buffer.from(String(j)), qos: 1, messageId: j + 1, retain: true }, 4);
    for (let j = i; j < i + 250; j++) await expectPacket(pub.raw, 'puback', 10_000);
  }
  pub.raw.close();
  broker.child.kill('SIGTERM');
  await new Promise<void>((resolve) => (broker.child.exitCode !== null ? resolve() : broker.child.once('exit', () => resolve())));
  return dataDir;
}

let seeded: Promise<string> | undefined;

/** A broker on a copy of the seeded data dir. */
async function brokerWithRetained(): Promise<{ dataDir: string; broker: Awaited<ReturnType<typeof spawnMidge>> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-owed-'));
  cpSync(await (seeded ??= seedRetained()), dataDir, { recursive: true });
  return { dataDir, broker: await startBroker(dataDir) };
}

/** Packets up to the one `until` accepts, which is returned last; none is acknowledged. */
async function readUntil(raw: RawClient, until: (p: Loose) => boolean): Promise<Loose[]> {
  const seen: Loose[] = [];
  for (;;) {
    const p = (await raw.next(20_000)) as Loose;
    seen.push(p);
    if (until(p)) return seen;
  }
}

/** Takes everything a resumed session is sent, acknowledging it, until it goes quiet. */
async function drain(raw: RawClient, version: 4 | 5): Promise<string[]> {
  const got = (await takeAckingUntilQuiet(raw, version)).map((p) => p.topic ?? '');
  raw.close();
  return got;
}

const persistent = (version: 4 | 5, clientId: string): Parameters<typeof rawConnect>[2] =>
  version === 5 ? { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } } : { clientId, clean: false };

const topicsOf = (packets: Loose[]): string[] => packets.filter((p) => p.cmd === 'publish').map((p) => p.topic ?? '');

describe('retained messages owed to a persistent session, and a broker killed once it sent the SUBACK', () => {
  after(killMidges);
  before(async () => {
    await (seeded ??= seedRetained());
  });

  for (const [version, id] of [
    [4, '[MQTT-3.3.1-6]'],
    [5, '[MQTT-3.3.1-9]'],
  ] as const) {
    test(`${id} (${version === 5 ? '5.0' : '3.1.1'}) a broker killed the moment it sends the SUBACK still sends, after its restart, every retained message the subscription matched`, async () => {
      let { dataDir, broker } = await brokerWithRetained();
      const clientId = `owed-v${version}`;
      const { raw } = await rawConnect(broker.port, version, persistent(version, clientId));
      raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, version);
      const first = await readUntil(raw, (p) => p.cmd === 'suback');
      await kill(broker.child);
      raw.close();

      broker = await startBroker(dataDir);
      const back = await rawConnect(broker.port, version, persistent(version, clientId));
      assert.equal(back.connack.sessionPresent, true, 'the session, and the subscription the SUBACK granted, are kept');
      const got = new Set([...topicsOf(first), ...(await drain(back.raw, version))]);
      assert.equal(got.size, COUNT, `${got.size} of the ${COUNT} retained messages arrived`);
      await kill(broker.child);
    });
  }

  test('[MQTT-3.8.4-1] a persistent session owed a few retained messages gets its SUBACK without waiting for another owed many to be stored', async () => {
    const { broker } = await brokerWithRetained();
    // more than one slice for the other (3,000), fewer than this one's (20,000)
    const pub = await rawConnect(broker.port, 4, { clientId: 'few-publisher' });
    for (let i = 0; i < 3000; i += 250) {
      for (let j = i; j < i + 250; j++) pub.raw.sendPacket({ cmd: 'publish', topic: `few/${j}`, payload: Buffer.from(String(j)), qos: 1, messageId: j + 1, retain: true }, 4);
      for (let j = i; j < i + 250; j++) await expectPacket(pub.raw, 'puback', 10_000);
    }
    pub.raw.close();
    const many = await rawConnect(broker.port, 5, persistent(5, 'owed-many'));
    many.raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 5);
    // its messages are being stored: what it owes is in the slices before the other's
    await readUntil(many.raw, (p) => p.cmd === 'publish');
    const few = await rawConnect(broker.port, 5, persistent(5, 'owed-few'));
    few.raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'few/#', qos: 1 }] }, 5);
    const order: string[] = [];
    await Promise.all([
      readUntil(many.raw, (p) => p.cmd === 'suback').then(() => order.push('many')),
      readUntil(few.raw, (p) => p.cmd === 'suback').then(() => order.push('few')),
    ]);
    // each session owing has an even share of every turn's slice
    assert.deepEqual(order, ['few', 'many']);
    many.raw.close();
    few.raw.close();
    await kill(broker.child);
  });

  test('[MQTT-3.8.4-3] (5.0) a second SUBSCRIBE to the same filter owes every retained message again: a broker killed at its SUBACK still sends them all', async () => {
    let { dataDir, broker } = await brokerWithRetained();
    const { raw } = await rawConnect(broker.port, 5, persistent(5, 'owed-twice'));
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 5);
    raw.sendPacket({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 5);
    const seen: Loose[] = [];
    const subacks = new Set<number>();
    // the SUBACKs may come in either order: the second one replaced what the first owed
    seen.push(
      ...(await readUntil(raw, (p) => {
        if (p.cmd === 'suback') subacks.add(p.messageId as number);
        return subacks.size === 2;
      })),
    );
    await kill(broker.child);
    raw.close();

    broker = await startBroker(dataDir);
    const back = await rawConnect(broker.port, 5, persistent(5, 'owed-twice'));
    assert.equal(back.connack.sessionPresent, true);
    const got = new Set([...topicsOf(seen), ...(await drain(back.raw, 5))]);
    assert.equal(got.size, COUNT, `${got.size} of the ${COUNT} retained messages arrived`);
    await kill(broker.child);
  });

  test('[MQTT-3.10.4-2] (5.0) an UNSUBSCRIBE sent while the retained messages owed are still being stored is answered with both acknowledgements, and after a crash nothing more is sent for the filter', async () => {
    let { dataDir, broker } = await brokerWithRetained();
    const { raw } = await rawConnect(broker.port, 5, persistent(5, 'owed-unsub'));
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 5);
    raw.sendPacket({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['owed/#'] }, 5);
    const acks = new Set<string>();
    const seen = await readUntil(raw, (p) => {
      if (p.cmd === 'suback' || p.cmd === 'unsuback') acks.add(p.cmd);
      return acks.size === 2;
    });
    await kill(broker.child);
    raw.close();

    broker = await startBroker(dataDir);
    const back = await rawConnect(broker.port, 5, persistent(5, 'owed-unsub'));
    assert.equal(back.connack.sessionPresent, true);
    const after = await drain(back.raw, 5);
    // [MQTT-3.10.4-3] only those already in flight (sent before the UNSUBSCRIBE) are completed
    const inflight = topicsOf(seen);
    assert.ok(inflight.length <= 10, `${inflight.length} were sent before the UNSUBSCRIBE`);
    assert.deepEqual(
      after.filter((t) => !inflight.includes(t)),
      [],
      'nothing owed for the filter is sent once it is unsubscribed',
    );
    await kill(broker.child);
  });

  test('[MQTT-3.1.2-6] (3.1.1) a clean session taking over while the retained messages owed are still being stored ends the session with them: none comes back after a crash', async () => {
    let { dataDir, broker } = await brokerWithRetained();
    const { raw } = await rawConnect(broker.port, 4, persistent(4, 'owed-clean'));
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owed/#', qos: 1 }] }, 4);
    await readUntil(raw, (p) => p.cmd === 'publish');
    // a takeover with clean session 1 discards the session the SUBSCRIBE was stored in
    const fresh = await rawConnect(broker.port, 4, { clientId: 'owed-clean', clean: true });
    assert.equal(fresh.connack.sessionPresent, false);
    assert.ok(await raw.waitClosed(), 'the connection taken over is closed');
    fresh.raw.close();
    // a clean session leaves nothing in the store to wait for: the old one's rows are gone
    await new Promise((r) => setTimeout(r, 300));
    await kill(broker.child);

    broker = await startBroker(dataDir);
    const back = await rawConnect(broker.port, 4, persistent(4, 'owed-clean'));
    assert.equal(back.connack.sessionPresent, false, 'no session came back');
    assert.deepEqual(await drain(back.raw, 4), [], 'nothing owed came back with it');
    await kill(broker.child);
  });
});

/** A store on "disk" that refuses to queue any message past the first `accepted`. */
class QueueRefusingStore extends CommitFaultStore {
  queued = 0;
  constructor(private readonly accepted: number) {
    super();
  }

  override messageQueued(clientId: string, delivery: Delivery): void {
    if (++this.queued > this.accepted) throw new Error('store fault: messageQueued');
    super.messageQueued(clientId, delivery);
  }
}

describe('retained messages owed that the store refuses', () => {
  const brokers: Broker[] = [];
  after(async () => {
    for (const b of brokers) await b.close().catch(() => undefined);
  });

  test('[MQTT-3.8.4-1] (5.0) a SUBSCRIBE whose owed retained messages the store refuses in a later turn gets no SUBACK: its client is disconnected (0x83)', async () => {
    // the first 1,000 are journaled with the subscription, the refusal comes in a later slice
    const store = new QueueRefusingStore(1500);
    const broker = await createBroker({ store, sysInterval: 0, logger: pino({ level: 'silent' }) });
    brokers.push(broker);
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < 3000; i++) await broker.publish({ topic: `refused/${i}`, payload: String(i), qos: 1, retain: true });
    const { raw } = await rawConnect(port, 5, { clientId: 'refused-sub', clean: false, properties: { sessionExpiryInterval: 3600 } });
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'refused/#', qos: 1 }] }, 5);
    const seen = await readUntil(raw, (p) => p.cmd === 'suback' || p.cmd === 'disconnect');
    const last = seen[seen.length - 1] as Loose;
    assert.equal(last.cmd, 'disconnect', 'no SUBACK for what the store did not take');
    assert.equal(last.reasonCode, 0x83);
  });
});
