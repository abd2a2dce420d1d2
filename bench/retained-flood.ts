// What one client flooding the broker with retained messages costs everyone else: a client
// publishes 100,000 retained messages on distinct topics (r/<n>) as fast as the broker takes them,
// while a publisher and a subscriber, strangers to it, pass one message every 10 ms. Prints the
// pair's delay during the flood (p50, p99, max) and the flood's rate, for each broker, rounds
// alternating. The broker, the flood and this process (the pair) each run apart, unpinned.
// Usage: npm run build && node dist/bench/retained-flood.js [--runs 3] [--count 100000] [--qos 0|1]
//        [--store memory|lmdb] [--brokers midge,mosquitto] [--port 18840]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqttPacket from 'mqtt-packet';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    count: { type: 'string', default: '100000' },
    qos: { type: 'string', default: '0' },
    store: { type: 'string', default: 'memory' },
    brokers: { type: 'string', default: 'midge,mosquitto' },
    port: { type: 'string', default: '18840' },
  },
});
const PORT = Number(values.port);
const COUNT = Number(values.count);
const QOS = Number(values.qos) as 0 | 1;
/** QoS 1 publishes the flood keeps unacknowledged */
const WINDOW = 100;

/** Connects a bare MQTT 3.1.1 client; `onPacket` gets each packet after CONNACK. */
function open(clientId: string, onPacket: (p: mqttPacket.Packet) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port: PORT, host: '127.0.0.1' });
    socket.setNoDelay(true);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: mqttPacket.Packet) => (p.cmd === 'connack' ? resolve(socket) : onPacket(p)));
    socket.on('data', (d) => parser.parse(d));
    socket.once('error', reject);
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId }));
  });
}

const frame = (n: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: `r/${n}`, payload: Buffer.from(`v${n}`), qos: QOS, messageId: (n % 65535) + 1, retain: true, dup: false });

/** The flood, in a process of its own: prints its rate once the broker has taken every message. */
async function flood(): Promise<void> {
  let sent = 0;
  let acked = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => (finish = r));
  const socket = await open(`flood-${process.pid}`, (p) => {
    if (p.cmd === 'puback' && ++acked === COUNT) finish();
    else if (p.cmd === 'puback') pump();
    else if (p.cmd === 'pingresp') finish();
  });
  const start = performance.now();
  function pump(): void {
    if (QOS === 1) {
      const frames: Buffer[] = [];
      while (sent < COUNT && sent - acked < WINDOW) frames.push(frame(sent++));
      if (frames.length > 0) socket.write(Buffer.concat(frames));
      return;
    }
    while (sent < COUNT) {
      const frames: Buffer[] = [];
      while (sent < COUNT && frames.length < 500) frames.push(frame(sent++));
      if (!socket.write(Buffer.concat(frames))) return void socket.once('drain', pump);
    }
    // handled in order: its answer means every publish before it was
    socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
  }
  pump();
  await finished;
  console.log(JSON.stringify({ rate: COUNT / ((performance.now() - start) / 1000) }));
  socket.destroy();
}

async function startBroker(name: string, dir: string): Promise<ChildProcess> {
  let cmd: string[];
  if (name === 'midge') {
    const store = values.store === 'lmdb' ? ['--data-dir', join(dir, 'data')] : ['--persistence', 'memory'];
    cmd = [process.execPath, MAIN, '--port', String(PORT), '--log-level', 'warn', ...store];
  } else {
    writeFileSync(join(dir, 'mosquitto.conf'), `listener ${PORT} 127.0.0.1\nallow_anonymous true\nlog_dest none\n`);
    cmd = ['mosquitto', '-c', join(dir, 'mosquitto.conf')];
  }
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = createConnection({ port: PORT, host: '127.0.0.1' }, () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (up) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`${name} does not listen on ${PORT}`);
}

interface Round {
  p50: number;
  p99: number;
  max: number;
  rate: number;
}

async function round(name: string): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), 'midge-retained-flood-'));
  const broker = await startBroker(name, dir);
  try {
    const delays: number[] = [];
    let recording = false;
    const sub = await open('probe-sub', (p) => {
      if (p.cmd === 'publish' && recording) delays.push(performance.now() - Number(p.payload.toString()));
    });
    sub.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'probe', qos: 0 }] }));
    const pub = await open('probe-pub', () => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const ticker = setInterval(() => pub.write(mqttPacket.generate({ cmd: 'publish', topic: 'probe', payload: String(performance.now()), qos: 0, retain: false, dup: false })), 10);
    await new Promise((r) => setTimeout(r, 500));
    recording = true;
    const load = spawn(process.execPath, [fileURLToPath(import.meta.url), 'flood', '--port', String(PORT), '--count', String(COUNT), '--qos', String(QOS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    load.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => load.once('exit', r));
    await new Promise((r) => setTimeout(r, 200));
    recording = false;
    clearInterval(ticker);
    sub.destroy();
    pub.destroy();
    if (code !== 0) throw new Error(`the flood exited with ${String(code)}`);
    const sorted = delays.sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
    return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN, rate: (JSON.parse(out) as { rate: number }).rate };
  } finally {
    broker.kill('SIGTERM');
    await new Promise((r) => broker.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (positionals[0] === 'flood') {
  await flood();
} else {
  const brokers = values.brokers.split(',').filter((b) => b !== 'mosquitto' || spawnSync('mosquitto', ['-h']).error === undefined);
  const results = new Map<string, Round[]>(brokers.map((b) => [b, []]));
  for (let run = 0; run < Number(values.runs); run++) {
    for (const b of run % 2 === 0 ? brokers : [...brokers].reverse()) {
      const r = await round(b);
      results.get(b)?.push(r);
      console.log(`${b}: p50 ${r.p50.toFixed(1)}, p99 ${r.p99.toFixed(1)}, max ${r.max.toFixed(1)} ms; flood ${Math.round(r.rate).toLocaleString('en-US')} msg/s`);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  console.log(`\n${COUNT.toLocaleString('en-US')} retained messages at QoS ${QOS}${brokers.includes('midge') ? `, Midge's ${values.store} store` : ''}: the pair's delay, medians of ${values.runs} rounds`);
  for (const [b, rs] of results) {
    console.log(`  ${b}: p50 ${median(rs.map((r) => r.p50)).toFixed(1)}, p99 ${median(rs.map((r) => r.p99)).toFixed(1)}, max ${median(rs.map((r) => r.max)).toFixed(1)} ms; flood ${Math.round(median(rs.map((r) => r.rate))).toLocaleString('en-US')} msg/s`);
  }
}
