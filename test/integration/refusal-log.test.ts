import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { ClientInfo } from '../../src/index.js';
import { startBroker, type TestBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { eventually, rawConnect } from '../helpers/raw-session.js';

/** How the broker names the client's end: address:port. */
function addressOf(raw: RawClient): string {
  return `${raw.socket.localAddress ?? ''}:${raw.socket.localPort ?? ''}`;
}

interface LogEntry {
  msg: string;
  level: number;
  clientId?: string;
  address?: string;
  reason?: string;
  reasonCode?: number;
  suppressed?: number;
}

/**
 * An operator whose device cannot connect looks for it in the log, as Mosquitto's "Client X
 * disconnected, not authorised": a connection closed before its client was let in is logged, and
 * told to the application, as one let in is when it goes.
 */
describe('connections refused before their client is let in', () => {
  const entries: LogEntry[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void entries.push(JSON.parse(line) as LogEntry) });
  const refused: Array<[ClientInfo, string, number | undefined]> = [];
  let b: TestBroker;
  before(async () => {
    b = await startBroker({
      sysInterval: 0,
      logger,
      limits: { connectTimeoutMs: 300 },
      // "stuck": an authentication service that never answers
      hooks: { authenticate: (_client, { username }) => (username === 'stuck' ? new Promise<boolean>(() => undefined) : username !== 'mallory') },
    });
    b.broker.on('clientRefused', (client, reason, code) => void refused.push([client, reason, code]));
  });
  after(() => b.close());

  const linesFor = (address: string): LogEntry[] => entries.filter((e) => e.address === address && e.reason !== undefined);

  test('[MQTT-3.1.4-2] a CONNECT refused for its credentials is logged with the client identifier and the reason code', async () => {
    const { raw, connack } = await rawConnect(b.port, 5, { clientId: 'dev-17', username: 'mallory', password: Buffer.from('x') });
    assert.equal(connack.reasonCode, 0x86);
    assert.ok(await raw.waitClosed());
    assert.ok(await eventually(() => refused.some(([c]) => c.id === 'dev-17')));
    const line = entries.find((e) => e.clientId === 'dev-17' && e.reason !== undefined);
    assert.ok(line !== undefined, 'logged');
    assert.equal(line.level, 30);
    assert.equal(line.reasonCode, 0x86);
    assert.match(line.msg, /client dev-17 .*refused: .*\(0x86\)/);
  });

  test('[MQTT-3.1.0-1] a first packet other than CONNECT, and no CONNECT within the connect timeout, are logged with the peer address', async () => {
    const early = await RawClient.open(b.port, 4);
    const earlyAddress = addressOf(early);
    early.sendPacket({ cmd: 'pingreq' }, 4);
    assert.ok(await early.waitClosed());
    const silent = await RawClient.open(b.port, 4);
    const silentAddress = addressOf(silent);
    assert.ok(await silent.waitClosed(3000));
    for (const address of [earlyAddress, silentAddress]) {
      assert.ok(await eventually(() => linesFor(address).length === 1), `one line for ${address}: ${JSON.stringify(linesFor(address))}`);
    }
    assert.match(linesFor(earlyAddress)[0]?.msg ?? '', /refused: expected CONNECT first, got PINGREQ/);
    assert.match(linesFor(silentAddress)[0]?.msg ?? '', /refused: no CONNECT within the connect timeout/);
  });

  test('a CONNECT whose authentication does not finish within the connect timeout is closed, and the reason says so, not that no CONNECT came', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'waits', clean: true, keepalive: 0, username: 'stuck' }, 5);
    assert.ok(await raw.waitClosed(3000));
    assert.ok(await eventually(() => refused.some(([c]) => c.id === 'waits')));
    assert.deepEqual(
      refused.filter(([c]) => c.id === 'waits').map(([, reason]) => reason),
      ['authentication did not finish within the connect timeout'],
    );
    const line = entries.find((e) => e.clientId === 'waits' && e.reason !== undefined);
    assert.match(line?.msg ?? '', /client waits .*refused: authentication did not finish within the connect timeout/);
  });

  test('refusals past 10 a second are counted in one line, not logged one by one', async () => {
    const before = entries.length;
    const clients = await Promise.all(Array.from({ length: 30 }, (_, i) => rawConnect(b.port, 4, { clientId: `flood-${i}`, username: 'mallory', password: Buffer.from('x') })));
    for (const { raw } of clients) assert.ok(await raw.waitClosed());
    const lines = (): number => entries.slice(before).filter((e) => e.reason !== undefined).length;
    const suppressed = (): number => entries.slice(before).reduce((n, e) => n + (e.suppressed ?? 0), 0);
    // on a loaded machine the refusals may span two seconds, each counted once it is over
    assert.ok(await eventually(() => lines() + suppressed() === 30, 5000), `${lines()} lines and ${suppressed()} counted`);
    assert.ok(suppressed() > 0);
    assert.ok(lines() <= 20, `${lines()} lines`);
    assert.equal(refused.filter(([c]) => c.id.startsWith('flood-')).length, 30, 'the application hears of every one');
  });
});
