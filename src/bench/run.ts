import { performance } from 'node:perf_hooks';
import type { ProtocolVersion, QoS } from '../codec/index.js';
import { BenchClient } from './bench-client.js';
import { dropsBetween, readDrops, type Drops } from './broker-drops.js';
import { usageOf, type Usage } from './broker-usage.js';
import { lossNote } from './loss-note.js';
import { Tracker } from './tracker.js';
import { dueCount, publisherOf } from './pacing.js';

export type Scenario = 'fanin' | 'fanout' | 'pairs' | 'conn';

export interface BenchOptions {
  scenario: Scenario;
  host: string;
  port: number;
  /** subscribers connect here (another node of a cluster); undefined = `port` */
  subPort?: number | undefined;
  version: ProtocolVersion;
  qos: QoS;
  /** payload bytes (at least 16: publisher, sequence and send time) */
  size: number;
  publishers: number;
  subscribers: number;
  /** total messages per second over all publishers; 0 = as fast as flow control allows */
  rate: number;
  /**
   * With a rate: each message leaves at its own time, the generator spinning on its core for it,
   * instead of what fell due leaving together at each 1 ms step of a timer
   */
  spread?: boolean;
  /** seconds measured, after the warm-up */
  duration: number;
  warmup: number;
  /** unacknowledged QoS 1/2 publishes per publisher */
  inflight: number;
  /** most publishes one publisher hands to a single socket write (a paced or windowed burst) */
  batch: number;
  /** idle connections for the conn scenario */
  connections: number;
  /**
   * Subscribers to the first subscriber's filter that never read what they are sent (devices on a
   * link too slow for the stream, or hung): what they cost the broker and the subscriber that reads
   */
  stalled?: number;
  /** the broker's process id, for its CPU and memory */
  pid: number | undefined;
  /** what every client logs in with */
  username?: string;
  password?: string;
  /** Midge brokers' /metrics (a cluster's nodes), read before and after the run: why messages were lost */
  metrics?: string[];
}

export interface BenchResult {
  scenario: Scenario;
  options: Omit<BenchOptions, 'pid' | 'password'>;
  publishedPerSecond: number;
  deliveredPerSecond: number;
  latencyMs: { p50: number; p99: number; p999: number };
  /** messages sent (QoS 0) or acknowledged (QoS 1/2) that did not reach a subscriber that should have had them */
  lost: number;
  duplicated: number;
  outOfOrder: number;
  /** what the brokers' metrics (`metrics`) counted as dropped over the run, by reason; undefined without them */
  brokerDropped: Drops | undefined;
  broker: {
    cpuPercent: number;
    rssMiB: number;
    /** conn: memory per connection after `duration` seconds idle, and right after connecting */
    rssPerConnectionKiB?: number;
    rssPerConnectionJustConnectedKiB?: number;
  } | undefined;
  /** share of one core the load generator used; near 100 it is the bottleneck */
  generatorCpuPercent: number;
  warnings: string[];
}

/**
 * Rejects when the broker ends any of the clients' connections: the figures of a run that lost
 * some of its clients part way would mean nothing.
 */
function brokerHangsUp(clients: BenchClient[]): Promise<never> {
  const hungUp = new Promise<never>((_resolve, reject) => {
    for (const c of clients) c.onBrokerClose = (err) => reject(new Error(`${err.message} during the run`));
  });
  // a rejection nobody is waiting on is not an error of its own
  hungUp.catch(() => undefined);
  return hungUp;
}

/** Sleeps `ms`, or rejects (and stops the timer) as soon as `hungUp` does. */
function sleepUnless(ms: number, hungUp: Promise<never>): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    hungUp.catch((err: unknown) => {
      clearTimeout(timer);
      reject(err as Error);
    });
  });
}

/** Topic of publisher i, and the filter subscriber j uses, per scenario. */
function topology(o: BenchOptions): { pubs: number; subs: number; topicOf: (p: number) => string; filterOf: (s: number) => string; listensTo: (s: number, p: number) => boolean } {
  switch (o.scenario) {
    case 'fanin':
      return { pubs: o.publishers, subs: 1, topicOf: (p) => `bench/fanin/${p}`, filterOf: () => 'bench/fanin/+', listensTo: () => true };
    case 'fanout':
      return { pubs: 1, subs: o.subscribers, topicOf: () => 'bench/fanout', filterOf: () => 'bench/fanout', listensTo: () => true };
    default:
      return { pubs: o.publishers, subs: o.publishers, topicOf: (p) => `bench/pair/${p}`, filterOf: (s) => `bench/pair/${s}`, listensTo: (s, p) => s === p };
  }
}

