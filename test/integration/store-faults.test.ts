import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { createBroker, type Broker } from '../../src/index.js';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import { CommitFaultStore } from '../helpers/faulty-store.js';
import { RawClient } from '../helpers/raw-client.js';
import { drainFor, eventually, expectPacket, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';
import { fill, withDataDirOnTmpfs } from '../helpers/tmpfs.js';

interface LogLine {
  level: number;
  msg: string;
}

/** A broker on a CommitFaultStore, with every line it logs. */
async function brokerOn(store: CommitFaultStore): Promise<{ broker: Broker; port: number; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
  const broker = await createBroker({ store, sysInterval: 0, logger });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  return { broker, port, lines };
}

const storeLines = (lines: LogLine[]): LogLine[] => lines.filter((l) => l.msg.startsWith('the store '));

/** A 5.0 persistent session subscribed to `filter` whose client has gone: what matches is stored for it. */
async function leaveStoredSession(port: number, clientId: string, filter: string): Promise<void> {
  const { raw } = await rawConnect(port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } });
  await rawSubscribe(raw, 5, 1, [{ topic: filter, qos: 1 }]);
  raw.close();
  await new Promise((r) => setTimeout(r, 50));
}

/** Publishes one QoS 1 message from a fresh 5.0 client; the PUBACK or DISCONNECT it got (undefined: neither). */
async function publishOnce(port: number, clientId: string, topic: string, payload: Buffer): Promise<Loose | undefined> {
  const { raw } = await rawConnect(port, 5, { clientId });
  raw.sendPacket({ cmd: 'publish', topic, payload, qos: 1, messageId: 1, retain: false, dup: false }, 5);
  let answer: Loose | undefined;
  try {
    answer = (await raw.next(5000)) as Loose;
  } catch {
    answer = undefined;
  }
  raw.close();
  return answer;
}

const brokers: Broker[] = [];
after(async () => {
  killMidges();
  for (const b of brokers) await b.close().catch(() => undefined);
});

describe('a store that cannot commit (a full disk)', () => {
  test('[MQTT-4.3.2-4] (5.0) a QoS 1 publish whose commit fails is not acknowledged: only its publisher is disconnected (0x83), the failure is logged once, other clients go on, and publishes are acknowledged again once commits succeed', async () => {
    const store = new CommitFaultStore();
    const b = await brokerOn(store);
    brokers.push(b.broker);
    await leaveStoredSession(b.port, 'keeper', 'disk/#');
    const bystander = await rawConnect(b.port, 5, { clientId: 'bystander' });
    await rawSubscribe(bystander.raw, 5, 1, [{ topic: 'chat/#', qos: 0 }]);

    store.failing = 'no space left on device';
    for (let i = 0; i < 3; i++) {
      const answer = await publishOnce(b.port, `full-${i}`, `disk/${i}`, Buffer.from(`lost ${i}`));
      assert.equal(answer?.cmd, 'disconnect', `publisher ${i}: ${JSON.stringify(answer)}`);
      assert.equal(answer?.reasonCode, 0x83, 'the broker\'s own fault: Implementation specific error');
      assert.match(String(answer?.properties?.reasonString), /^not acknowledged: .*no space left on device/);
    }
    // a client that waits for no commit is served as before
    bystander.raw.sendPacket({ cmd: 'publish', topic: 'chat/1', payload: Buffer.from('still here'), qos: 0, retain: false, dup: false }, 5);
    assert.equal((await expectPacket(bystander.raw, 'publish')).payload?.toString(), 'still here');
    bystander.raw.sendPacket({ cmd: 'pingreq' }, 5);
    await expectPacket(bystander.raw, 'pingresp');
    const failing = storeLines(b.lines);
    assert.equal(failing.length, 1, `one line for the whole burst: ${JSON.stringify(failing)}`);
    assert.equal(failing[0]?.level, 50);
    assert.match(String(failing[0]?.msg), /^the store cannot write: .*no space left on device.*the broker goes on$/);

    store.failing = undefined;
    const answer = await publishOnce(b.port, 'room-again', 'disk/ok', Buffer.from('kept'));
    assert.equal(answer?.cmd, 'puback');
    assert.ok(await eventually(() => storeLines(b.lines).length === 2));
    assert.match(String(storeLines(b.lines)[1]?.msg), /^the store writes again/);

    const back = await rawConnect(b.port, 5, { clientId: 'keeper', clean: false, properties: { sessionExpiryInterval: 3600 } });
    const got = (await drainFor(back.raw, 300)).filter((p) => p.cmd === 'publish').map((p) => p.payload?.toString());
    assert.ok(got.includes('kept'), `the acknowledged message reached the stored session: ${JSON.stringify(got)}`);
    back.raw.close();
    bystander.raw.close();
  });

  test('[MQTT-3.8.4-1] [MQTT-3.10.4-4] a SUBSCRIBE or UNSUBSCRIBE of a persistent session whose commit fails gets no SUBACK or UNSUBACK: its client is disconnected (0x83)', async () => {
    const store = new CommitFaultStore();
    const b = await brokerOn(store);
    brokers.push(b.broker);
    const options = { clean: false, properties: { sessionExpiryInterval: 3600 } };
    const sub = await rawConnect(b.port, 5, { clientId: 'sub-fails', ...options });
    store.failing = 'disk gone';
    sub.raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 's/#', qos: 1 }] }, 5);
    const first = (await sub.raw.next()) as Loose;
    assert.equal(first.cmd, 'disconnect');
    assert.equal(first.reasonCode, 0x83);

    store.failing = undefined;
    const unsub = await rawConnect(b.port, 5, { clientId: 'unsub-fails', ...options });
    await rawSubscribe(unsub.raw, 5, 1, [{ topic: 'u/#', qos: 1 }]);
    store.failing = 'disk gone';
    unsub.raw.sendPacket({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['u/#'] }, 5);
    const second = (await unsub.raw.next()) as Loose;
    assert.equal(second.cmd, 'disconnect');
    assert.equal(second.reasonCode, 0x83);
    store.failing = undefined;
  });
});

