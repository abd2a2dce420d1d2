import { parseArgs } from 'node:util';
import { redactUrl } from '../cluster/redis-target.js';
import { checkConfigFiles, listenerTls } from '../config/files.js';
import { ConfigError, loadConfigFile, mergeConfig, resolveConfig } from '../config/load.js';
import { configWarnings } from '../config/warnings.js';

export const CHECK_CONFIG_USAGE = `usage: midge check-config FILE

  Checks the YAML or JSON configuration FILE as start-up would, without starting the broker: its
  settings, and that the password, ACL and TLS files it names can be read and used. Prints the
  effective settings (secrets hidden) and, on stderr, settings that would do nothing.
  Exit code 0 when the file is good, 2 when it is not.`;

/** `midge check-config FILE`: a configuration mistake is a ConfigError of one line, as at start-up. */
export function checkConfig(argv: string[]): void {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    throw new ConfigError(`check-config: ${(err as Error).message.split('\n')[0]}`);
  }
  if (parsed.values.help === true) {
    console.log(CHECK_CONFIG_USAGE);
    return;
  }
  const [path, ...more] = parsed.positionals;
  if (path === undefined || more.length > 0) throw new ConfigError(CHECK_CONFIG_USAGE.split('\n')[0] as string);
  // the command line's default store, as at start-up
  const effective = resolveConfig(mergeConfig({ persistence: 'lmdb' }, loadConfigFile(path)), path);
  checkConfigFiles(effective, listenerTls(effective.listeners, path));
  console.log(`${path}: ok; effective settings:`);
  const shown = {
    ...effective,
    // the path a ws or wss listener serves when none is given; on the others it does nothing
    listeners: effective.listeners?.map((l) => (l.path === undefined && (l.protocol === 'ws' || l.protocol === 'wss') ? { ...l, path: '/mqtt' } : l)),
    adminToken: effective.adminToken === '' ? '' : '(set)',
    clusterRedis: redactUrl(effective.clusterRedis),
  };
  console.log(JSON.stringify(shown, null, 2));
  for (const w of configWarnings(effective)) console.error(`midge: warning: ${w}`);
}
