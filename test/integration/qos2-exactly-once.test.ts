import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { createBroker, type Broker } from '../../src/index.js';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import { CommitFaultStore } from '../helpers/faulty-store.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';

/**
 * Exactly once for QoS 2 across a crash: what a client is sent must already be what the broker
 * would find on disk after a restart. PUBREL leaves once the PUBREL state is committed, a QoS 2
 * message of a persistent publisher reaches its subscribers once it (with its packet id) is, and a
 * QoS 2 PUBLISH to a persistent session leaves once its inflight entry (packet id -> message) is.
 */

async function start(): Promise<{ broker: Broker; port: number; held: CommitFaultStore }> {
  // taken for a store on disk; its commits can be held back
  const held = new CommitFaultStore();
  const broker = await createBroker({ store: held, sysInterval: 0 });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  return { broker, port, held };
}

const publishes = (packets: Loose[]): string[] => packets.filter((p) => p.cmd === 'publish').map((p) => p.payload?.toString() ?? '');

describe('QoS 2 and the commit (a store on disk whose commits are held)', () => {
  const brokers: Broker[] = [];
  after(async () => {
    for (const b of brokers) await b.close();
  });

  test('[MQTT-4.3.3-6] (5.0) a persistent session is sent PUBREL only once its PUBREL state is committed; a session that is not kept at once', async () => {
    const b = await start();
    brokers.push(b.broker);
    const keeper = await rawConnect(b.port, 5, { clientId: 'rel-keeper', clean: false, properties: { sessionExpiryInterval: 3600 } });
    await rawSubscribe(keeper.raw, 5, 1, [{ topic: 'rel/#', qos: 2 }]);
    const passer = await rawConnect(b.port, 4, { clientId: 'rel-passer', clean: true });
    await rawSubscribe(passer.raw, 4, 1, [{ topic: 'rel/#', qos: 2 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'rel-pub', clean: true });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'rel/a', payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false }, 4);
    assert.equal((await expectPacket(pub.raw, 'pubrec')).messageId, 1);
    const toKeeper = await expectPacket(keeper.raw, 'publish');
    const toPasser = await expectPacket(passer.raw, 'publish');

    b.held.hold();
    const commitsBefore = b.held.commits;
    keeper.raw.sendPacket({ cmd: 'pubrec', messageId: toKeeper.messageId }, 5);
    passer.raw.sendPacket({ cmd: 'pubrec', messageId: toPasser.messageId }, 4);
    assert.equal((await expectPacket(passer.raw, 'pubrel', 1000)).messageId, toPasser.messageId, 'nothing of a clean session is kept: PUBREL at once');
    assert.deepEqual(await drainFor(keeper.raw, 250), [], 'no PUBREL while its state is not on disk');
    assert.ok(b.held.commits > commitsBefore, 'the PUBREL state is committed');

    b.held.release();
    assert.equal((await expectPacket(keeper.raw, 'pubrel')).messageId, toKeeper.messageId);
    keeper.raw.sendPacket({ cmd: 'pubcomp', messageId: toKeeper.messageId }, 5);
    passer.raw.sendPacket({ cmd: 'pubcomp', messageId: toPasser.messageId }, 4);
    for (const c of [keeper, passer, pub]) c.raw.close();
  });

  test('QoS 0 behind a held QoS 2 PUBLISH waits in the session queue, under its limits, once 64 KB are held: what the commit holds up is bounded', async () => {
    const held = new CommitFaultStore();
    const broker = await createBroker({ store: held, sysInterval: 0, limits: { maxQueuedMessages: 10 } });
    brokers.push(broker);
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const sub = await rawConnect(port, 4, { clientId: 'flood-sub', clean: false });
    await rawSubscribe(sub.raw, 4, 1, [{ topic: 'flood/#', qos: 2 }]);
    const pub = await rawConnect(port, 4, { clientId: 'flood-pub', clean: true });
    await new Promise((r) => setTimeout(r, 50));

    held.hold();
    // a QoS 2 PUBLISH to a persistent session waits for its inflight entry's commit; 200 KB of QoS 0 follow
    pub.raw.sendPacket({ cmd: 'publish', topic: 'flood/a', payload: Buffer.from('first'), qos: 2, messageId: 1, retain: false, dup: false }, 4);
    const filler = Buffer.alloc(1000, 0x61);
    for (let i = 0; i < 200; i++) {
      pub.raw.sendPacket({ cmd: 'publish', topic: 'flood/a', payload: Buffer.concat([Buffer.from(`${String(i).padStart(3, '0')}:`), filler]), qos: 0, retain: false, dup: false }, 4);
    }
    assert.deepEqual(await drainFor(sub.raw, 300), [], 'all of it waits behind the commit');
    held.release();
    const got = publishes(await drainFor(sub.raw, 500));
    assert.equal(got[0], 'first');
    const seq = got.slice(1).map((p) => Number(p.slice(0, 3)));
    assert.ok(seq.length < 120, `${seq.length} QoS 0 messages came: held without bound`);
    assert.ok(seq.length >= 60, `${seq.length} QoS 0 messages came: those held before 64 KB and the queue's 10`);
    assert.deepEqual(seq, [...seq].sort((a, b) => a - b), 'in the order published');
    assert.ok((broker.stats.droppedByReason.queueFull ?? 0) > 0, 'the queue\'s limit dropped the rest');
    sub.raw.close();
    pub.raw.close();
  });

  test('[MQTT-4.3.3-10] (5.0) a QoS 2 PUBLISH of a persistent session reaches the connected subscribers only once it is committed, its QoS 0/1 ones at once; [MQTT-4.6.0-5] what follows it on the topic stays behind it', async () => {
    const b = await start();
    brokers.push(b.broker);
    // one subscriber at QoS 2, one (persistent, 5.0) at QoS 1: the message reaches the latter downgraded
    const plain = await rawConnect(b.port, 4, { clientId: 'held-plain', clean: true });
    await rawSubscribe(plain.raw, 4, 1, [{ topic: 'held/#', qos: 2 }]);
    const kept = await rawConnect(b.port, 5, { clientId: 'held-kept', clean: false, properties: { sessionExpiryInterval: 3600 } });
    await rawSubscribe(kept.raw, 5, 1, [{ topic: 'held/#', qos: 1 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'held-pub', clean: false });
    await new Promise((r) => setTimeout(r, 50));

    b.held.hold();
    pub.raw.sendPacket({ cmd: 'publish', topic: 'held/x', payload: Buffer.from('qos1'), qos: 1, messageId: 1, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'held/x', payload: Buffer.from('qos0'), qos: 0, retain: false, dup: false }, 4);
    assert.deepEqual(publishes(await drainFor(plain.raw, 250)), ['qos1', 'qos0'], 'QoS 0 and 1 are not held');
    assert.deepEqual(publishes(await drainFor(kept.raw, 50)), ['qos1', 'qos0']);
    b.held.release();
    assert.equal((await expectPacket(pub.raw, 'puback')).messageId, 1);

    b.held.hold();
    pub.raw.sendPacket({ cmd: 'publish', topic: 'held/x', payload: Buffer.from('exactly once'), qos: 2, messageId: 2, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'held/x', payload: Buffer.from('then qos0'), qos: 0, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'held/x', payload: Buffer.from('then qos1'), qos: 1, messageId: 3, retain: false, dup: false }, 4);
    assert.deepEqual(await drainFor(plain.raw, 250), [], 'nothing reaches a subscriber before the QoS 2 message is on disk');
    assert.deepEqual(await drainFor(kept.raw, 50), []);
    assert.deepEqual(await drainFor(pub.raw, 50), [], 'nor is the publisher answered');

    b.held.release();
    const toPlain = [...(await drainFor(plain.raw, 300))];
    assert.deepEqual(publishes(toPlain), ['exactly once', 'then qos0', 'then qos1'], 'in the order published');
    assert.deepEqual(toPlain.map((p) => p.qos), [2, 0, 1]);
    const toKept = await drainFor(kept.raw, 50);
    assert.deepEqual(publishes(toKept), ['exactly once', 'then qos0', 'then qos1']);
    assert.deepEqual(toKept.map((p) => p.qos), [1, 0, 1]);
    const acks = await drainFor(pub.raw, 100);
    assert.deepEqual(acks.map((p) => [p.cmd, p.messageId]).sort(), [['puback', 3], ['pubrec', 2]]);

    // the exchange goes on as usual
    plain.raw.sendPacket({ cmd: 'pubrec', messageId: toPlain[0]?.messageId }, 4);
    assert.equal((await expectPacket(plain.raw, 'pubrel')).messageId, toPlain[0]?.messageId);
    pub.raw.sendPacket({ cmd: 'pubrel', messageId: 2 }, 4);
    assert.equal((await expectPacket(pub.raw, 'pubcomp')).messageId, 2);
    for (const c of [plain, kept, pub]) c.raw.close();
  });

  test('[MQTT-4.3.3-1] [MQTT-4.4.0-1] a persistent session\'s queued QoS 2 messages are sent, on resume or when an acknowledgement frees an inflight slot, only once their packet ids are committed; a queued QoS 1 message at once', async () => {
    const b = await start();
    brokers.push(b.broker);
    const options = { clean: false, properties: { sessionExpiryInterval: 3600 } };
    const first = await rawConnect(b.port, 5, { clientId: 'queue-sub', ...options });
    await rawSubscribe(first.raw, 5, 1, [{ topic: 'queue/#', qos: 2 }]);
    first.raw.close();
    await new Promise((r) => setTimeout(r, 50));
    // a clean publisher: its messages are queued for the session (and that is committed) before its acks
    const pub = await rawConnect(b.port, 4, { clientId: 'queue-pub', clean: true });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'queue/x', payload: Buffer.from('q1'), qos: 1, messageId: 1, retain: false, dup: false }, 4);
    for (let id = 2; id <= 4; id++) pub.raw.sendPacket({ cmd: 'publish', topic: 'queue/x', payload: Buffer.from(`m${id - 1}`), qos: 2, messageId: id, retain: false, dup: false }, 4);
    const acks = await drainFor(pub.raw, 200);
    assert.deepEqual(acks.map((p) => [p.cmd, p.messageId]), [['puback', 1], ['pubrec', 2], ['pubrec', 3], ['pubrec', 4]]);

    b.held.hold();
    const commitsBefore = b.held.commits;
    const back = await rawConnect(b.port, 5, { clientId: 'queue-sub', ...options });
    assert.equal(back.connack.sessionPresent, true);
    const early = await drainFor(back.raw, 250);
    assert.deepEqual(publishes(early), ['q1'], 'the QoS 1 message goes at once, the QoS 2 ones wait for the commit of their packet ids');
    assert.ok(b.held.commits > commitsBefore, 'their inflight entries are committed');
    b.held.release();
    const late = await drainFor(back.raw, 300);
    assert.deepEqual(publishes(late), ['m1', 'm2', 'm3'], 'then they go, in order');
    assert.deepEqual(late.map((p) => [p.qos, p.dup]), [[2, false], [2, false], [2, false]]);
    back.raw.close();

    // one message in flight at a time: a PUBACK frees the slot the next (queued) message takes
    const slot = await rawConnect(b.port, 5, { clientId: 'slot-sub', clean: false, properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 } });
    await rawSubscribe(slot.raw, 5, 1, [{ topic: 'slot/#', qos: 2 }]);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'slot/x', payload: Buffer.from('s1'), qos: 1, messageId: 5, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'slot/x', payload: Buffer.from('s2'), qos: 2, messageId: 6, retain: false, dup: false }, 4);
    const s1 = await expectPacket(slot.raw, 'publish');
    assert.equal(s1.payload?.toString(), 's1');
    assert.deepEqual(await drainFor(slot.raw, 150), [], 's2 waits in the queue for the slot');
    b.held.hold();
    slot.raw.sendPacket({ cmd: 'puback', messageId: s1.messageId }, 5);
    assert.deepEqual(await drainFor(slot.raw, 250), [], 'no PUBLISH before its packet id is committed');
    b.held.release();
    const s2 = await expectPacket(slot.raw, 'publish');
    assert.deepEqual([s2.payload?.toString(), s2.qos], ['s2', 2]);
    for (const c of [slot, pub]) c.raw.close();
  });

  test('[MQTT-4.3.3-1] a clean publisher\'s QoS 2 message reaches a connected persistent session only once its packet id there is committed (a clean session at once); its QoS 1 ones are not held, and [MQTT-4.6.0-5] what follows stays behind it', async () => {
    const b = await start();
    brokers.push(b.broker);
    const kept = await rawConnect(b.port, 5, { clientId: 'conn-kept', clean: false, properties: { sessionExpiryInterval: 3600 } });
    await rawSubscribe(kept.raw, 5, 1, [{ topic: 'conn/#', qos: 2 }]);
    const plain = await rawConnect(b.port, 4, { clientId: 'conn-plain', clean: true });
    await rawSubscribe(plain.raw, 4, 1, [{ topic: 'conn/#', qos: 2 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'conn-pub', clean: true });

    b.held.hold();
    pub.raw.sendPacket({ cmd: 'publish', topic: 'conn/x', payload: Buffer.from('qos1'), qos: 1, messageId: 1, retain: false, dup: false }, 4);
    const one = await drainFor(kept.raw, 250);
    assert.deepEqual(one.map((p) => [p.payload?.toString(), p.qos]), [['qos1', 1]], 'a QoS 1 PUBLISH does not wait for its packet id to be committed');
    assert.deepEqual(publishes(await drainFor(plain.raw, 50)), ['qos1']);

    pub.raw.sendPacket({ cmd: 'publish', topic: 'conn/x', payload: Buffer.from('qos2'), qos: 2, messageId: 2, retain: false, dup: false }, 4);
    pub.raw.sendPacket({ cmd: 'publish', topic: 'conn/x', payload: Buffer.from('then qos0'), qos: 0, retain: false, dup: false }, 4);
    assert.deepEqual(publishes(await drainFor(plain.raw, 250)), ['qos2', 'then qos0'], 'nothing of a clean session is kept: at once');
    assert.deepEqual(await drainFor(kept.raw, 50), [], 'no QoS 2 PUBLISH to the persistent session before its packet id is committed, nor what follows it');

    b.held.release();
    const late = await drainFor(kept.raw, 300);
    assert.deepEqual(late.map((p) => [p.payload?.toString(), p.qos]), [['qos2', 2], ['then qos0', 0]], 'then in order');
    const acks = await drainFor(pub.raw, 100);
    assert.deepEqual(acks.map((p) => [p.cmd, p.messageId]), [['puback', 1], ['pubrec', 2]]);
    kept.raw.sendPacket({ cmd: 'pubrec', messageId: late[0]?.messageId }, 5);
    assert.equal((await expectPacket(kept.raw, 'pubrel')).messageId, late[0]?.messageId);
    for (const c of [kept, plain, pub]) c.raw.close();
  });

  test('[MQTT-4.3.3-1] a QoS 2 PUBLISH to a persistent session whose packet id cannot be committed is not sent: the client is disconnected (5.0: 0x83), and sent it (DUP) when it resumes the session once commits succeed', async () => {
    const b = await start();
    brokers.push(b.broker);
    const options = { clean: false, properties: { sessionExpiryInterval: 3600 } };
    const kept = await rawConnect(b.port, 5, { clientId: 'fail-kept', ...options });
    await rawSubscribe(kept.raw, 5, 1, [{ topic: 'fail/#', qos: 2 }]);
    const plain = await rawConnect(b.port, 4, { clientId: 'fail-plain', clean: true });
    await rawSubscribe(plain.raw, 4, 1, [{ topic: 'fail/#', qos: 2 }]);
    const pub = await rawConnect(b.port, 4, { clientId: 'fail-pub', clean: true });

    b.held.failing = 'no space left on device';
    pub.raw.sendPacket({ cmd: 'publish', topic: 'fail/x', payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false }, 4);
    const toKept = await drainFor(kept.raw, 300);
    assert.deepEqual(toKept.map((p) => [p.cmd, p.reasonCode]), [['disconnect', 0x83]], 'no PUBLISH, a DISCONNECT');
    assert.deepEqual(publishes(await drainFor(plain.raw, 50)), ['x'], 'a session that is not kept gets it');

    b.held.failing = undefined;
    const back = await rawConnect(b.port, 5, { clientId: 'fail-kept', ...options });
    assert.equal(back.connack.sessionPresent, true);
    const again = await expectPacket(back.raw, 'publish');
    assert.deepEqual([again.payload?.toString(), again.qos, again.dup], ['x', 2, true]);
    for (const c of [back, plain, pub]) c.raw.close();
  });
});