describe('acknowledgements of session state wait for the disk', () => {
  test('[MQTT-3.10.4-4] [MQTT-3.10.4-2] the UNSUBACK of a persistent session is sent once the removal is on disk; nothing more is sent for the filter meanwhile', async () => {
    const store = new CommitFaultStore();
    const b = await brokerOn(store);
    brokers.push(b.broker);
    const { raw } = await rawConnect(b.port, 5, { clientId: 'leaving', clean: false, properties: { sessionExpiryInterval: 3600 } });
    await rawSubscribe(raw, 5, 1, [{ topic: 'u/#', qos: 1 }]);

    store.hold();
    raw.sendPacket({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: ['u/#'] }, 5);
    await new Promise((r) => setTimeout(r, 50));
    await b.broker.publish({ topic: 'u/1', payload: 'after the unsubscribe', qos: 0 });
    assert.deepEqual(await drainFor(raw, 200), [], 'no UNSUBACK before the commit, and no message for the filter');
    store.release();
    const unsuback = await expectPacket(raw, 'unsuback');
    assert.equal(unsuback.messageId, 7);
    raw.close();

    // a session that ends with its connection has nothing on disk to wait for
    const clean = await rawConnect(b.port, 5, { clientId: 'clean-leaving' });
    await rawSubscribe(clean.raw, 5, 1, [{ topic: 'c/#', qos: 1 }]);
    store.hold();
    clean.raw.sendPacket({ cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['c/#'] }, 5);
    assert.equal((await expectPacket(clean.raw, 'unsuback')).messageId, 8);
    store.release();
    clean.raw.close();
  });

  test('[MQTT-3.8.4-1] the SUBACK of a persistent session is sent once its subscription is on disk', async () => {
    const store = new CommitFaultStore();
    const b = await brokerOn(store);
    brokers.push(b.broker);
    const { raw } = await rawConnect(b.port, 4, { clientId: 'joining', clean: false });
    store.hold();
    raw.sendPacket({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'j/#', qos: 1 }] }, 4);
    assert.deepEqual(await drainFor(raw, 200), [], 'no SUBACK before the commit');
    store.release();
    assert.deepEqual((await expectPacket(raw, 'suback')).granted, [1]);
    raw.close();
  });

  test('[MQTT-3.1.2-4] [MQTT-3.2.2-2] a clean start that discards a stored session sends its CONNACK (Session Present 0) once the removal is on disk; packets sent meanwhile are answered after it', async () => {
    const store = new CommitFaultStore();
    const b = await brokerOn(store);
    brokers.push(b.broker);
    await leaveStoredSession(b.port, 'restarting', 'r/#');

    store.hold();
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'restarting', clean: true, keepalive: 0 }, 5);
    raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: 1 }] }, 5);
    assert.deepEqual(await drainFor(raw, 200), [], 'no CONNACK before the old session\'s removal is on disk');
    store.release();
    const connack = await expectPacket(raw, 'connack');
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.sessionPresent, false);
    await expectPacket(raw, 'suback');
    raw.close();

    // with no stored session to remove, the CONNACK waits for nothing
    store.hold();
    const fresh = await rawConnect(b.port, 5, { clientId: 'never-seen', clean: true });
    assert.equal(fresh.connack.sessionPresent, false);
    store.release();
    fresh.raw.close();
  });
});

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

