import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { killMidges, spawnMidge } from '../helpers/cli.js';
import type { RawClient } from '../helpers/raw-client.js';
import { drainFor, rawConnect, rawSubscribe, type Loose } from '../helpers/raw-session.js';

/** A broker on `dataDir` with its LMDB store, as the command line runs it. */
function start(dataDir: string): Promise<{ child: ChildProcess; port: number }> {
  return spawnMidge(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
}

async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
}

/** A persistent 3.1.1 subscriber to will/#, kept across the restarts, so that wills sent as a broker starts wait for it. */
async function watcher(port: number): Promise<RawClient> {
  const { raw } = await rawConnect(port, 4, { clientId: 'will-watcher', clean: false });
  await rawSubscribe(raw, 4, 1, [{ topic: 'will/#', qos: 1 }]);
  return raw;
}

/** The will topics a reconnecting watcher is given within `ms`, each acknowledged as it comes, with the time it came. */
async function willsSeen(port: number, ms: number): Promise<Array<{ topic: string; at: number }>> {
  const { raw, connack } = await rawConnect(port, 4, { clientId: 'will-watcher', clean: false });
  assert.equal(connack.sessionPresent, true, 'the watcher kept its session');
  const seen: Array<{ topic: string; at: number }> = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let p: Loose;
    try {
      p = (await raw.next(left)) as Loose;
    } catch {
      break;
    }
    if (p.cmd !== 'publish') continue;
    seen.push({ topic: p.topic as string, at: Date.now() });
    if (p.qos === 1) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, 4);
  }
  // the acknowledgements reach the broker before the connection goes
  raw.sendPacket({ cmd: 'disconnect' }, 4);
  await new Promise((r) => setTimeout(r, 200));
  raw.close();
  return seen;
}

function will(id: string, delayS?: number): Record<string, unknown> {
  return { topic: `will/${id}`, payload: Buffer.from(`gone ${id}`), qos: 1, retain: false, ...(delayS === undefined ? {} : { properties: { willDelayInterval: delayS } }) };
}

describe('wills and sessions of clients connected when the broker dies', () => {
  after(killMidges);

  test('[MQTT-3.1.2-8] the wills of clients connected when the broker is killed are published once it is back; [MQTT-3.1.2-10] not one removed by DISCONNECT, nor one already sent at a takeover', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-wills-'));
    let b = await start(dataDir);
    const w = await watcher(b.port);
    // a 3.1.1 persistent session, a 3.1.1 clean one and a 5.0 session with no delay: each was
    // connected when the broker died, so its network connection closed without a DISCONNECT
    await rawConnect(b.port, 4, { clientId: 'kept-311', clean: false, will: will('kept-311') });
    await rawConnect(b.port, 4, { clientId: 'clean-311', clean: true, will: will('clean-311') });
    await rawConnect(b.port, 5, { clientId: 'v5', clean: false, properties: { sessionExpiryInterval: 3600 }, will: will('v5', 0) });
    // one that said goodbye, and one whose will went at the takeover by a connection without one
    const polite = await rawConnect(b.port, 4, { clientId: 'polite', will: will('polite') });
    polite.raw.sendPacket({ cmd: 'disconnect' }, 4);
    await rawConnect(b.port, 4, { clientId: 'taken', clean: false, will: will('taken') });
    await rawConnect(b.port, 4, { clientId: 'taken', clean: false });
    const before = await drainFor(w, 500);
    assert.deepEqual(before.filter((p) => p.cmd === 'publish').map((p) => p.topic), ['will/taken'], 'only the taken-over connection\'s will went before the kill');
    for (const p of before) if (p.cmd === 'publish') w.sendPacket({ cmd: 'puback', messageId: p.messageId }, 4);
    await new Promise((r) => setTimeout(r, 300));
    w.close();
    await kill(b.child);

    b = await start(dataDir);
    const seen = await willsSeen(b.port, 2000);
    assert.deepEqual(seen.map((s) => s.topic).sort(), ['will/clean-311', 'will/kept-311', 'will/v5']);
    await kill(b.child);
    // published once: a second restart finds nothing left to send
    b = await start(dataDir);
    assert.deepEqual((await willsSeen(b.port, 1000)).map((s) => s.topic), []);
    await kill(b.child);
  });

  test('[MQTT-3.1.3-9] a will delay runs from the crash: a client back within it after the restart has its will dropped, another\'s is published when its delay ends', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-will-delay-'));
    let b = await start(dataDir);
    const w = await watcher(b.port);
    w.close();
    await rawConnect(b.port, 5, { clientId: 'returns', clean: false, properties: { sessionExpiryInterval: 3600 }, will: will('returns', 30) });
    await rawConnect(b.port, 5, { clientId: 'waits', clean: false, properties: { sessionExpiryInterval: 3600 }, will: will('waits', 2) });
    await new Promise((r) => setTimeout(r, 300));
    await kill(b.child);
    // down for longer than the 2 s delay: that will is due before the broker is back
    await new Promise((r) => setTimeout(r, 2500));
    b = await start(dataDir);
    const started = Date.now();
    const back = await rawConnect(b.port, 5, { clientId: 'returns', clean: false, properties: { sessionExpiryInterval: 3600 } });
    assert.equal(back.connack.sessionPresent, true);
    const seen = await willsSeen(b.port, 4000);
    assert.deepEqual(seen.map((s) => s.topic), ['will/waits'], 'the returning client\'s will is not sent; the other one is');
    const at = (seen[0]?.at ?? 0) - started;
    assert.ok(at < 1500, `sent ${at} ms after the restart: its 2 s delay counts from the crash, not from the restart`);
    back.raw.close();
    await kill(b.child);
  });

  test('[MQTT-3.1.2-23] [MQTT-4.1.0-2] a session connected when the broker is killed counts its expiry interval from the crash, not from the restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-crash-expiry-'));
    let b = await start(dataDir);
    await rawConnect(b.port, 5, { clientId: 'brief', clean: false, properties: { sessionExpiryInterval: 2 } });
    await rawConnect(b.port, 5, { clientId: 'long', clean: false, properties: { sessionExpiryInterval: 3600 } });
    // the broker notes it is alive every second: the crash is placed within a second of when it happened
    await new Promise((r) => setTimeout(r, 1200));
    await kill(b.child);
    await new Promise((r) => setTimeout(r, 3500));
    b = await start(dataDir);
    const brief = await rawConnect(b.port, 5, { clientId: 'brief', clean: false, properties: { sessionExpiryInterval: 2 } });
    assert.equal(brief.connack.sessionPresent, false, 'a 2 s session down for 3.5 s has ended');
    const long = await rawConnect(b.port, 5, { clientId: 'long', clean: false, properties: { sessionExpiryInterval: 3600 } });
    assert.equal(long.connack.sessionPresent, true, 'a 1 h session is still there');
    brief.raw.close();
    long.raw.close();
    await kill(b.child);
  });
});