/** How often a fixed-rate run sends what is due (the timer's finest step). */
const PACE_MS = 1;

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const subs: BenchClient[] = [];
  const pubs: BenchClient[] = [];
  const idle: BenchClient[] = [];
  try {
    return o.scenario === 'conn' ? await runConn(o, idle) : await runMessages(o, subs, pubs, idle);
  } finally {
    // however the run ended: connected clients would keep the process alive
    for (const c of [...subs, ...pubs, ...idle]) c.close();
  }
}

/** The message scenarios; the clients it connects go into `subs`, `pubs` and `stalled`, for the caller to close. */
async function runMessages(o: BenchOptions, subs: BenchClient[], pubs: BenchClient[], stalled: BenchClient[]): Promise<BenchResult> {
  const t = topology(o);
  const tracker = new Tracker();
  const run = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
  for (let s = 0; s < t.subs; s++) {
    const c = await BenchClient.connect(o.subPort ?? o.port, o.host, `bs${run}${s}`, o.version, o);
    subs.push(c);
    await c.subscribe(t.filterOf(s), o.qos);
    c.onMessage = (buf, start, end) => tracker.received(s, buf, start, end, performance.now());
  }
  for (let i = 0; i < (o.stalled ?? 0); i++) {
    const c = await BenchClient.connect(o.subPort ?? o.port, o.host, `bz${run}${i}`, o.version, o);
    stalled.push(c);
    await c.subscribe(t.filterOf(0), o.qos);
    // what the broker sends it fills the socket's buffers, then waits in the broker or is dropped
    c.socket.pause();
  }
  for (let p = 0; p < t.pubs; p++) {
    const c = await BenchClient.connect(o.port, o.host, `bp${run}${p}`, o.version, o);
    c.preparePublish(t.topicOf(p), Math.max(16, o.size), o.qos);
    pubs.push(c);
  }
  const drops0 = o.metrics === undefined ? undefined : await readDrops(o.metrics);

  const sent = new Array<number>(t.pubs).fill(0);
  const acked = new Array<number>(t.pubs).fill(0);
  let publishedInWindow = 0;
  let stopped = false;
  const perPublisherRate = o.rate / t.pubs;
  const startedAt = performance.now();
  const due = (p: number): number => dueCount(performance.now() - startedAt, perPublisherRate, p, t.pubs);

  const draining: boolean[] = [];
  const pump = (p: number): void => {
    const c = pubs[p] as BenchClient;
    if (draining[p] === true) return;
    while (!stopped) {
      let n = o.batch;
      if (o.rate > 0) n = Math.min(n, due(p) - (sent[p] as number));
      if (o.qos > 0) n = Math.min(n, o.inflight - c.inflight);
      if (n <= 0) return;
      const first = sent[p] as number;
      const now = performance.now();
      const ok = c.publishBatch(n, (buf, at, i) => Tracker.stamp(buf, at, p, first + i, now));
      sent[p] = first + n;
      if (tracker.measuring) publishedInWindow += n;
      if (!ok) {
        draining[p] = true;
        c.socket.once('drain', () => {
          draining[p] = false;
          pump(p);
        });
        return;
      }
    }
  };
  pubs.forEach((c, p) => {
    c.onAcks = (count) => {
      acked[p] = (acked[p] as number) + count;
      pump(p);
    };
  });
  const ticker = o.rate > 0 && o.spread !== true ? setInterval(() => pubs.forEach((_c, p) => pump(p)), PACE_MS) : undefined;
  if (o.rate > 0 && o.spread === true) {
    // Waiting for each message by turning the event loop over, not by a timer, costs the generator
    // a core but sends each on time, as devices that do not share a clock would.
    let next = 1;
    const spin = (): void => {
      if (stopped) return;
      const dueNow = Math.floor(((performance.now() - startedAt) / 1000) * o.rate);
      for (; next <= dueNow; next++) pump(publisherOf(next, t.pubs));
      setImmediate(spin);
    };
    setImmediate(spin);
  }
  const stopSending = (): void => {
    stopped = true;
    if (ticker !== undefined) clearInterval(ticker);
  };
  const hungUp = brokerHangsUp([...subs, ...pubs]);
  const wait = async (ms: number): Promise<void> => {
    try {
      await sleepUnless(ms, hungUp);
    } catch (err) {
      stopSending();
      throw err;
    }
  };
  pubs.forEach((_c, p) => pump(p));

  await wait(o.warmup * 1000);
  tracker.measuring = true;
  const cpu0 = process.cpuUsage();
  const broker0: Usage | undefined = o.pid === undefined ? undefined : usageOf(o.pid);
  const t0 = performance.now();
  await wait(o.duration * 1000);
  const seconds = (performance.now() - t0) / 1000;
  tracker.measuring = false;
  const published = publishedInWindow;
  const delivered = tracker.delivered;
  const cpu = process.cpuUsage(cpu0);
  const broker1 = o.pid === undefined ? undefined : usageOf(o.pid);
  stopSending();
  // let what is in flight arrive before counting losses: wait until the publishers' writes are out
  // and deliveries stop coming (at most 10 s)
  for (let i = 0, before = -1; i < 100 && (tracker.total !== before || pubs.some((c) => c.socket.writableLength > 0)); i++) {
    before = tracker.total;
    await wait(200);
  }

  // QoS 0 messages count from when they were written: the broker reads all of them while the
  // connection stays up (the run ends if it does not), so one that never arrived was dropped
  const expected = o.qos > 0 ? acked : sent;
  let lost = 0;
  for (let s = 0; s < t.subs; s++) for (let p = 0; p < t.pubs; p++) if (t.listensTo(s, p)) lost += tracker.lost(s, p, expected[p] as number);
  const brokerDropped = drops0 === undefined || o.metrics === undefined ? undefined : dropsBetween(drops0, await readDrops(o.metrics));
  const generatorCpuPercent = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
  const warnings: string[] = [];
  // a spreading generator uses its whole core by design: whether it kept up is what tells
  if (generatorCpuPercent > 90 && o.spread !== true) warnings.push(`the load generator used ${generatorCpuPercent.toFixed(0)}% of a core: it may be the bottleneck, not the broker`);
  if (o.rate > 0 && published < 0.98 * o.rate * seconds) warnings.push(`${Math.round(published / seconds)} msg/s published of the ${o.rate} asked for: the broker's flow control or the generator held them back`);
  const note = lossNote(lost, o.qos, brokerDropped);
  if (note !== undefined) warnings.push(note);
  return {
    scenario: o.scenario,
    options: reported(o),
    publishedPerSecond: published / seconds,
    deliveredPerSecond: delivered / seconds,
    latencyMs: tracker.percentiles(),
    lost,
    duplicated: tracker.duplicates,
    outOfOrder: tracker.outOfOrder,
    brokerDropped,
    broker: brokerUsage(broker0, broker1, seconds),
    generatorCpuPercent,
    warnings,
  };
}

