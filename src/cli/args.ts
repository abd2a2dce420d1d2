import { isAbsolute } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';
import { socketPathTooLong } from '../config/socket-path.js';

export interface ServeArgs {
  config?: string;
  /** settings given as flags; they override the config file */
  overrides: Record<string, unknown>;
  /** listeners asked for with --tls-port, --ws-port, --wss-port and --socket, in config-file form */
  extraListeners: Array<Record<string, unknown>>;
  help: boolean;
  version: boolean;
}

export const SERVE_USAGE = `usage: midge [--config FILE] [--host H] [--port N] [--data-dir DIR] [--persistence lmdb|memory]
             [--password-file F] [--acl-file F] [--allow-anonymous true|false] [--log-level L]
             [--tls-port N --tls-cert F --tls-key F [--tls-ca F] [--tls-require-client-cert]]
             [--ws-port N] [--wss-port N] [--socket PATH] [--http-port N] [--admin-token T] [--sys-interval S]
             [--cluster-redis URL [--cluster-node-id ID] [--cluster-prefix P] [--cluster-max-backlog B] [--cluster-wait-replicas N]]
       midge passwd FILE USER [PASSWORD] | midge passwd --delete FILE USER
       midge check-config FILE

  -c, --config FILE     YAML or JSON configuration (settings and limits)
      --host H          address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  -p, --port N          MQTT over TCP port (default 1883; 0 picks a free port)
      --data-dir DIR    directory of the on-disk store (default ./data)
      --persistence P   lmdb (on disk, the default) or memory (nothing survives a restart)
      --password-file F Mosquitto-format password file ($7$/$6$ hashes; see midge passwd)
      --acl-file F      Mosquitto-format ACL file (user/topic/pattern rules)
      --tls-port N      also MQTT over TLS on port N (with --tls-cert F --tls-key F [--tls-ca F] [--tls-require-client-cert])
      --ws-port N       also MQTT over WebSocket on port N (path /mqtt)
      --wss-port N      also MQTT over secure WebSocket on port N (with --tls-cert and --tls-key)
      --socket PATH     also MQTT on the Unix domain socket PATH (absolute)
      --http-port N     HTTP endpoint: /metrics, /healthz, /readyz (127.0.0.1 unless httpHost says otherwise; -1 = off)
      --admin-token T   turns on the admin API under /api/v1 (Authorization: Bearer T)
      --sys-interval S  seconds between $SYS/broker updates (default 10, 0 = off)
      --cluster-redis URL  join the cluster whose nodes share the Redis server at URL (redis://host:6379,
                           redis+sentinel://host:26379,host2:26379/master-name
                           or redis+cluster://host:7000,host2:7000)
      --cluster-node-id ID this node's name in the cluster, stable across restarts (default host:port)
      --cluster-prefix P   prefix of the cluster's Redis keys and channels (default midge)
      --cluster-max-backlog B  bytes waiting in Redis for a node past which publishers to it are held (default 64 MiB)
      --cluster-wait-replicas N  Redis replicas that must have a QoS 1/2 message for another node before it is acknowledged (default 0)
      --allow-anonymous B  true or false (default: true without a password file, false with one)
      --log-level L     fatal, error, warn, info, debug, trace or silent (default info)
      --version         print the version
  -h, --help            print this help`;

/** The setting each flag sets: a mistake in a flag is reported under the flag's name. */
const SETTING_FLAGS: Readonly<Record<string, string>> = {
  host: 'host',
  port: 'port',
  dataDir: 'data-dir',
  logLevel: 'log-level',
  persistence: 'persistence',
  passwordFile: 'password-file',
  aclFile: 'acl-file',
  httpPort: 'http-port',
  adminToken: 'admin-token',
  sysInterval: 'sys-interval',
  allowAnonymous: 'allow-anonymous',
  clusterRedis: 'cluster-redis',
  clusterNodeId: 'cluster-node-id',
  clusterPrefix: 'cluster-prefix',
  clusterMaxBacklog: 'cluster-max-backlog',
  clusterWaitReplicas: 'cluster-wait-replicas',
};

/** How a message names `setting` when it came from the command line. */
export function flagName(setting: string): string {
  const flag = SETTING_FLAGS[setting];
  return flag === undefined ? setting : `--${flag}`;
}

