import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';
import { runBench, type BenchOptions, type BenchResult, type Scenario } from '../bench/run.js';

export const BENCH_USAGE = `usage: midge bench SCENARIO [options]      scenarios: fanin, fanout, pairs, conn

  --host H            broker address (default 127.0.0.1)
  --port N            broker port (default 1883)
  --sub-port N        subscribers connect to this port instead: another node of a cluster
  --username U        every client logs in as U (with --password P)
  --password P
  --version V         MQTT version 3, 4 or 5 (default 4)
  --qos Q             0, 1 or 2 (default 0)
  --size BYTES        payload size, at least 16 (default 64)
  --publishers N      fanin: publishers (default 10); pairs: pairs (default 1000)
  --subscribers N     fanout: subscribers (default 100)
  --rate R            messages per second over all publishers; 0 = as fast as acks allow (default 0)
  --spread            with --rate: each message leaves at its own time (the generator spins on
                      its core), not with the others due in the same 1 ms step
  --inflight N        unacknowledged QoS 1/2 publishes per publisher (default 100)
  --batch N           publishes a publisher hands to one socket write, at most (default 32)
  --duration S        seconds measured (default 10)
  --warmup S          seconds before measuring (default 2)
  --stalled N         also N subscribers to the first subscriber's topics that never read what
                      they are sent: what slow or hung devices cost the broker and the others
  --connections N     conn: idle connections to open (default 10000); memory is read after
                      --duration seconds idle, and right after connecting
  --pid PID           the broker's process id, for its CPU and memory
  --metrics URL       a Midge broker's /metrics (its --http-port), read before and after the run to
                      say why messages were lost; once per node of a cluster
  --json              one JSON object instead of the table`;

const SCENARIOS: readonly Scenario[] = ['fanin', 'fanout', 'pairs', 'conn'];

function num(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new ConfigError(`bench: --${name} must be a number between ${min} and ${max} (got "${raw}")`);
  return n;
}

/** `midge bench`: a load generator in the spirit of emqtt-bench, for Midge or any MQTT broker. */
export async function bench(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...Object.fromEntries(
          ['host', 'port', 'sub-port', 'username', 'password', 'version', 'qos', 'size', 'publishers', 'subscribers', 'rate', 'inflight', 'batch', 'duration', 'warmup', 'connections', 'stalled', 'pid'].map((k) => [k, { type: 'string' as const }]),
        ),
        metrics: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        spread: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new ConfigError(`bench: ${(err as Error).message.split('\n')[0]}`);
  }
  const v = parsed.values as Record<string, string | string[] | boolean | undefined>;
  if (v.help === true) {
    console.log(BENCH_USAGE);
    return;
  }
  const scenario = parsed.positionals[0] as Scenario | undefined;
  if (scenario === undefined || !SCENARIOS.includes(scenario)) throw new ConfigError(`bench: the scenario must be one of ${SCENARIOS.join(', ')}`);
  const s = (k: string): string | undefined => v[k] as string | undefined;
  const o: BenchOptions = {
    scenario,
    host: s('host') ?? '127.0.0.1',
    port: num('port', s('port'), 1883, 1, 65535),
    subPort: s('sub-port') === undefined ? undefined : num('sub-port', s('sub-port'), 1883, 1, 65535),
    version: num('version', s('version'), 4, 3, 5) as 3 | 4 | 5,
    qos: num('qos', s('qos'), 0, 0, 2) as 0 | 1 | 2,
    size: num('size', s('size'), 64, 16, 268_000_000),
    publishers: num('publishers', s('publishers'), scenario === 'pairs' ? 1000 : 10, 1, 100_000),
    subscribers: num('subscribers', s('subscribers'), 100, 1, 100_000),
    rate: num('rate', s('rate'), 0, 0, 1e9),
    spread: v.spread === true,
    inflight: num('inflight', s('inflight'), 100, 1, 65535),
    batch: num('batch', s('batch'), 32, 1, 65535),
    duration: num('duration', s('duration'), 10, 0.1, 86400),
    warmup: num('warmup', s('warmup'), 2, 0, 3600),
    connections: num('connections', s('connections'), 10_000, 1, 1_000_000),
    stalled: num('stalled', s('stalled'), 0, 0, 100_000),
    pid: s('pid') === undefined ? undefined : num('pid', s('pid'), 0, 1, 2 ** 22),
    ...(s('username') === undefined ? {} : { username: s('username') }),
    ...(s('password') === undefined ? {} : { password: s('password') }),
    ...(v.metrics === undefined ? {} : { metrics: v.metrics as string[] }),
  };
  if (o.password !== undefined && o.username === undefined) throw new ConfigError('bench: --password needs --username');
  if (o.spread === true && o.rate === 0) throw new ConfigError('bench: --spread needs --rate');
  for (const url of o.metrics ?? []) if (!URL.canParse(url)) throw new ConfigError(`bench: --metrics must be a URL such as http://127.0.0.1:9090/metrics (got "${url}")`);
  let result: BenchResult;
  try {
    result = await runBench(o);
  } catch (err) {
    // the broker could not be reached, or refused the clients: one line, not a stack
    console.error(`midge: bench: ${(err as Error).message}`);
    process.exitCode = 1;
    return;
  }
  console.log(v.json === true ? JSON.stringify(result) : table(result));
}

function table(r: BenchResult): string {
  const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  const lines = [`scenario ${r.scenario}, MQTT ${r.options.version === 5 ? '5.0' : r.options.version === 4 ? '3.1.1' : '3.1'}, QoS ${r.options.qos}, ${r.options.size} bytes`];
  if (r.scenario !== 'conn') {
    lines.push(
      `  published   ${f(r.publishedPerSecond)} msg/s`,
      `  delivered   ${f(r.deliveredPerSecond)} msg/s`,
      `  latency     p50 ${f(r.latencyMs.p50, 2)} ms, p99 ${f(r.latencyMs.p99, 2)} ms, p99.9 ${f(r.latencyMs.p999, 2)} ms`,
      `  lost ${r.lost}, duplicated ${r.duplicated}, out of order ${r.outOfOrder}`,
      `  generator   ${f(r.generatorCpuPercent)}% of a core`,
    );
  }
  if (r.broker !== undefined) {
    lines.push(`  broker      ${f(r.broker.cpuPercent)}% CPU, ${f(r.broker.rssMiB, 1)} MiB resident` + (r.broker.rssPerConnectionKiB === undefined ? '' : `, ${f(r.broker.rssPerConnectionKiB, 2)} KiB per connection after ${r.options.duration} s idle (${f(r.broker.rssPerConnectionJustConnectedKiB ?? NaN, 2)} right after connecting)`));
  }
  for (const w of r.warnings) lines.push(`  note: ${w}`);
  return lines.join('\n');
}
