// Persistence benchmarks: QoS 1 throughput into persistent sessions with lmdb vs memory, and the
// time to restart with many sessions and queued messages.
// Usage: npm run build && node dist/bench/persistence.js [--messages 20000] [--subscribers 10] [--sessions 100000] [--queued 1000000]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { connect, type Socket } from 'node:net';
import { createBroker } from '../src/index.js';
import { LmdbStore } from '../src/persistence/lmdb-store.js';
import { createMessage } from '../src/session/message.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    subscribers: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '100000' },
    queued: { type: 'string', default: '1000000' },
  },
});
const MESSAGES = Number(values.messages);
const SUBSCRIBERS = Number(values.subscribers);
const SESSIONS = Number(values.sessions);
const QUEUED = Number(values.queued);
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** A minimal MQTT 3.1.1 client on a raw socket: no library overhead in the measurement. */
class Client {
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  onPacket: (p: mqttPacket.Packet) => void = () => undefined;
  private constructor(readonly socket: Socket) {
    this.parser.on('packet', (p: mqttPacket.Packet) => this.onPacket(p));
    socket.on('data', (d) => this.parser.parse(d));
  }
  static async open(port: number, clientId: string, clean: boolean): Promise<Client> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
      s.once('error', reject);
    });
    const c = new Client(socket);
    const acked = new Promise<void>((resolve) => (c.onPacket = (p) => p.cmd === 'connack' && resolve()));
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, keepalive: 0, clientId });
    await acked;
    return c;
  }
  send(p: Record<string, unknown>): void {
    this.socket.write(mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 }));
  }
}

async function startChild(persistence: string, dataDir: string): Promise<{ child: ChildProcess; port: number }> {
  // queues deep enough that nothing is dropped: the measurement is of delivery, not of drop policy
  const config = join(dataDir, 'bench.yaml');
  writeFileSync(config, 'limits:\n  maxQueuedMessages: 10000000\n');
  const child = spawn(process.execPath, [MAIN, '--config', config, '--port', '0', '--persistence', persistence, '--data-dir', join(dataDir, 'data'), '--log-level', 'silent'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // midge says where it listens on stderr (stdout holds its JSON log); the rest is shown as before
  let out = '';
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
    process.stderr.write(d);
  });
  for (;;) {
    const m = /listening on mqtt:\/\/[^\s]+:(\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Publishes MESSAGES QoS 1 messages (window 100) to SUBSCRIBERS persistent QoS 1 subscribers; returns messages/s. */
async function throughput(persistence: string): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), 'midge-bench-'));
  const { child, port } = await startChild(persistence, dataDir);
  let delivered = 0;
  const subs: Client[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const c = await Client.open(port, `bench-sub-${i}`, false);
    const subscribed = new Promise<void>((resolve) => (c.onPacket = (p) => p.cmd === 'suback' && resolve()));
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/#', qos: 1 }] });
    await subscribed;
    c.onPacket = (p) => {
      if (p.cmd !== 'publish') return;
      delivered++;
      c.send({ cmd: 'puback', messageId: (p as mqttPacket.IPublishPacket).messageId });
    };
    subs.push(c);
  }
  const pub = await Client.open(port, 'bench-pub', true);
  const payload = Buffer.alloc(64, 0x61);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let acked = 0;
    const fill = (): void => {
      while (sent < MESSAGES && sent - acked < 100) {
        pub.send({ cmd: 'publish', topic: 'bench/t', payload, qos: 1, messageId: (sent % 65535) + 1 });
        sent++;
      }
    };
    pub.onPacket = (p) => {
      if (p.cmd !== 'puback') return;
      acked++;
      if (acked === MESSAGES) resolve();
      else fill();
    };
    fill();
  });
  const deadline = Date.now() + 120_000;
  while (delivered < MESSAGES * SUBSCRIBERS) {
    if (Date.now() > deadline) throw new Error(`only ${delivered} of ${MESSAGES * SUBSCRIBERS} deliveries arrived`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of [...subs, pub]) c.socket.destroy();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
  return MESSAGES / seconds;
}

/** Fills a data dir with SESSIONS sessions and QUEUED queued messages, then times a broker start on it. */
async function restartTime(): Promise<{ fillSeconds: number; readySeconds: number }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'midge-bench-restart-'));
  const t0 = process.hrtime.bigint();
  const store = LmdbStore.open(dataDir);
  const perSession = Math.ceil(QUEUED / SESSIONS);
  // a few hundred distinct messages, each queued to many sessions, as fan-out produces
  const messages = Array.from({ length: 500 }, (_, i) => createMessage(`fleet/${i}`, Buffer.alloc(100, 0x62), 1, false, undefined, { now: Date.now }, 'bench'));
  let queued = 0;
  for (let s = 0; s < SESSIONS; s++) {
    const clientId = `device-${s}`;
    store.sessionSaved({ clientId, expiryInterval: 0xffffffff, expiresAt: undefined });
    store.subscriptionAdded(clientId, { filter: `fleet/#`, topicFilter: 'fleet/#', shareGroup: undefined, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
    for (let q = 0; q < perSession && queued < QUEUED; q++, queued++) {
      const message = messages[(s + q) % messages.length] as (typeof messages)[number];
      store.messageQueued(clientId, { message, qos: 1, retain: false, subscriptionIds: undefined, share: undefined });
    }
    if (s % 5000 === 0) await store.commit();
  }
  await store.close();
  const fillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const t1 = process.hrtime.bigint();
  const broker = await createBroker({ persistence: 'lmdb', dataDir, sysInterval: 0 });
  await broker.listen({ port: 0, host: '127.0.0.1' });
  const readySeconds = Number(process.hrtime.bigint() - t1) / 1e9;
  const stats = broker.stats;
  if (stats.sessions !== SESSIONS || stats.queued !== QUEUED) throw new Error(`restored ${stats.sessions} sessions, ${stats.queued} queued`);
  await broker.close();
  rmSync(dataDir, { recursive: true, force: true });
  return { fillSeconds, readySeconds };
}

const memory = await throughput('memory');
const lmdb = await throughput('lmdb');
console.log(`QoS 1 into ${SUBSCRIBERS} persistent sessions, ${MESSAGES} messages of 64 bytes, publisher window 100:`);
console.log(`  memory  ${memory.toFixed(0)} msg/s`);
console.log(`  lmdb    ${lmdb.toFixed(0)} msg/s   (lmdb/memory = ${(lmdb / memory).toFixed(2)})`);
const r = await restartTime();
console.log(`restart with ${SESSIONS} sessions and ${QUEUED} queued messages: ready in ${r.readySeconds.toFixed(2)} s (filling the store took ${r.fillSeconds.toFixed(1)} s)`);