/**
 * A subscriber that keeps its QoS 2 receiver state across connections, as a client must
 * ([MQTT-4.3.3-10] (5.0)): a PUBLISH with a packet id not released yet is a duplicate; PUBREL releases it.
 * It counts what its application is given.
 */
class Subscriber {
  readonly delivered = new Map<string, number>();
  private readonly unreleased = new Set<number>();
  raw: RawClient | undefined;

  async connect(port: number, first: boolean): Promise<void> {
    const { raw, connack } = await rawConnect(port, 4, { clientId: 'eo-sub', clean: false });
    this.raw = raw;
    if (first) await rawSubscribe(raw, 4, 1, [{ topic: 'eo/#', qos: 2 }]);
    else assert.equal(connack.sessionPresent, true, 'the subscriber\'s session was kept');
  }

  private take(p: Loose): void {
    const id = p.messageId as number;
    if (this.unreleased.has(id)) return;
    this.unreleased.add(id);
    const text = p.payload?.toString() ?? '';
    this.delivered.set(text, (this.delivered.get(text) ?? 0) + 1);
  }

  /** Takes `count` PUBLISHes without acknowledging them, then sends `before` and every PUBREC in one write. */
  async receive(count: number, before: Buffer): Promise<void> {
    const raw = this.raw as RawClient;
    const recs: Buffer[] = [];
    while (recs.length < count) {
      const p = await expectPacket(raw, 'publish');
      this.take(p);
      recs.push(mqttPacket.generate({ cmd: 'pubrec', messageId: p.messageId as number }, { protocolVersion: 4 }));
    }
    raw.send(Buffer.concat([before, ...recs]));
  }

