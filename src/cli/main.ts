#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { createBroker, type Broker, type ListeningAddress } from '../app.js';
import { brokerSettings, CLI_ONLY_SETTINGS } from '../embed-options.js';
import { resolveListeners, type ListenerConfig } from '../config/listeners.js';
import { checkConfigFiles, listenerTls } from '../config/files.js';
import { ConfigError, loadConfigFile, mergeConfig, resolveConfig } from '../config/load.js';
import type { MidgeConfig } from '../config/schema.js';
import { configWarnings } from '../config/warnings.js';
import { createLogger } from '../log.js';
import { StoreError } from '../persistence/store.js';
import { VERSION } from '../version.js';
import { flagName, parseServeArgs, SERVE_USAGE } from './args.js';
import { passwd } from './passwd.js';
import { bench } from './bench.js';
import { checkConfig } from './check-config.js';
import { hostForUrl, reachHints } from './reach.js';
import { PasswordFileError } from '../auth/password-file.js';
import { AclFileError } from '../auth/acl-file.js';

/** Exit codes: 0 clean stop, 1 runtime failure (e.g. port in use), 2 usage or configuration mistake, 3 unusable data dir. */
const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;
/** the data dir cannot be used (corrupted, unreadable, newer format, held by another broker): never start with empty state */
const EXIT_DATA = 3;

