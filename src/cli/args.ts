import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';

export interface ServeArgs {
  config?: string;
  /** settings given as flags; they override the config file */
  overrides: Record<string, unknown>;
  help: boolean;
  version: boolean;
}

export const SERVE_USAGE = `usage: midge [--config FILE] [--host H] [--port N] [--data-dir DIR] [--persistence lmdb|memory]
             [--password-file F] [--acl-file F] [--allow-anonymous true|false] [--log-level L]
       midge passwd FILE USER [PASSWORD] | midge passwd --delete FILE USER
       midge check-config FILE

  -c, --config FILE     YAML or JSON configuration (settings and limits)
  -h, --host H          address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  -p, --port N          MQTT over TCP port (default 1883; 0 picks a free port)
      --data-dir DIR    directory of the on-disk store (default ./data)
      --persistence P   lmdb (on disk, the default) or memory (nothing survives a restart)
      --password-file F Mosquitto-format password file ($7$/$6$ hashes; see midge passwd)
      --acl-file F      Mosquitto-format ACL file (user/topic/pattern rules)
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
        'allow-anonymous': { type: 'string' },
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
  if (v['allow-anonymous'] !== undefined) overrides.allowAnonymous = v['allow-anonymous'];
  return { config: v.config, overrides, help: v.help ?? false, version: v.version ?? false };
}
