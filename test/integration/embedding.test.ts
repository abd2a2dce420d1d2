import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { createBroker, type ClientInfo, type PublishInfo } from '../../src/index.js';
import { closeClients, connectClient, nextMessages } from '../helpers/broker.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

describe('embedding API: createBroker, hooks and events', () => {
  test('the README example runs: hooks given, listen, publish, close', async () => {
    const broker = await createBroker({
      persistence: 'memory',
      hooks: {
        authenticate: async (client, { username, password }) => true,
        authorizePublish: async (client, message) => true,
        authorizeSubscribe: async (client, { topicFilter, qos }) => topicFilter !== 'private/#',
      },
    });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const sub = await connectClient(port, { clientId: 'readme-sub' });
    await sub.subscribeAsync('greetings', { qos: 1 });
    const got = nextMessages(sub, 1);
    await broker.publish({ topic: 'greetings', payload: Buffer.from('hi'), qos: 1, retain: false });
    assert.equal((await got)[0]?.payload.toString(), 'hi');
    const { raw } = await rawConnect(port, 4, { clientId: 'readme-private' });
    const ack = await rawSubscribe(raw, 4, 1, [{ topic: 'private/#', qos: 0 }]);
    assert.deepEqual(ack.granted, [0x80]);
    raw.close();
    await closeClients();
    await broker.close();
  });

  test('synchronous hooks: authenticate refuses with CONNACK 0x86 (5.0) and return code 4 (3.1.1)', async () => {
    const broker = await createBroker({
      hooks: { authenticate: (_c, { username, password }) => username === 'u' && password?.toString() === 'p' },
    });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const v5 = await rawConnect(port, 5, { clientId: 'bad5', username: 'u', password: 'wrong' });
    assert.equal(v5.connack.reasonCode, 0x86);
    assert.ok(await v5.raw.waitClosed());
    const v4 = await rawConnect(port, 4, { clientId: 'bad4', username: 'u', password: 'wrong' });
    assert.equal(v4.connack.returnCode, 4);
    assert.ok(await v4.raw.waitClosed());
    const good = await rawConnect(port, 4, { clientId: 'good', username: 'u', password: 'p' });
    assert.equal(good.connack.returnCode, 0);
    good.raw.close();
    await broker.close();
  });

  test('a hook that throws or rejects counts as a refusal, and the broker keeps running', async () => {
    const broker = await createBroker({
      hooks: {
        authenticate: (client) => {
          if (client.id === 'throws') throw new Error('directory down');
          return true;
        },
        authorizeSubscribe: async () => {
          throw new Error('policy engine down');
        },
      },
    });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const t = await rawConnect(port, 5, { clientId: 'throws' });
    assert.equal(t.connack.reasonCode, 0x86);
    const ok = await rawConnect(port, 5, { clientId: 'fine' });
    assert.equal(ok.connack.reasonCode, 0);
    const ack = await rawSubscribe(ok.raw, 5, 1, [{ topic: 'x', qos: 1 }]);
    assert.deepEqual(ack.granted, [0x87]);
    ok.raw.close();
    await broker.close();
  });

  test('authorizePublish refusal: 5.0 gets PUBACK and PUBREC 0x87, 3.1.1 a plain ack, and nobody receives it', async () => {
    const broker = await createBroker({ hooks: { authorizePublish: async (_c, m) => m.topic !== 'no' } });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const watcher = await rawConnect(port, 5, { clientId: 'w' });
    await rawSubscribe(watcher.raw, 5, 1, [{ topic: 'no', qos: 2 }, { topic: 'yes', qos: 2 }]);
    const p5 = await rawConnect(port, 5, { clientId: 'p5' });
    p5.raw.sendPacket({ cmd: 'publish', topic: 'no', payload: Buffer.from('x'), qos: 1, messageId: 1 }, 5);
    assert.equal((await expectPacket(p5.raw, 'puback')).reasonCode, 0x87);
    p5.raw.sendPacket({ cmd: 'publish', topic: 'no', payload: Buffer.from('x'), qos: 2, messageId: 2 }, 5);
    assert.equal((await expectPacket(p5.raw, 'pubrec')).reasonCode, 0x87);
    const p4 = await rawConnect(port, 4, { clientId: 'p4' });
    p4.raw.sendPacket({ cmd: 'publish', topic: 'no', payload: Buffer.from('x'), qos: 1, messageId: 3 }, 4);
    assert.equal((await expectPacket(p4.raw, 'puback')).messageId, 3);
    p4.raw.sendPacket({ cmd: 'publish', topic: 'yes', payload: Buffer.from('allowed'), qos: 0 }, 4);
    const first = await expectPacket(watcher.raw, 'publish');
    assert.equal(first.topic, 'yes', 'the refused messages never arrived');
    assert.ok(broker.stats.droppedByReason.notAuthorized !== undefined && broker.stats.droppedByReason.notAuthorized >= 3);
    for (const c of [watcher, p5, p4]) c.raw.close();
    await broker.close();
  });

  test('events: clientConnected, subscribed, messagePublished, unsubscribed, clientDisconnected', async () => {
    const broker = await createBroker();
    const events: string[] = [];
    const published: Array<[PublishInfo, ClientInfo | undefined]> = [];
    broker.on('clientConnected', (c) => events.push(`connected ${c.id} v${c.protocolVersion}`));
    broker.on('subscribed', (c, f, q) => events.push(`subscribed ${c.id} ${f} ${q}`));
    broker.on('unsubscribed', (c, f) => events.push(`unsubscribed ${c.id} ${f}`));
    broker.on('messagePublished', (m, c) => published.push([m, c]));
    broker.on('clientDisconnected', (c, reason) => events.push(`disconnected ${c.id} ${reason}`));
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const c = await connectClient(port, { clientId: 'ev', protocolVersion: 5 });
    await c.subscribeAsync('ev/+', { qos: 1 });
    await c.publishAsync('ev/1', 'payload', { qos: 1 });
    await broker.publish({ topic: 'ev/2', payload: 'from app' });
    await c.unsubscribeAsync('ev/+');
    await c.endAsync();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(events.slice(0, 3), ['connected ev v5', 'subscribed ev ev/+ 1', 'unsubscribed ev ev/+']);
    assert.match(events[3] ?? '', /^disconnected ev /);
    assert.deepEqual(published.map(([m, cl]) => [m.topic, m.payload.toString(), m.qos, cl?.id]), [
      ['ev/1', 'payload', 1, 'ev'],
      ['ev/2', 'from app', 0, undefined],
    ]);
    await broker.close();
  });

  test('a listener that throws or rejects is logged, and the broker and the message go on; off() removes what on() added', async () => {
    const lines: string[] = [];
    const broker = await createBroker({ sysInterval: 0, logger: pino({ level: 'error' }, { write: (line: string) => void lines.push(line) }) });
    let seen = 0;
    const counted = (): void => void seen++;
    broker.on('messagePublished', () => {
      throw new Error('observer bug');
    });
    broker.on('clientConnected', async () => {
      throw new Error('async observer bug');
    });
    broker.on('messagePublished', counted);
    broker.on('messagePublished', counted);
    const removed = (): void => assert.fail('a removed listener was called');
    broker.on('messagePublished', removed);
    broker.off('messagePublished', removed);
    broker.off('messagePublished', counted);
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const sub = await connectClient(port, { clientId: 'observed-sub' });
    await sub.subscribeAsync('observed/#', { qos: 1 });
    const got = nextMessages(sub, 2);
    const pub = await connectClient(port, { clientId: 'observed-pub', protocolVersion: 5 });
    await pub.publishAsync('observed/1', 'one', { qos: 1 });
    await broker.publish({ topic: 'observed/2', payload: 'two', qos: 1 });
    assert.deepEqual((await got).map((m) => m.payload.toString()), ['one', 'two']);
    assert.equal(seen, 2, 'the listener added twice and removed once is called once a message');
    const failures = lines.map((l) => JSON.parse(l) as { event: string; msg: string; err: { stack: string } });
    assert.ok(failures.some((f) => f.event === 'messagePublished' && f.msg === "a 'messagePublished' listener failed: observer bug" && f.err.stack.includes('observer bug')));
    assert.ok(failures.some((f) => f.event === 'clientConnected' && f.msg === "a 'clientConnected' listener failed: async observer bug"));
    await closeClients();
    await broker.close();
  });

  test('createBroker refuses an unknown option or a bad limit with one line naming it', async () => {
    await assert.rejects(createBroker({ limits: { maxInflight: 0 } }), /limits\.maxInflight must be an integer between 1 and 65535/);
    await assert.rejects(createBroker({ limits: { nope: 1 } as never }), /unknown setting "limits\.nope"/);
    await assert.rejects(createBroker({ persistence: 'floppy' as never }), /persistence must be one of/);
  });

  test('hooks, mqtt5 and authenticators are checked as limits are: an unknown name or a value of the wrong type is refused, naming it', async () => {
    // a misspelt authorization hook would leave everything allowed
    await assert.rejects(createBroker({ hooks: { authorizeSubscription: () => false } } as never), /createBroker options: unknown setting "hooks\.authorizeSubscription" \(the hooks are authenticate, authorizePublish, authorizeSubscribe\)/);
    await assert.rejects(createBroker({ hooks: { authenticate: true } } as never), /createBroker options: hooks\.authenticate must be a function \(got boolean\)/);
    await assert.rejects(createBroker({ hooks: 'none' } as never), /createBroker options: hooks must be an object of functions/);
    await assert.rejects(createBroker({ mqtt5: { maxQoS: 1 } } as never), /createBroker options: unknown setting "mqtt5\.maxQoS" \(known: .*maximumQoS/);
    for (const maximumQoS of [5, '1', -1]) await assert.rejects(createBroker({ mqtt5: { maximumQoS } } as never), /createBroker options: mqtt5\.maximumQoS must be 0, 1 or 2/);
    await assert.rejects(createBroker({ mqtt5: { retainAvailable: 'no' } } as never), /createBroker options: mqtt5\.retainAvailable must be true or false/);
    await assert.rejects(createBroker({ mqtt5: { serverReference: 7 } } as never), /createBroker options: mqtt5\.serverReference must be a string/);
    // authenticators too: a wrong one would fail only when a client first asked for it
    await assert.rejects(createBroker({ authenticators: {} } as never), /createBroker options: authenticators must be a list of \{ method, start \} objects/);
    await assert.rejects(createBroker({ authenticators: [{ method: 'X', start: 'no' }] } as never), /createBroker options: authenticators\[0\] must have a method name and a start function/);
    const start = (): never => {
      throw new Error('not called');
    };
    await assert.rejects(createBroker({ authenticators: [{ method: 'X', start }, { method: 'X', start }] } as never), /authenticators\[1\]: method "X" is named twice/);
    // what is known and left undefined is no mistake
    const broker = await createBroker({ hooks: { authenticate: undefined, authorizeSubscribe: () => true }, mqtt5: { maximumQoS: 1, serverReference: undefined }, sysInterval: 0 });
    await broker.close();
  });

  test('settings createBroker cannot act on, and options listen, listenHttp and handle do not know, are refused with what to use instead', async () => {
    await assert.rejects(createBroker({ httpPort: 8080 } as never), /"httpPort" is a setting of the command line.*broker\.listenHttp/);
    await assert.rejects(createBroker({ listeners: [{ protocol: 'ws', port: 0 }] } as never), /"listeners".*broker\.listen\(options\)/);
    await assert.rejects(createBroker({ logLevel: 'debug' } as never), /"logLevel".*pino/);
    await assert.rejects(createBroker({ adminToken: 'T' } as never), /"adminToken"/);
    const broker = await createBroker();
    try {
      await assert.rejects(broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws', path: '/custom' } as never), /listen: unknown option "path": the WebSocket path is wsPath/);
      await assert.rejects(broker.listen({ port: 0, protocol: 'bogus' } as never), /listen: protocol must be one of mqtt, mqtts, ws, wss \(got "bogus"\)/);
      await assert.rejects(broker.listenHttp({ port: 0, token: 'T' } as never), /listenHttp: unknown option "token" \(known: port, host, adminToken\)/);
      assert.throws(() => broker.handle(new PassThrough(), { username: 'u' } as never), /handle: unknown option "username"/);
      // nothing was left listening by the refusals, and the path that is known is served
      const { port } = await broker.listen({ port: 0, host: '127.0.0.1', protocol: 'ws', wsPath: '/custom' });
      const client = await connectClient(port, { protocol: 'ws', path: '/custom', clientId: 'custom-path' } as never);
      await client.endAsync();
    } finally {
      await broker.close();
    }
  });

  test('$SYS topics are published for a broker served only through handle()', async () => {
    const broker = await createBroker({ sysInterval: 1 });
    const server = createServer((socket) => broker.handle(socket));
    try {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { raw } = await rawConnect((server.address() as AddressInfo).port, 4, { clientId: 'sys-handled' });
      await rawSubscribe(raw, 4, 1, [{ topic: '$SYS/#', qos: 0 }]);
      const topics = (await drainFor(raw, 1500)).filter((p) => p.cmd === 'publish').map((p) => p.topic);
      for (const t of ['$SYS/broker/version', '$SYS/broker/uptime', '$SYS/broker/clients/connected']) assert.ok(topics.includes(t), `${t} in ${topics.length} topics`);
      raw.close();
    } finally {
      server.close();
      await broker.close();
    }
  });

  test('a second close() settles with the first, not before: the data dir is free once it has', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-close-twice-'));
    const broker = await createBroker({ persistence: 'lmdb', dataDir, sysInterval: 0 });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const client = await connectClient(port, { protocolVersion: 4, clientId: 'stays' });
    const first = broker.close();
    // a signal handler and the application's own shutdown path, say
    await broker.close();
    const again = await createBroker({ persistence: 'lmdb', dataDir, sysInterval: 0 });
    await again.close();
    await first;
    client.end(true);
  });

  test('[MQTT-4.7.3-3] broker.publish refuses a topic with wildcards, or longer than 65,535 bytes', async () => {
    const broker = await createBroker();
    await assert.rejects(broker.publish({ topic: 'a/+', payload: 'x' }), /invalid topic/);
    await assert.rejects(broker.publish({ topic: 'é'.repeat(32768), payload: 'x' }), /invalid topic/);
    await broker.close();
  });
});