describe('an LMDB data dir whose disk fills up (command line broker)', () => {
  test('[MQTT-4.3.2-4] (5.0) the broker goes on: publishes it cannot store are refused (5.0: 0x83), others are served, and once there is room again it stores and acknowledges; nothing acknowledged is lost across a restart', async (t: TestContext) => {
    await withDataDirOnTmpfs(t, '4m', async ({ filler, args }) => {
      fill(filler, 1200 * 1024);
      let b = await spawnMidge(args);
      await leaveStoredSession(b.port, 'keeper', 'big/#');

      const acked: number[] = [];
      let refused: Loose | undefined;
      for (let i = 0; i < 40 && refused === undefined; i++) {
        const answer = await publishOnce(b.port, `pub-${i}`, `big/${i}`, Buffer.alloc(100 * 1024, i));
        if (answer?.cmd === 'puback') acked.push(i);
        else refused = answer;
      }
      assert.ok(acked.length > 0, 'some messages fit');
      assert.equal(refused?.cmd, 'disconnect', `the publish that did not fit: ${JSON.stringify(refused)}`);
      assert.equal(refused?.reasonCode, 0x83);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(alive(b.child), 'the broker is still running');
      const other = await rawConnect(b.port, 4, { clientId: 'other' });
      other.raw.sendPacket({ cmd: 'pingreq' }, 4);
      await expectPacket(other.raw, 'pingresp');
      other.raw.close();

      // room again: what waited is written, and publishes are acknowledged once more
      unlinkSync(filler);
      let after: number | undefined;
      for (let i = 100; i < 130 && after === undefined; i++) {
        const answer = await publishOnce(b.port, `pub-${i}`, `big/${i}`, Buffer.alloc(1024, i));
        if (answer?.cmd === 'puback') after = i;
        else await new Promise((r) => setTimeout(r, 200));
      }
      assert.notEqual(after, undefined, 'a publish is acknowledged once the disk has room');
      acked.push(after as number);
      assert.ok(alive(b.child));

      b.child.kill('SIGTERM');
      await new Promise<void>((resolve) => (alive(b.child) ? b.child.once('exit', () => resolve()) : resolve()));
      b = await spawnMidge(args);
      const back = await rawConnect(b.port, 5, { clientId: 'keeper', clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.equal(back.connack.sessionPresent, true);
      const got = new Set<number>();
      for (;;) {
        let p: Loose;
        try {
          p = (await back.raw.next(1500)) as Loose;
        } catch {
          break;
        }
        if (p.cmd !== 'publish') continue;
        got.add(Number(p.topic?.split('/')[1]));
        back.raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 5);
      }
      back.raw.close();
      assert.deepEqual(acked.filter((n) => !got.has(n)), [], `every acknowledged message is delivered after the restart (got ${[...got].join(',')})`);
      b.child.kill('SIGTERM');
      await new Promise<void>((resolve) => (alive(b.child) ? b.child.once('exit', () => resolve()) : resolve()));
    });
  });
});

describe('session state acknowledged before a crash (command line broker, lmdb)', () => {
  test('[MQTT-3.10.4-2] a subscription whose UNSUBACK was sent stays removed when the broker is killed the moment the UNSUBACK arrives', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-unsub-kill-'));
    const args = ['--port', '0', '--data-dir', dataDir, '--persistence', 'lmdb', '--log-level', 'silent', '--sys-interval', '0'];
    let b = await spawnMidge(args);
    // a session that stores what the UNSUBSCRIBE comes with, so that its commit takes a while
    await leaveStoredSession(b.port, 'ballast', 'ballast/#');
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      const clientId = `leaving-${round}`;
      const options = { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } };
      const { raw } = await rawConnect(b.port, 5, options);
      await rawSubscribe(raw, 5, 1, [{ topic: `gone/${round}`, qos: 1 }]);
      const pub = await rawConnect(b.port, 5, { clientId: `ballast-pub-${round}` });
      // in the same turn as the UNSUBSCRIBE: 900 KB for the commit to write
      pub.raw.sendPacket({ cmd: 'publish', topic: `ballast/${round}`, payload: Buffer.alloc(900 * 1024, round), qos: 1, messageId: 1, retain: false, dup: false }, 5);
      raw.sendPacket({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: [`gone/${round}`] }, 5);
      await expectPacket(raw, 'unsuback', 10_000);
      b.child.kill('SIGKILL');
      await new Promise<void>((resolve) => (alive(b.child) ? b.child.once('exit', () => resolve()) : resolve()));
      raw.close();
      pub.raw.close();

      b = await spawnMidge(args);
      const answer = await publishOnce(b.port, `after-${round}`, `gone/${round}`, Buffer.from('not for the unsubscribed'));
      assert.equal(answer?.cmd, 'puback');
      const back = await rawConnect(b.port, 5, options);
      const got = (await drainFor(back.raw, 300)).filter((p) => p.cmd === 'publish' && p.topic === `gone/${round}`);
      assert.deepEqual(got, [], `round ${round}: the subscription came back after the restart`);
      back.raw.close();
    }
    b.child.kill('SIGTERM');
  });
});