  /**
   * Handles what arrives until `quietMs` pass without a packet or the connection ends; `onPubrel`
   * sees each PUBREL first, `onPublish` each PUBLISH.
   */
  async serve(quietMs: number, onPubrel?: () => void, onPublish?: () => void): Promise<void> {
    const raw = this.raw as RawClient;
    for (;;) {
      let p: Loose;
      try {
        p = (await raw.next(quietMs)) as Loose;
      } catch {
        return;
      }
      const id = p.messageId as number;
      if (p.cmd === 'publish') {
        onPublish?.();
        this.take(p);
        raw.sendPacket({ cmd: 'pubrec', messageId: id }, 4);
      } else if (p.cmd === 'pubrel') {
        onPubrel?.();
        this.unreleased.delete(id);
        raw.sendPacket({ cmd: 'pubcomp', messageId: id }, 4);
      }
    }
  }
}

/** A publisher of QoS 2 messages that finishes its exchanges after reconnecting ([MQTT-4.4.0-1]). */
class Publisher {
  /** packet id -> what it waits for: PUBREC (the PUBLISH is resent) or PUBCOMP (the PUBREL is) */
  readonly pending = new Map<number, { text: string; waiting: 'pubrec' | 'pubcomp' }>();
  raw: RawClient | undefined;

