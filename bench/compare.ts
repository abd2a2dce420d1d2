// Midge, Mosquitto (when installed) and Aedes side by side: each broker pinned to one core, the load
// generator to the other, scenarios run alternately several times; prints medians and ratios.
// Usage: npm run bench:compare [-- --runs 3 --duration 5 --brokers midge,mosquitto,aedes --scenarios fanin-q0,fanin-q1]
// `--brokers` also takes forwarder-node and forwarder-c (fan-in scenarios only): programs that do
// nothing but pass each PUBLISH on (bench/forwarder.ts, bench/forwarder.c), the floor of what a
// Node or a C program pays on this machine with this generator.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const AEDES = fileURLToPath(new URL('./aedes-server.js', import.meta.url));
const FORWARDER_JS = fileURLToPath(new URL('./forwarder.js', import.meta.url));
// compiled output sits in dist/bench; the C source stays in bench/
const FORWARDER_C = fileURLToPath(new URL('../../bench/forwarder.c', import.meta.url));
const BROKER_CPU = '0';
const LOAD_CPU = '1';

interface Scenario {
  name: string;
  args: string[];
  /** what the table shows for it */
  metric: 'delivered' | 'p99' | 'kib' | 'cpu';
  /**
   * QoS 1 scenarios give every broker queues deep enough that no acknowledged message is dropped;
   * QoS 0 ones keep each broker's default queue (1,000 messages in both Midge and Mosquitto), where
   * dropping what a slow subscriber cannot take is what QoS 0 allows and what users run with.
   */
  deepQueues: boolean;
  /** every publisher to one subscriber: what the forwarders can stand in for */
  fanIn?: true;
}

// Full-speed scenarios offer more than any of the brokers can take (fan-out: 5,000 msg/s to 100
// subscribers is 500,000 deliveries/s offered), so each delivers at its own limit. The fixed-rate
// cpu-* scenarios compare broker CPU time per delivery at loads every broker keeps up with.
const SCENARIOS: Record<string, Scenario> = {
  'cpu-fanin-q0': { name: 'broker CPU µs per delivery, fan-in QoS 0 at 50,000 msg/s', args: ['fanin', '--qos', '0', '--publishers', '10', '--rate', '50000'], metric: 'cpu', deepQueues: false, fanIn: true },
  'cpu-fanin-q1': { name: 'broker CPU µs per delivery, fan-in QoS 1 at 20,000 msg/s', args: ['fanin', '--qos', '1', '--publishers', '10', '--rate', '20000'], metric: 'cpu', deepQueues: true, fanIn: true },
  'cpu-fanout-q1': { name: 'broker CPU µs per delivery, fan-out QoS 1 at 500 x 100 msg/s', args: ['fanout', '--qos', '1', '--subscribers', '100', '--rate', '500'], metric: 'cpu', deepQueues: true },
  'cpu-pairs-q1': { name: 'broker CPU µs per delivery, 1,000 pairs QoS 1 at 10,000 msg/s', args: ['pairs', '--qos', '1', '--publishers', '1000', '--rate', '10000', '--inflight', '10'], metric: 'cpu', deepQueues: true },
  'fanin-q0': { name: 'fan-in QoS 0 (10 -> 1), 1,000,000 msg/s offered', args: ['fanin', '--qos', '0', '--publishers', '10', '--rate', '1000000'], metric: 'delivered', deepQueues: false, fanIn: true },
  'fanin-q1': { name: 'fan-in QoS 1 (10 -> 1), 100 in flight per publisher', args: ['fanin', '--qos', '1', '--publishers', '10'], metric: 'delivered', deepQueues: true, fanIn: true },
  'fanout-q0': { name: 'fan-out QoS 0 (1 -> 100), 5,000 msg/s in', args: ['fanout', '--qos', '0', '--subscribers', '100', '--rate', '5000'], metric: 'delivered', deepQueues: false },
  'fanout-q1': { name: 'fan-out QoS 1 (1 -> 100), 5,000 msg/s in', args: ['fanout', '--qos', '1', '--subscribers', '100', '--rate', '5000'], metric: 'delivered', deepQueues: true },
  'pairs-q1': { name: '1,000 pairs QoS 1, 10 in flight per publisher', args: ['pairs', '--qos', '1', '--publishers', '1000', '--inflight', '10'], metric: 'delivered', deepQueues: true },
  // a p99 from 5 s swings by up to 2x between runs of the same broker here; 15 s runs steady it
  'latency-q1': { name: 'p99 latency at 5,000 msg/s QoS 1 (ms, 15 s runs)', args: ['fanin', '--qos', '1', '--publishers', '10', '--rate', '5000', '--duration', '15'], metric: 'p99', deepQueues: true, fanIn: true },
  'latency-q1-spread': { name: 'p99 latency at 5,000 msg/s QoS 1, each message at its own time (ms, 15 s runs)', args: ['fanin', '--qos', '1', '--publishers', '10', '--rate', '5000', '--spread', '--duration', '15'], metric: 'p99', deepQueues: true, fanIn: true },
  // 50 subscribers that read nothing beside the one that reads, 1 KB messages: each broker drops
  // what the stalled ones cannot take (queues of 1,000); what that costs shows in the reader's
  // latency and in the broker's CPU per message
  'stalled-q0': { name: 'p99 latency with 50 stalled subscribers, fan-in QoS 0 1 KB at 10,000 msg/s (ms)', args: ['fanin', '--qos', '0', '--publishers', '10', '--size', '1024', '--rate', '10000', '--stalled', '50', '--duration', '15'], metric: 'p99', deepQueues: false },
  'cpu-stalled-q0': { name: 'broker CPU µs per message with 50 stalled subscribers, fan-in QoS 0 1 KB at 10,000 msg/s', args: ['fanin', '--qos', '0', '--publishers', '10', '--size', '1024', '--rate', '10000', '--stalled', '50'], metric: 'cpu', deepQueues: false },
  // 60 s: V8 gives back the young generation grown for the burst of connections 20-40 s after it
  conn: { name: 'memory per idle connection (KiB, 19,000 connections, after 60 s idle)', args: ['conn', '--connections', '19000', '--duration', '60'], metric: 'kib', deepQueues: false },
};