/** Idle connections; the clients it connects go into `clients`, for the caller to close. */
async function runConn(o: BenchOptions, clients: BenchClient[]): Promise<BenchResult> {
  const before = o.pid === undefined ? undefined : usageOf(o.pid);
  const run = Date.now().toString(36);
  for (let i = 0; i < o.connections; i += 100) {
    const batch = await Promise.allSettled(
      Array.from({ length: Math.min(100, o.connections - i) }, (_v, k) => BenchClient.connect(o.port, o.host, `bc${run}${i + k}`, o.version, o)),
    );
    for (const r of batch) if (r.status === 'fulfilled') clients.push(r.value);
    const failed = batch.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw new Error(`${(failed.reason as Error).message} (after ${clients.length} connections)`);
  }
  // Right after a burst of connections a garbage-collected broker still holds the garbage of the
  // burst; what a fleet of idle devices costs is the memory once the broker has been idle a while.
  const connected = o.pid === undefined ? undefined : usageOf(o.pid);
  await sleepUnless(Math.max(1000, o.duration * 1000), brokerHangsUp(clients));
  const after = o.pid === undefined ? undefined : usageOf(o.pid);
  const broker = brokerUsage(before, after, o.duration);
  if (broker !== undefined && before !== undefined && after !== undefined && connected !== undefined) {
    broker.rssPerConnectionKiB = (after.rssBytes - before.rssBytes) / 1024 / clients.length;
    broker.rssPerConnectionJustConnectedKiB = (connected.rssBytes - before.rssBytes) / 1024 / clients.length;
  }
  return {
    scenario: 'conn', options: reported(o), publishedPerSecond: 0, deliveredPerSecond: 0, latencyMs: { p50: NaN, p99: NaN, p999: NaN },
    lost: 0, duplicated: 0, outOfOrder: 0, brokerDropped: undefined, broker, generatorCpuPercent: NaN,
    warnings: o.pid === undefined ? ['without --pid the memory per connection cannot be measured'] : [],
  };
}

function brokerUsage(a: Usage | undefined, b: Usage | undefined, seconds: number): BenchResult['broker'] {
  if (a === undefined || b === undefined) return undefined;
  return { cpuPercent: ((b.cpuSeconds - a.cpuSeconds) / seconds) * 100, rssMiB: b.rssBytes / 1024 / 1024 };
}

/** The options as a result reports them: no process id, and no password in output that gets shared. */
function reported(o: BenchOptions): Omit<BenchOptions, 'pid' | 'password'> {
  const { pid: _pid, password: _password, ...rest } = o;
  return rest;
}