  async connect(port: number): Promise<void> {
    this.raw = (await rawConnect(port, 4, { clientId: 'eo-pub', clean: false })).raw;
    const resend: Buffer[] = [];
    for (const [id, p] of this.pending) {
      const packet =
        p.waiting === 'pubrec'
          ? { cmd: 'publish', topic: 'eo/x', payload: Buffer.from(p.text), qos: 2, messageId: id, retain: false, dup: true }
          : { cmd: 'pubrel', messageId: id };
      resend.push(mqttPacket.generate(packet as unknown as mqttPacket.Packet, { protocolVersion: 4 }));
    }
    if (resend.length > 0) this.raw.send(Buffer.concat(resend));
  }

  /** Sends `count` messages (`${prefix}1`...) in one write, so that the broker reads them at once. */
  publish(count: number, prefix = 'm'): void {
    const out: Buffer[] = [];
    for (let id = 1; id <= count; id++) {
      const text = `${prefix}${id}`;
      this.pending.set(id, { text, waiting: 'pubrec' });
      out.push(mqttPacket.generate({ cmd: 'publish', topic: 'eo/x', payload: Buffer.from(text), qos: 2, messageId: id, retain: false, dup: false }, { protocolVersion: 4 }));
    }
    (this.raw as RawClient).send(Buffer.concat(out));
  }

