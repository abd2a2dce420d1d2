import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import type { RawClient } from '../helpers/raw-client.js';
import { eventually, expectPacket, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';

const FILTER = '$share/grp/sg/#';

function startBroker(dataDir: string): ReturnType<typeof spawnMidge> {
  return spawnMidge(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
}

async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
}

interface Received {
  payload: string;
  qos: number;
  dup: boolean;
  messageId: number | undefined;
}

/**
 * A 5.0 member of the shared group: it records every PUBLISH it is sent and, when `acks`,
 * acknowledges it (QoS 2 through to PUBCOMP); otherwise it answers nothing.
 */
class Member {
  readonly got: Received[] = [];
  private constructor(
    readonly raw: RawClient,
    readonly sessionPresent: boolean,
  ) {}

  static async connect(port: number, clientId: string, expiry: number, acks: boolean, subscribe: boolean): Promise<Member> {
    const { raw, connack } = await rawConnect(port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: expiry } });
    if (subscribe) await rawSubscribe(raw, 5, 1, [{ topic: FILTER, qos: 2 }]);
    const m = new Member(raw, connack.sessionPresent === true);
    void m.read(acks);
    return m;
  }

  private async read(acks: boolean): Promise<void> {
    for (;;) {
      let p: Loose;
      try {
        p = (await this.raw.next(60_000)) as Loose;
      } catch {
        return;
      }
      if (p.cmd === 'pubrel' && acks) this.raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, 5);
      if (p.cmd !== 'publish') continue;
      this.got.push({ payload: p.payload?.toString() ?? '', qos: p.qos ?? 0, dup: p.dup === true, messageId: p.messageId });
      if (acks && p.qos === 1) this.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
      if (acks && p.qos === 2) this.raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, 5);
    }
  }

  payloads(qos?: number): string[] {
    return this.got.filter((r) => qos === undefined || r.qos === qos).map((r) => r.payload);
  }
}

/**
 * Publishes `sg/x` messages 1..count one at a time, each acknowledged before the next: at QoS 1,
 * or with `qos2` two at QoS 1 then two at QoS 2 (so that members taking turns get both).
 */