async function serve(argv: string[]): Promise<void> {
  const args = parseServeArgs(argv);
  if (args.help) {
    console.log(SERVE_USAGE);
    return;
  }
  if (args.version) {
    console.log(VERSION);
    return;
  }
  const fromFile = args.config === undefined ? {} : loadConfigFile(args.config);
  // the flags alone first, so that a mistake in one is reported under the flag's name
  resolveConfig(args.overrides, 'command line', flagName);
  const source = args.config ?? 'command line';
  // the command line keeps state on disk unless told otherwise; the library defaults to memory
  const config = resolveConfig(mergeConfig({ persistence: 'lmdb' }, mergeConfig(fromFile, args.overrides)), source);
  // the config file's listeners replace the single host/port one; flags add to either
  const extra = resolveListeners(args.extraListeners, 'command line', config.host);
  const flagTls = extra.flatMap((l) => (l.tls === undefined ? [] : [{ tls: l.tls, name: (file: string) => `command line: --tls-${file}` }]));
  checkConfigFiles(config, [...listenerTls(config.listeners, source), ...flagTls]);
  const logger = createLogger(config.logLevel);
  for (const warning of configWarnings(config)) logger.warn(warning);
  let broker: Broker;
  try {
    broker = await createBroker({ ...brokerSettings(config), logger });
  } catch (err) {
    if (err instanceof PasswordFileError || err instanceof AclFileError) throw new ConfigError(err.message);
    if (err instanceof StoreError) {
      console.error(`midge: ${err.message}`);
      process.exitCode = EXIT_DATA;
      return;
    }
    // e.g. a cluster's Redis that cannot be reached: one line, as a port in use; the stack is for debugging
    logger.debug({ err }, 'start-up failed');
    console.error(`midge: ${(err as Error).message.split('\n')[0]}`);
    process.exitCode = EXIT_RUNTIME;
    return;
  }
  // signals are handled from here on: a SIGTERM while listeners open still closes cleanly
  stopOnSignals(broker, config, () => {
    const file = args.config === undefined ? {} : loadConfigFile(args.config);
    return resolveConfig(mergeConfig({ persistence: 'lmdb' }, mergeConfig(file, args.overrides)), source);
  });
  const wanted: ListenerConfig[] = [
    ...(config.listeners ?? [{ protocol: 'mqtt', host: config.host, port: config.port, socket: undefined, maxConnections: 0, proxyProtocol: false, path: undefined, tls: undefined, allowAnonymous: undefined }]),
    ...extra,
  ];
  const addresses: Array<ListeningAddress & { path: string }> = [];
  for (const l of wanted) {
    try {
      const where = l.socket === undefined ? { host: l.host, port: l.port } : { socket: l.socket };
      const a = await broker.listen({ protocol: l.protocol, ...where, maxConnections: l.maxConnections, proxyProtocol: l.proxyProtocol, wsPath: l.path, tls: l.tls, ...(l.allowAnonymous === undefined ? {} : { allowAnonymous: l.allowAnonymous }) });
      addresses.push({ ...a, path: l.path ?? '/mqtt' });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // libuv reports a Unix socket in a missing directory as EACCES
      const noDir = l.socket !== undefined && !existsSync(dirname(l.socket));
      const why = e.code === 'EADDRINUSE' ? 'address already in use' : noDir ? `no directory ${dirname(l.socket as string)}` : e.code === 'EACCES' ? 'permission denied' : e.message;
      console.error(`midge: cannot listen on ${l.socket ?? `${l.host}:${l.port}`}: ${why}`);
      await broker.close();
      process.exitCode = EXIT_RUNTIME;
      return;
    }
  }
  // lines for people go to stderr: stdout holds the JSON log lines alone, for a log shipper
  for (const a of addresses) {
    const path = a.protocol === 'ws' || a.protocol === 'wss' ? a.path : '';
    const where = a.socket === undefined ? `${a.protocol}://${hostForUrl(a.host)}:${a.port}${path}` : `${a.protocol} over Unix socket ${a.socket}${path === '' ? '' : ` (path ${path})`}`;
    console.error(`midge ${VERSION} listening on ${where}`);
  }
  let httpHost: string | undefined;
  if (config.httpPort >= 0) {
    try {
      const http = await broker.listenHttp({ port: config.httpPort, host: config.httpHost, ...(config.adminToken === '' ? {} : { adminToken: config.adminToken }) });
      httpHost = http.host;
      console.error(`midge http endpoint on http://${hostForUrl(http.host)}:${http.port} (/metrics, /healthz, /readyz${config.adminToken === '' ? '' : ', /api/v1'})`);
    } catch (err) {
      console.error(`midge: cannot listen on ${config.httpHost}:${config.httpPort} for HTTP: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      await broker.close();
      process.exitCode = EXIT_RUNTIME;
      return;
    }
  }
  for (const hint of reachHints({ mqtt: addresses, httpHost })) console.error(hint);
}

function stopOnSignals(broker: Broker, started: MidgeConfig, readConfig: () => MidgeConfig): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // a second signal means the operator does not want to wait for the grace period
      process.exit(EXIT_RUNTIME);
    }
    stopping = true;
    broker.logger.info({ signal }, 'stopping');
    broker.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`midge: error while stopping: ${(err as Error).message}`);
        process.exit(EXIT_RUNTIME);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // SIGHUP reads the password file and certificates again; a broken file leaves the old one in force
  process.on('SIGHUP', () => {
    let needRestart: string[];
    try {
      const next = readConfig();
      // the broker compares what it holds; what it does not hold would look changed to it
      const held = Object.fromEntries(CLI_ONLY_SETTINGS.map((k) => [k, broker.config[k]]));
      needRestart = broker.updateConfig({ ...next, ...held });
      broker.logger.level = next.logLevel;
      for (const k of CLI_ONLY_SETTINGS) {
        if (k !== 'logLevel' && JSON.stringify(next[k]) !== JSON.stringify(started[k])) needRestart.push(k);
      }
    } catch (err) {
      broker.logger.error({ err: (err as Error).message }, 'reload failed; the previous configuration stays in force');
      return;
    }
    if (needRestart.length > 0) broker.logger.warn({ settings: needRestart }, 'changed settings that take effect only after a restart');
    try {
      broker.reload();
      broker.logger.info('reloaded');
    } catch (err) {
      // the configuration is in force by now, and each file was read on its own: the message says which were not
      broker.logger.error({ err: (err as Error).message }, `reloaded, but ${(err as Error).message}`);
    }
  });
}

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === 'bench') {
    await bench(rest);
    // the run's clients may still be closing: exit now, with the code bench set (1 after a failed run)
    process.exit();
  }
  if (first === 'passwd') {
    await passwd(rest);
    return;
  }
  if (first === 'check-config') {
    checkConfig(rest);
    return;
  }
  await serve(argv);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`midge: ${err.message}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  console.error(`midge: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = EXIT_RUNTIME;
});
