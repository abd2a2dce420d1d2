import { isAbsolute } from 'node:path';
import type { ListenerProtocol } from '../transport/listener.js';
import type { TlsPaths } from '../transport/tls-material.js';
import { ConfigError } from './load.js';
import { socketPathTooLong } from './socket-path.js';

/** One listener of the config file's `listeners` list. */
export interface ListenerConfig {
  protocol: ListenerProtocol;
  host: string;
  port: number;
  /** a Unix domain socket's path, in place of host and port */
  socket: string | undefined;
  maxConnections: number;
  proxyProtocol: boolean;
  /** WebSocket path as given (undefined: /mqtt), so that one given to an mqtt listener can be warned of */
  path: string | undefined;
  tls: TlsPaths | undefined;
  /** undefined: the broker's policy */
  allowAnonymous: boolean | undefined;
}

const PROTOCOLS: readonly ListenerProtocol[] = ['mqtt', 'mqtts', 'ws', 'wss'];
const KEYS = new Set(['protocol', 'host', 'port', 'socket', 'maxConnections', 'proxyProtocol', 'path', 'tls', 'allowAnonymous']);
const TLS_KEYS = new Set(['cert', 'key', 'ca', 'requireClientCert', 'certificateAsUsername']);

/** Validates `listeners:`; every mistake is one line naming the listener and the setting. */
export function resolveListeners(input: unknown, source: string, defaultHost: string): ListenerConfig[] {
  if (!Array.isArray(input)) throw new ConfigError(`${source}: listeners must be a list`);
  return input.map((raw, i) => {
    const at = `${source}: listeners[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${at} must be a mapping of settings`);
    const l = raw as Record<string, unknown>;
    for (const k of Object.keys(l)) if (!KEYS.has(k)) throw new ConfigError(`${at}: unknown setting "${k}"`);
    const protocol = l.protocol ?? 'mqtt';
    if (!PROTOCOLS.includes(protocol as ListenerProtocol)) throw new ConfigError(`${at}.protocol must be one of ${PROTOCOLS.join(', ')} (got ${JSON.stringify(protocol)})`);
    const socket = l.socket;
    if (socket !== undefined) {
      if (typeof socket !== 'string' || !isAbsolute(socket)) throw new ConfigError(`${at}.socket must be an absolute file path (got ${JSON.stringify(socket)})`);
      const tooLong = socketPathTooLong(socket);
      if (tooLong !== undefined) throw new ConfigError(`${at}.socket ${tooLong}`);
      // a resolved socket listener reads host '' and port 0, and may be resolved again (createBroker)
      if ((l.port !== undefined && l.port !== 0) || (l.host !== undefined && l.host !== '')) throw new ConfigError(`${at}: a listener takes either socket or host and port, not both`);
    }
    const port = socket === undefined ? l.port : 0;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`${at}.port must be an integer between 0 and 65535 (got ${JSON.stringify(port)})`);
    const host = socket === undefined ? l.host ?? defaultHost : '';
    if (typeof host !== 'string' || (host === '' && socket === undefined)) throw new ConfigError(`${at}.host must be a non-empty string`);
    const maxConnections = l.maxConnections ?? 0;
    if (typeof maxConnections !== 'number' || !Number.isInteger(maxConnections) || maxConnections < 0) throw new ConfigError(`${at}.maxConnections must be an integer >= 0`);
    const proxyProtocol = flag(l.proxyProtocol, `${at}.proxyProtocol`);
    const path = l.path;
    if (path !== undefined && (typeof path !== 'string' || !path.startsWith('/'))) throw new ConfigError(`${at}.path must start with "/"`);
    let tls: TlsPaths | undefined;
    if (l.tls !== undefined) {
      const t = l.tls as Record<string, unknown>;
      if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new ConfigError(`${at}.tls must be a mapping of settings`);
      for (const k of Object.keys(t)) if (!TLS_KEYS.has(k)) throw new ConfigError(`${at}.tls: unknown setting "${k}"`);
      for (const k of ['cert', 'key'] as const) if (typeof t[k] !== 'string') throw new ConfigError(`${at}.tls.${k} must be a file path`);
      if (t.ca !== undefined && typeof t.ca !== 'string') throw new ConfigError(`${at}.tls.ca must be a file path`);
      tls = {
        cert: t.cert as string,
        key: t.key as string,
        ...(t.ca === undefined ? {} : { ca: t.ca as string }),
        requireClientCert: flag(t.requireClientCert, `${at}.tls.requireClientCert`),
        certificateAsUsername: flag(t.certificateAsUsername, `${at}.tls.certificateAsUsername`),
      };
      if (tls.requireClientCert === true && tls.ca === undefined) throw new ConfigError(`${at}.tls.requireClientCert needs tls.ca to verify client certificates`);
    }
    if ((protocol === 'mqtts' || protocol === 'wss') && tls === undefined) throw new ConfigError(`${at}: a ${String(protocol)} listener needs tls.cert and tls.key`);
    // a refusal, not a warning: whoever wrote tls expects encryption, and would get passwords sent in
    // the clear by a broker that runs as if all were well (protocol is mqtt when not given)
    if ((protocol === 'mqtt' || protocol === 'ws') && tls !== undefined) {
      throw new ConfigError(`${at}: tls is set on ${protocol === 'mqtt' ? 'an mqtt' : 'a ws'} listener, which does not use it: make it protocol: ${protocol}s for TLS, or remove tls`);
    }
    const allowAnonymous = l.allowAnonymous === undefined ? undefined : flag(l.allowAnonymous, `${at}.allowAnonymous`);
    return { protocol: protocol as ListenerProtocol, host, port, socket, maxConnections, proxyProtocol, path: path as string | undefined, tls, allowAnonymous };
  });
}

/** A boolean setting, false when absent; a string such as "yes" would otherwise read as false. */
function flag(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new ConfigError(`${name} must be true or false (got ${JSON.stringify(value)})`);
  return value;
}