async function publishAll(port: number, count: number, qos2: boolean): Promise<void> {
  const { raw } = await rawConnect(port, 4, { clientId: 'sg-publisher' });
  for (let i = 1; i <= count; i++) {
    const qos = qos2 && i % 4 >= 2 ? 2 : 1;
    raw.sendPacket({ cmd: 'publish', topic: 'sg/x', payload: Buffer.from(String(i)), qos, messageId: i, retain: false }, 4);
    if (qos === 1) {
      await expectPacket(raw, 'puback');
    } else {
      await expectPacket(raw, 'pubrec');
      raw.sendPacket({ cmd: 'pubrel', messageId: i }, 4);
      await expectPacket(raw, 'pubcomp');
    }
  }
  raw.close();
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('shared-subscription messages of a member the broker lost at a crash, or whose session ended', () => {
  after(killMidges);

  test('[MQTT-4.8.2-4] (5.0) QoS 1 messages a member held unacknowledged when the broker was killed go to another member once the broker is back, as after a disconnect; its QoS 2 ones stay and are completed when it reconnects', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-shared-'));
    let b = await startBroker(dataDir);
    const silent = await Member.connect(b.port, 'sg-1', 3600, false, true);
    const acking = await Member.connect(b.port, 'sg-2', 3600, true, true);
    await publishAll(b.port, 20, true);
    assert.ok(await eventually(() => silent.got.length + acking.payloads().length >= 20), 'each message reached a member');
    const heldQos1 = silent.payloads(1);
    const heldQos2 = silent.got.filter((r) => r.qos === 2);
    assert.ok(heldQos1.length > 0 && heldQos2.length > 0, 'the member that answers nothing holds QoS 1 and QoS 2 messages');
    // the other member's acknowledgements reach the disk first (what it had not acknowledged would be handed over too)
    await settle(200);
    await kill(b.child);
    silent.raw.close();
    acking.raw.close();

    b = await startBroker(dataDir);
    const back = await Member.connect(b.port, 'sg-2', 3600, true, false);
    assert.equal(back.sessionPresent, true);
    // long before the silent member's session could end
    assert.ok(await eventually(() => heldQos1.every((p) => back.payloads().includes(p)), 3000), `the other member got ${JSON.stringify(back.payloads())}, not every QoS 1 message of ${JSON.stringify(heldQos1)}`);
    const returned = await Member.connect(b.port, 'sg-1', 3600, true, false);
    assert.equal(returned.sessionPresent, true);
    assert.ok(await eventually(() => returned.got.length >= heldQos2.length), 'the QoS 2 messages are sent again to the member that had them');
    await settle(300);
    assert.deepEqual(
      returned.got.filter((r) => r.qos === 2).map((r) => [r.payload, r.dup, r.messageId]),
      heldQos2.map((r) => [r.payload, true, r.messageId]),
      'its QoS 2 messages, again with their packet ids and DUP 1',
    );
    assert.deepEqual(returned.payloads(1).filter((p) => heldQos1.includes(p)), [], 'none of the QoS 1 messages it held, handed over, comes back to it');
    assert.deepEqual(back.payloads().filter((p) => heldQos2.some((r) => r.payload === p)), [], 'no QoS 2 message went to another member');
    back.raw.close();
    returned.raw.close();
    await kill(b.child);
  });

  test('(5.0 4.8.2) messages queued for a member that is offline go to another member when its session ends before it reconnects', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-shared-ended-'));
    const b = await startBroker(dataDir);
    for (const [id, expiry] of [['so-1', 2], ['so-2', 600]] as const) (await Member.connect(b.port, id, expiry, true, true)).raw.close();
    await settle(100);
    // both offline: the group's messages are queued to them in turn
    await publishAll(b.port, 20, false);
    const back = await Member.connect(b.port, 'so-2', 600, true, false);
    assert.ok(await eventually(() => back.payloads().length >= 10), 'the member that returned is sent its own');
    assert.ok(back.payloads().length < 20, 'the other member had some of them queued');
    // so-1 never returns; its session ends 2 s after it left
    assert.ok(await eventually(() => back.payloads().length >= 20, 5000), `got ${JSON.stringify(back.payloads())}`);
    assert.deepEqual([...new Set(back.payloads())].map(Number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
    back.raw.close();
    await kill(b.child);
  });

  test('(5.0 4.8.2) messages queued for a member that never expires and was offline when the broker was killed stay its own after the restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-shared-offline-'));
    let b = await startBroker(dataDir);
    (await Member.connect(b.port, 'nv-1', 0xffffffff, true, true)).raw.close();
    await settle(100);
    // the only member, offline: every message is queued to it
    await publishAll(b.port, 10, false);
    // a second member, offline too, that a hand-over at the restart would give them to
    (await Member.connect(b.port, 'nv-2', 0xffffffff, true, true)).raw.close();
    await settle(200);
    await kill(b.child);

    b = await startBroker(dataDir);
    const other = await Member.connect(b.port, 'nv-2', 0xffffffff, true, false);
    assert.equal(other.sessionPresent, true);
    await settle(500);
    assert.deepEqual(other.payloads(), [], 'the member that was not sent them gets none');
    const own = await Member.connect(b.port, 'nv-1', 0xffffffff, true, false);
    assert.equal(own.sessionPresent, true);
    assert.ok(await eventually(() => own.payloads().length >= 10), `got ${JSON.stringify(own.payloads())}`);
    assert.deepEqual(own.payloads().map(Number), Array.from({ length: 10 }, (_, i) => i + 1), 'its messages, in order, once');
    own.raw.close();
    other.raw.close();
    await kill(b.child);
  });

  test('(5.0 4.8.2) messages queued for a member whose session ended while the broker was down go to another member when the broker starts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-shared-ended-'));
    let b = await startBroker(dataDir);
    // the member whose session ends is restored before the other (its client id sorts first)
    for (const [id, expiry] of [['sd-1', 1], ['sd-2', 600]] as const) (await Member.connect(b.port, id, expiry, true, true)).raw.close();
    await settle(100);
    await publishAll(b.port, 20, false);
    await kill(b.child);
    await settle(1500);

    b = await startBroker(dataDir);
    const back = await Member.connect(b.port, 'sd-2', 600, true, false);
    assert.equal(back.sessionPresent, true);
    assert.ok(await eventually(() => back.payloads().length >= 20, 3000), `got ${JSON.stringify(back.payloads())}`);
    const gone = await Member.connect(b.port, 'sd-1', 1, true, false);
    assert.equal(gone.sessionPresent, false, 'the other session ended');
    gone.raw.close();
    back.raw.close();
    await kill(b.child);
  });
});
