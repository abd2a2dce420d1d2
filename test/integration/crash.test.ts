import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { RawClient } from '../helpers/raw-client.js';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import { expectPacket, rawConnect, rawSubscribe, rawSubscribeEarly, takeAckingUntilQuiet, type Loose } from '../helpers/raw-session.js';

const ROUNDS = 4;

/** Starts the broker as a child process on `dataDir`; resolves with its port. */
function startBroker(dataDir: string): ReturnType<typeof spawnMidge> {
  // queues deep enough for the whole run: a full queue would drop messages by design
  const config = join(dataDir, '..', `${dataDir.split('/').pop() ?? 'x'}.yaml`);
  writeFileSync(config, 'limits:\n  maxQueuedMessages: 1000000\n');
  return spawnMidge(['--config', config, '--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
}

/**
 * Publishes numbered QoS 1 and QoS 2 messages with a window of unacknowledged ones until the
 * connection dies; returns the numbers the broker acknowledged (PUBACK, or PUBREC for QoS 2).
 */
async function publishUntilKilled(raw: RawClient, from: number, acked: Set<number>): Promise<number> {
  const window = 16;
  const outstanding = new Map<number, number>();
  let next = from;
  let id = 0;
  try {
    for (;;) {
      while (outstanding.size < window) {
        id = (id % 60000) + 1;
        const qos = next % 2 === 0 ? 1 : 2;
        raw.sendPacket({ cmd: 'publish', topic: `load/q${qos}`, payload: Buffer.from(String(next)), qos, messageId: id }, 4);
        outstanding.set(id, next++);
      }
      const p = (await raw.next(5000)) as Loose;
      const n = outstanding.get(p.messageId as number);
      if (p.cmd === 'puback' && n !== undefined) {
        acked.add(n);
        outstanding.delete(p.messageId as number);
      } else if (p.cmd === 'pubrec' && n !== undefined) {
        acked.add(n);
        raw.sendPacket({ cmd: 'pubrel', messageId: p.messageId }, 4);
      } else if (p.cmd === 'pubcomp') {
        outstanding.delete(p.messageId as number);
      }
    }
  } catch {
    return next; // the broker was killed
  }
}

/** Connects a persistent subscriber and takes everything it is sent, acknowledging it. */
async function drain(port: number, clientId: string): Promise<number[]> {
  const { raw, connack } = await rawConnect(port, 4, { clientId, clean: false });
  assert.equal(connack.sessionPresent, true, `${clientId} kept its session`);
  const got = (await takeAckingUntilQuiet(raw, 4)).map((p) => Number(p.payload?.toString()));
  raw.close();
  return got;
}

describe('crash safety', () => {
  after(killMidges);

  test(`a broker killed ${ROUNDS} times under QoS 1/2 load loses no acknowledged message and duplicates no QoS 2 one`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-'));
    let b = await startBroker(dataDir);
    for (const [clientId, qos] of [['sub-q1', 1], ['sub-q2', 2]] as const) {
      const { raw } = await rawConnect(b.port, 4, { clientId, clean: false });
      await rawSubscribe(raw, 4, 1, [{ topic: 'load/#', qos }]);
      raw.close();
    }
    const setup = await rawConnect(b.port, 4, { clientId: 'retainer' });
    setup.raw.sendPacket({ cmd: 'publish', topic: 'state/kept', payload: Buffer.from('retained'), qos: 1, messageId: 1, retain: true }, 4);
    await expectPacket(setup.raw, 'puback');
    setup.raw.close();

    const acked = new Set<number>();
    let next = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const pub = await rawConnect(b.port, 4, { clientId: `publisher-${round}` });
      const killer = new Promise<void>((resolve) => setTimeout(() => {
        b.child.kill('SIGKILL');
        resolve();
      }, 150 + Math.floor(Math.random() * 250)));
      next = await publishUntilKilled(pub.raw, next, acked);
      await killer;
      await new Promise<void>((resolve) => (b.child.exitCode !== null || b.child.signalCode !== null ? resolve() : b.child.once('exit', () => resolve())));
      b = await startBroker(dataDir);
    }
    assert.ok(acked.size > 50, `only ${acked.size} messages were acknowledged: the load was too light to mean much`);

    const q1 = await drain(b.port, 'sub-q1');
    const q2 = await drain(b.port, 'sub-q2');
    const missing1 = [...acked].filter((n) => !q1.includes(n));
    const missing2 = [...acked].filter((n) => !q2.includes(n));
    assert.deepEqual(missing1, [], 'every acknowledged message reached the QoS 1 subscriber');
    assert.deepEqual(missing2, [], 'every acknowledged message reached the QoS 2 subscriber');
    const q2QoS2 = q2.filter((n) => n % 2 === 1);
    assert.equal(new Set(q2QoS2).size, q2QoS2.length, 'no QoS 2 message twice to the QoS 2 subscriber');

    const check = await rawConnect(b.port, 4, { clientId: 'checker' });
    await rawSubscribe(check.raw, 4, 1, [{ topic: 'state/#', qos: 0 }]);
    assert.equal((await expectPacket(check.raw, 'publish')).payload?.toString(), 'retained');
    check.raw.close();
    b.child.kill('SIGTERM');
  });

  test('[MQTT-4.1.0-1] retained messages a persistent session was owed after a SUBSCRIBE are still owed after the broker is killed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-owed-'));
    let b = await startBroker(dataDir);
    const COUNT = 2500;
    const pub = await rawConnect(b.port, 4, { clientId: 'owed-publisher' });
    for (let i = 0; i < COUNT; i += 100) {
      for (let j = i; j < i + 100; j++) pub.raw.sendPacket({ cmd: 'publish', topic: `owed/${j}`, payload: Buffer.from(String(j)), qos: 1, messageId: j + 1, retain: true }, 4);
      for (let j = i; j < i + 100; j++) await expectPacket(pub.raw, 'puback', 10_000);
    }
    pub.raw.close();

    // more are owed than are journaled in one go: the rest must reach the store in the next turns
    const sub = await rawConnect(b.port, 4, { clientId: 'owed-sub', clean: false });
    // retained messages may come before the SUBACK, which waits for the commit
    const { before } = await rawSubscribeEarly(sub.raw, 4, 1, [{ topic: 'owed/#', qos: 1 }]);
    if (!before.some((p) => p.cmd === 'publish')) await expectPacket(sub.raw, 'publish');
    await new Promise((r) => setTimeout(r, 500));
    b.child.kill('SIGKILL');
    await new Promise<void>((resolve) => (b.child.exitCode !== null || b.child.signalCode !== null ? resolve() : b.child.once('exit', () => resolve())));
    sub.raw.close();

    b = await startBroker(dataDir);
    const got = await drain(b.port, 'owed-sub');
    assert.equal(new Set(got).size, COUNT, `${new Set(got).size} of ${COUNT} arrived`);
    b.child.kill('SIGTERM');
  });
});
