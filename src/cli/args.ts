import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';

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
  -h, --host H          address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  -p, --port N          MQTT over TCP port (default 1883; 0 picks a free port)
      --data-dir DIR    directory of the on-disk store (default ./data)
      --persistence P   lmdb (on disk, the default) or memory (nothing survives a restart)
      --password-file F Mosquitto-format password file ($7$/$6$ hashes; see midge passwd)
      --acl-file F      Mosquitto-format ACL file (user/topic/pattern rules)
      --tls-port N      also MQTT over TLS on port N (with --tls-cert F --tls-key F [--tls-ca F] [--tls-require-client-cert])
      --ws-port N       also MQTT over WebSocket on port N (path /mqtt)
      --wss-port N      also MQTT over secure WebSocket on port N (with --tls-cert and --tls-key)
      --socket PATH     also MQTT on the Unix domain socket PATH (absolute)
      --http-port N     HTTP endpoint: /metrics, /healthz, /readyz (127.0.0.1 unless httpHost says otherwise)
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
      --help            print this help`;

/** Parses the flags of `midge` (serve); a mistake is a ConfigError of one line. */
export function parseServeArgs(argv: string[]): ServeArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string', short: 'h' },
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
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
    });
  } catch (err) {
    // node's messages run over several lines; the first says what is wrong
    throw new ConfigError(`command line: ${(err as Error).message.split('\n')[0]}`);
  }
  const v = parsed.values;
  const overrides: Record<string, unknown> = {};
  if (v.host !== undefined) overrides.host = v.host;
  if (v.port !== undefined) overrides.port = v.port;
  if (v['data-dir'] !== undefined) overrides.dataDir = v['data-dir'];
  if (v['log-level'] !== undefined) overrides.logLevel = v['log-level'];
  if (v.persistence !== undefined) overrides.persistence = v.persistence;
  if (v['password-file'] !== undefined) overrides.passwordFile = v['password-file'];
  if (v['acl-file'] !== undefined) overrides.aclFile = v['acl-file'];
  if (v['http-port'] !== undefined) overrides.httpPort = v['http-port'];
  if (v['admin-token'] !== undefined) overrides.adminToken = v['admin-token'];
  if (v['sys-interval'] !== undefined) overrides.sysInterval = v['sys-interval'];
  if (v['allow-anonymous'] !== undefined) overrides.allowAnonymous = v['allow-anonymous'];
  if (v['cluster-redis'] !== undefined) overrides.clusterRedis = v['cluster-redis'];
  if (v['cluster-node-id'] !== undefined) overrides.clusterNodeId = v['cluster-node-id'];
  if (v['cluster-prefix'] !== undefined) overrides.clusterPrefix = v['cluster-prefix'];
  if (v['cluster-max-backlog'] !== undefined) overrides.clusterMaxBacklog = v['cluster-max-backlog'];
  if (v['cluster-wait-replicas'] !== undefined) overrides.clusterWaitReplicas = v['cluster-wait-replicas'];
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
  if (v.socket !== undefined) out.push({ socket: v.socket });
  return out;
}