const USAGE = `usage: npm run bench:compare -- [--runs N] [--duration S] [--brokers LIST] [--scenarios LIST] [--port N]
  --runs N          rounds; each runs every scenario once per broker (default 3)
  --duration S      seconds per run, where the scenario does not set its own (default 5)
  --brokers LIST    midge first, then any of midge-drop-new (limits.queueFullDrop: new), mosquitto,
                    aedes, forwarder-node, forwarder-c (default midge,mosquitto,aedes)
  --scenarios LIST  any of ${Object.keys(SCENARIOS).join(', ')} (default all)
  --port N          the port every broker listens on (default 18830)`;

/** A run that cannot go on (a broker that does not start, a failed load run): one line, no stack. */
function fail(message: string): never {
  console.error(`bench:compare: ${message}`);
  process.exit(1);
}

/** A mistake in the flags: one line and the usage, no stack. */
function usageError(message: string): never {
  console.error(`bench:compare: ${message}\n${USAGE}`);
  process.exit(2);
}

let values: { runs: string; duration: string; brokers: string; scenarios: string; port: string; help?: boolean };
try {
  values = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5' },
      brokers: { type: 'string', default: 'midge,mosquitto,aedes' },
      scenarios: { type: 'string', default: Object.keys(SCENARIOS).join(',') },
      port: { type: 'string', default: '18830' },
      help: { type: 'boolean' },
    },
  }).values as typeof values;
} catch (err) {
  usageError((err as Error).message);
}
if (values.help === true) {
  console.log(USAGE);
  process.exit(0);
}
/** A whole number in [min, max], or a usage error naming the flag. */
function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) usageError(`--${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}
const RUNS = wholeNumber('runs', values.runs, 1, 1000);
const PORT = wholeNumber('port', values.port, 1, 65535);
wholeNumber('duration', values.duration, 1, 3600);

function hasMosquitto(): boolean {
  return spawnSync('mosquitto', ['-h']).error === undefined;
}

/** Builds the C forwarder once per run of this script; undefined when there is no C compiler. */
let forwarderBinary: string | undefined | null = null;
function cForwarder(): string | undefined {
  if (forwarderBinary !== null) return forwarderBinary;
  const out = join(mkdtempSync(join(tmpdir(), 'midge-fwd-')), 'forwarder');
  const cc = spawnSync('cc', ['-O2', '-o', out, FORWARDER_C], { encoding: 'utf8' });
  forwarderBinary = cc.status === 0 && existsSync(out) ? out : undefined;
  if (forwarderBinary === undefined) console.error(`forwarder-c left out: cc could not build ${FORWARDER_C}${cc.error ? ` (${cc.error.message})` : `: ${cc.stderr.trim()}`}`);
  return forwarderBinary;
}

function waitForPort(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const attempt = (): void => {
      const s = createConnection({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => (Date.now() > deadline ? reject(new Error(`nothing listens on ${port}`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

async function startBroker(name: string, deepQueues: boolean): Promise<ChildProcess> {
  let cmd: string[];
  if (name === 'midge' || name === 'midge-drop-new') {
    const cfg = join(mkdtempSync(join(tmpdir(), 'midge-cmp-')), 'midge.yaml');
    // midge-drop-new: a full queue drops the new message, as Mosquitto's does
    writeFileSync(cfg, `limits:\n  maxInflight: 1000\n${deepQueues ? '  maxQueuedMessages: 1000000\n' : ''}${name === 'midge-drop-new' ? '  queueFullDrop: new\n' : ''}`);
    cmd = [process.execPath, MAIN, '--config', cfg, '--port', String(PORT), '--persistence', 'memory', '--log-level', 'warn', '--sys-interval', '0'];
  } else if (name === 'mosquitto') {
    const cfg = join(mkdtempSync(join(tmpdir(), 'mosq-cmp-')), 'mosquitto.conf');
    writeFileSync(cfg, `listener ${PORT} 127.0.0.1\nallow_anonymous true\nlog_dest none\nmax_inflight_messages 1000\nsys_interval 0\n${deepQueues ? 'max_queued_messages 1000000\n' : ''}`);
    cmd = ['mosquitto', '-c', cfg];
  } else if (name === 'forwarder-node') {
    cmd = [process.execPath, FORWARDER_JS, String(PORT)];
  } else if (name === 'forwarder-c') {
    cmd = [cForwarder() as string, String(PORT)];
  } else {
    cmd = [process.execPath, AEDES, String(PORT)];
  }
  const child = spawn('taskset', ['-c', BROKER_CPU, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
  // what a broker says on stderr is shown, but for Midge's start-up lines, the same every round
  child.stderr?.on('data', (d: Buffer) => {
    const shown = d.toString().split('\n').filter((l) => l !== '' && !/^(midge \S+ listening on |only this machine )/.test(l));
    if (shown.length > 0) process.stderr.write(`${shown.join('\n')}\n`);
  });
  await waitForPort(PORT);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((r) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      r(undefined);
    });
  });
}

function runLoad(s: Scenario, pid: number): Record<string, unknown> {
  // the scenario's own options come last, so that they override the common ones (conn's idle time)
  const r = spawnSync('taskset', ['-c', LOAD_CPU, process.execPath, MAIN, 'bench', '--port', String(PORT), '--duration', values.duration, '--warmup', '1', '--pid', String(pid), '--json', ...s.args], { encoding: 'utf8', timeout: 600_000 });
  if (r.error !== undefined) throw new Error(`the load generator: ${r.error.message}`);
  if (r.status !== 0) {
    // the bench's own line, without the CLI's prefix
    const said = r.stderr.trim().split('\n').pop()?.replace(/^midge: bench: /, '');
    throw new Error(said || `the load generator exited with code ${String(r.status)}`);
  }
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

function value(s: Scenario, r: Record<string, unknown>): number {
  if (s.metric === 'delivered') return r.deliveredPerSecond as number;
  if (s.metric === 'p99') return (r.latencyMs as { p99: number }).p99;
  if (s.metric === 'cpu') {
    const cpu = (r.broker as { cpuPercent: number } | undefined)?.cpuPercent ?? NaN;
    // % of a core / deliveries per second = core-seconds per delivery; shown in µs
    return ((cpu / 100) / (r.deliveredPerSecond as number)) * 1e6;
  }
  return ((r.broker as { rssPerConnectionKiB?: number } | undefined)?.rssPerConnectionKiB ?? NaN);
}

/** Midge's figure against another's, above 1 when Midge's is better: higher throughput, lower latency, CPU and memory. */
function ratio(s: Scenario, midge: number, other: number): number {
  return s.metric === 'delivered' ? midge / other : other / midge;
}

const median = (xs: number[]): number => {
  const a = [...xs].sort((p, q) => p - q);
  return a.length === 0 ? NaN : (a[Math.floor(a.length / 2)] as number);
};

const KNOWN = ['midge', 'midge-drop-new', 'mosquitto', 'aedes', 'forwarder-node', 'forwarder-c'];
const brokers = values.brokers.split(',').filter((b) => {
  if (!KNOWN.includes(b)) usageError(`unknown broker "${b}" (known: ${KNOWN.join(', ')})`);
  return (b !== 'mosquitto' || hasMosquitto()) && (b !== 'forwarder-c' || cForwarder() !== undefined);
});
if (brokers[0] !== 'midge') usageError('--brokers must start with midge: every ratio is taken against it');
const isForwarder = (b: string): boolean => b.startsWith('forwarder-');
const scenarios = values.scenarios.split(',').map((k) => {
  const s = SCENARIOS[k];
  if (s === undefined) usageError(`unknown scenario "${k}" (known: ${Object.keys(SCENARIOS).join(', ')})`);
  return s;
});
// Another program on the port would answer in the brokers' place (and each broker would fail to listen)
const portFree = await new Promise<boolean>((resolve) => {
  const probe = createServer();
  probe.once('error', () => resolve(false));
  probe.listen(PORT, '127.0.0.1', () => probe.close(() => resolve(true)));
});
if (!portFree) fail(`port ${PORT} is in use by another program: stop it or choose another port with --port`);
const results = new Map<string, number[]>();
const issues: string[] = [];
/** per run: each side's CPU in throughput runs, memory right after connecting */
const cpuNotes: string[] = [];
for (const s of scenarios) {
  for (let run = 0; run < RUNS; run++) {
    // alternate the order, so that no broker always runs on a warmer or colder machine
    const order = run % 2 === 0 ? brokers : [...brokers].reverse();
    for (const b of order) {
      if (isForwarder(b) && s.fanIn !== true) continue;
      const child = await startBroker(b, s.deepQueues).catch((err: unknown) => fail(`${b} did not start: ${(err as Error).message}`));
      let r: Record<string, unknown> | undefined;
      let error: unknown;
      try {
        r = runLoad(s, child.pid as number);
      } catch (err) {
        error = err;
      }
      await stop(child);
      if (r === undefined) fail(`${b}, ${s.name}: ${(error as Error).message}`);
      const key = `${s.name}\u0000${b}`;
      results.set(key, [...(results.get(key) ?? []), value(s, r)]);
      if ((r.lost as number) > 0 || (r.duplicated as number) > 0) issues.push(`${b}, ${s.name}: lost ${String(r.lost)}, duplicated ${String(r.duplicated)}`);
      const brokerCpu = (r.broker as { cpuPercent?: number } | undefined)?.cpuPercent ?? NaN;
      const generatorCpu = r.generatorCpuPercent as number;
      // a saturated generator only clouds the result when the broker still had room
      if (s.metric === 'delivered' && generatorCpu > 90 && !(brokerCpu >= 90)) {
        issues.push(`${b}, ${s.name}: the load generator used ${generatorCpu.toFixed(0)}% of its core and the broker ${brokerCpu.toFixed(0)}% of its own: the generator may have been the limit`);
      }
      if (s.metric === 'delivered') cpuNotes.push(`${b}, ${s.name}: broker ${brokerCpu.toFixed(0)}%, generator ${generatorCpu.toFixed(0)}%`);
      const justConnected = (r.broker as { rssPerConnectionJustConnectedKiB?: number } | undefined)?.rssPerConnectionJustConnectedKiB;
      if (justConnected !== undefined) cpuNotes.push(`${b}, ${s.name}: ${justConnected.toFixed(2)} KiB per connection right after connecting`);
    }
  }
}

const header = ['scenario', ...brokers.map((b) => `${b} (median of ${RUNS})`), ...brokers.filter((b) => b !== 'midge').map((b) => `midge / ${b}`)];
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const s of scenarios) {
  const med = brokers.map((b) => median(results.get(`${s.name}\u0000${b}`) ?? []));
  const midge = med[0] as number;
  // a forwarder has no figure for a scenario it cannot stand in for
  const ratios = brokers.slice(1).map((_b, i) => (Number.isNaN(med[i + 1]) ? '-' : ratio(s, midge, med[i + 1] as number).toFixed(2) + 'x'));
  const fmt = (n: number): string => (Number.isNaN(n) ? '-' : s.metric === 'delivered' ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
  console.log(`| ${s.name} | ${med.map(fmt).join(' | ')} | ${ratios.join(' | ')} |`);
}
console.log('\nratios: above 1.00x means Midge is better (more messages, lower latency, less memory)');
// Each run's brokers ran back to back, so a run's ratio is taken on one state of a shared, noisy
// machine; its median, and how many runs Midge was ahead in, drift less than the medians above.
if (RUNS > 1 && brokers.length > 1) {
  console.log('\nrun by run (median of each run\'s ratio; runs in which Midge was ahead):');
  for (const s of scenarios) {
    const ours = results.get(`${s.name}\u0000${brokers[0] as string}`) ?? [];
    const against = brokers.slice(1).filter((b) => results.has(`${s.name}\u0000${b}`)).map((b) => {
      const theirs = results.get(`${s.name}\u0000${b}`) ?? [];
      const ratios = ours.map((v, i) => ratio(s, v, theirs[i] as number));
      return `${b} ${median(ratios).toFixed(2)}x (ahead in ${ratios.filter((r) => r > 1).length} of ${ratios.length})`;
    });
    console.log(`  ${s.name}: ${against.join(', ')}`);
  }
}
for (const i of issues) console.log(`note: ${i}`);
if (cpuNotes.length > 0) console.log('\nper run (CPU as % of one core):');
for (const n of cpuNotes) console.log(`  ${n}`);