  async serve(quietMs: number): Promise<void> {
    const raw = this.raw as RawClient;
    for (;;) {
      let p: Loose;
      try {
        p = (await raw.next(quietMs)) as Loose;
      } catch {
        return;
      }
      const id = p.messageId as number;
      const entry = this.pending.get(id);
      if (p.cmd === 'pubrec' && entry !== undefined) {
        entry.waiting = 'pubcomp';
        raw.sendPacket({ cmd: 'pubrel', messageId: id }, 4);
      } else if (p.cmd === 'pubcomp') {
        this.pending.delete(id);
      }
    }
  }
}

describe('QoS 2 across a SIGKILL (command line broker, lmdb)', () => {
  after(killMidges);

  const ROUNDS = 3;
  const COUNT = 50;
  // A large retained message sent in one write with the PUBRECs: its tail is read in the same
  // turn as they are, so that the commit of their PUBREL states, which also writes its 16 MB, takes
  // a while, as a busy broker's does. A PUBREL sent before it finished would reach the subscriber
  // before the broker is killed.
  const BIG = 16 * 1024 * 1024;
  const big = mqttPacket.generate({ cmd: 'publish', topic: 'noise/big', payload: Buffer.alloc(BIG, 1), qos: 0, retain: true, dup: false }, { protocolVersion: 4 });

  /** A data dir and config for one round's broker (its packets may carry the 16 MB message), and how to remove them. */
  const roundBroker = (): { args: string[]; cleanUp: () => void } => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-eo-'));
    const config = `${dataDir}.yaml`;
    writeFileSync(config, `limits:\n  maxPacketSize: ${2 * BIG}\n`);
    return {
      args: ['--config', config, '--port', '0', '--data-dir', dataDir, '--persistence', 'lmdb', '--sys-interval', '0', '--log-level', 'silent'],
      cleanUp: () => {
        rmSync(dataDir, { recursive: true, force: true });
        rmSync(config, { force: true });
      },
    };
  };

  /** A persistent subscriber starting afresh and a publisher, both connected. */
  const connectPair = async (port: number): Promise<{ sub: Subscriber; pub: Publisher }> => {
    const sub = new Subscriber();
    const pub = new Publisher();
    await sub.connect(port, true);
    await pub.connect(port);
    return { sub, pub };
  };

  test(`[MQTT-4.3.3-6] (5.0) a broker killed as its first PUBREL reaches the subscriber delivers each QoS 2 message exactly once after the restart (${ROUNDS} times, ${COUNT} messages)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const { args, cleanUp } = roundBroker();
      let { child, port } = await spawnMidge(args);
      const { sub, pub } = await connectPair(port);

      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      let killed = false;
      const kill = (): void => {
        if (!killed) child.kill('SIGKILL');
        killed = true;
      };
      pub.publish(COUNT);
      const publisher = pub.serve(5000);
      await sub.receive(COUNT, big);
      await Promise.all([sub.serve(3000, kill), publisher]);
      assert.ok(killed, `round ${round}: the subscriber was sent a PUBREL`);
      await exited;

      ({ child, port } = await spawnMidge(args));
      await sub.connect(port, false);
      await pub.connect(port);
      await Promise.all([sub.serve(400), pub.serve(400)]);
      child.kill('SIGKILL');
      cleanUp();

      const wrong = [...Array(COUNT).keys()].map((i) => `m${i + 1}`).filter((t) => sub.delivered.get(t) !== 1);
      assert.deepEqual(
        wrong.map((t) => `${t} x${sub.delivered.get(t) ?? 0}`),
        [],
        `round ${round}: each message given to the subscriber's application exactly once`,
      );
      assert.equal(pub.pending.size, 0, `round ${round}: every exchange of the publisher completed`);
    }
  });

  const QUEUED = 20;
  const SHIFT = 5;
  test(`[MQTT-4.3.3-1] [MQTT-4.4.0-1] a broker killed as the first of a resumed session's queued QoS 2 messages reaches it delivers each exactly once after the restart (${ROUNDS} times, ${QUEUED} messages)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const { args, cleanUp } = roundBroker();
      let { child, port } = await spawnMidge(args);
      const { sub, pub } = await connectPair(port);
      // packet ids 1 to SHIFT are used and released first: the queued messages go under others, which
      // a restarted broker that lost them would not give them again
      pub.publish(SHIFT, 'w');
      await Promise.all([sub.serve(300), pub.serve(300)]);
      (sub.raw as RawClient).close();
      await new Promise((r) => setTimeout(r, 100));
      // queued for the session, on disk once the publisher has its PUBRECs
      pub.publish(QUEUED);
      await pub.serve(300);
      assert.equal(pub.pending.size, 0, `round ${round}: the queued messages were acknowledged`);

      // A large retained message is written just before the session resumes, so that the commit
      // of the resumed messages' inflight entries, behind it, takes a while, as a busy broker's does
      const noise = (await rawConnect(port, 4, { clientId: 'eo-noise', clean: true })).raw;
      noise.send(Buffer.concat([big, mqttPacket.generate({ cmd: 'pingreq' }, { protocolVersion: 4 })]));
      await expectPacket(noise, 'pingresp', 10_000);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      let killed = false;
      const kill = (): void => {
        if (!killed) child.kill('SIGKILL');
        killed = true;
      };
      await sub.connect(port, false);
      await sub.serve(3000, undefined, kill);
      assert.ok(killed, `round ${round}: the subscriber was sent a queued message`);
      await exited;

      ({ child, port } = await spawnMidge(args));
      await sub.connect(port, false);
      await sub.serve(400);
      child.kill('SIGKILL');
      cleanUp();

      const texts = [...[...Array(SHIFT).keys()].map((i) => `w${i + 1}`), ...[...Array(QUEUED).keys()].map((i) => `m${i + 1}`)];
      const wrong = texts.filter((t) => sub.delivered.get(t) !== 1);
      assert.deepEqual(
        wrong.map((t) => `${t} x${sub.delivered.get(t) ?? 0}`),
        [],
        `round ${round}: each message given to the subscriber's application exactly once`,
      );
    }
  });
});