const SERVE_OPTIONS = {
  config: { type: 'string', short: 'c' },
  host: { type: 'string' },
  port: { type: 'string', short: 'p' },
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
  persistence: { type: 'string' },
  'password-file': { type: 'string' },
  'acl-file': { type: 'string' },
  'tls-port': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-require-client-cert': { type: 'boolean' },
  'ws-port': { type: 'string' },
  'http-port': { type: 'string' },
  'admin-token': { type: 'string' },
  'sys-interval': { type: 'string' },
  'wss-port': { type: 'string' },
  socket: { type: 'string' },
  'allow-anonymous': { type: 'string' },
  'cluster-redis': { type: 'string' },
  'cluster-node-id': { type: 'string' },
  'cluster-prefix': { type: 'string' },
  'cluster-max-backlog': { type: 'string' },
  'cluster-wait-replicas': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

/**
 * `--http-port -1` as `--http-port=-1`: parseArgs takes a value that starts with '-' for an option
 * of its own and calls the flag ambiguous, yet -1 is httpPort's documented "off" (and a negative
 * port elsewhere deserves the setting's own message, not parseArgs's).
 */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return [...out, ...argv.slice(i)];
    const name = valuedOption(arg);
    const next = argv[i + 1];
    if (name !== undefined && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** The long name of the option `arg` names when that option takes a value. */
function valuedOption(arg: string): string | undefined {
  const options: Readonly<Record<string, { type: string; short?: string }>> = SERVE_OPTIONS;
  const name = arg.startsWith('--') ? arg.slice(2) : Object.keys(options).find((k) => options[k]?.short !== undefined && arg === `-${options[k].short}`);
  return name !== undefined && options[name]?.type === 'string' ? name : undefined;
}

/** Parses the flags of `midge` (serve); a mistake is a ConfigError of one line. */
export function parseServeArgs(argv: string[]): ServeArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv),
      strict: true,
      allowPositionals: false,
      options: SERVE_OPTIONS,
    });
  } catch (err) {
    // node's messages run over several lines; the first says what is wrong
    const first = (err as Error).message.split('\n')[0] as string;
    // -h was the host once, and is it in mosquitto_pub: `-h 0.0.0.0` leaves 0.0.0.0 unexpected
    const hostHint = argv.includes('-h') && /^Unexpected argument/.test(first) ? ' (-h is --help; the address to listen on is --host H)' : '';
    throw new ConfigError(`command line: ${first}${hostHint}`);
  }
  const v = parsed.values;
  const overrides: Record<string, unknown> = {};
  for (const [setting, flag] of Object.entries(SETTING_FLAGS)) {
    const value = v[flag as keyof typeof v];
    if (value !== undefined) overrides[setting] = value;
  }
  const extra = extraListeners(v);
  return { config: v.config, overrides, extraListeners: extra, help: v.help ?? false, version: v.version ?? false };
}

function portOf(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new ConfigError(`command line: --${flag} must be a port between 0 and 65535 (got "${value}")`);
  return n;
}

function extraListeners(v: Record<string, string | boolean | undefined>): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const cert = v['tls-cert'] as string | undefined;
  const key = v['tls-key'] as string | undefined;
  const tlsListener = v['tls-port'] !== undefined || v['wss-port'] !== undefined;
  // these flags set up only the listeners of --tls-port and --wss-port; alone they would do nothing
  for (const f of ['tls-cert', 'tls-key', 'tls-ca', 'tls-require-client-cert']) {
    if (v[f] !== undefined && !tlsListener) throw new ConfigError(`command line: --${f} goes with --tls-port or --wss-port`);
  }
  if (v['tls-require-client-cert'] === true && v['tls-ca'] === undefined) throw new ConfigError('command line: --tls-require-client-cert needs --tls-ca to verify client certificates');
  const tls = (): Record<string, unknown> => {
    if (cert === undefined || key === undefined) throw new ConfigError('command line: --tls-port and --wss-port need --tls-cert and --tls-key');
    return {
      cert,
      key,
      ...(v['tls-ca'] === undefined ? {} : { ca: v['tls-ca'] }),
      requireClientCert: v['tls-require-client-cert'] === true,
    };
  };
  if (v['tls-port'] !== undefined) out.push({ protocol: 'mqtts', port: portOf('tls-port', v['tls-port'] as string), tls: tls() });
  if (v['ws-port'] !== undefined) out.push({ protocol: 'ws', port: portOf('ws-port', v['ws-port'] as string) });
  if (v['wss-port'] !== undefined) out.push({ protocol: 'wss', port: portOf('wss-port', v['wss-port'] as string), tls: tls() });
  if (v.socket !== undefined) {
    if (!isAbsolute(v.socket as string)) throw new ConfigError(`command line: --socket must be an absolute path (got ${JSON.stringify(v.socket)})`);
    const tooLong = socketPathTooLong(v.socket as string);
    if (tooLong !== undefined) throw new ConfigError(`command line: --socket ${tooLong}`);
    out.push({ socket: v.socket });
  }
  return out;
}
