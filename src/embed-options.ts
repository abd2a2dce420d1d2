/**
 * Checks of what an embedding application passes to createBroker, listen and listenHttp. Plain
 * JavaScript callers get no type errors, and an option the broker does not know would otherwise be
 * dropped without a word: a listener that never opens, a path that is not the one served.
 */

import type { QoS } from './codec/packets.js';
import { ConfigError } from './config/load.js';
import type { Hooks } from './hooks/types.js';

/** The 5.0 capabilities and redirection createBroker's `mqtt5` option sets. */
export interface Mqtt5Options {
  /** Response Information for clients that request it is this prefix plus the client id (default 'response/'; '' disables) */
  responseInformationPrefix?: string;
  /** redirect every 5.0 client to this server (CONNACK 0x9C Use another server) */
  serverReference?: string;
  /** with serverReference: the move is permanent (0x9D Server moved) */
  serverMoved?: boolean;
  /** capabilities, advertised in CONNACK and enforced (all on by default) */
  maximumQoS?: QoS;
  retainAvailable?: boolean;
  wildcardSubscriptionAvailable?: boolean;
  subscriptionIdentifiersAvailable?: boolean;
  sharedSubscriptionAvailable?: boolean;
}

/** Config-file settings that open ports or make the logger: the command line acts on them, createBroker cannot. */
export const CLI_ONLY_SETTINGS = ['listeners', 'httpPort', 'httpHost', 'adminToken', 'logLevel'] as const;
type CliOnly = (typeof CLI_ONLY_SETTINGS)[number];

const NOT_FOR_CREATE_BROKER: Readonly<Record<CliOnly, string>> = {
  listeners: 'call broker.listen(options) once per listener',
  httpPort: 'call broker.listenHttp({ port, host, adminToken })',
  httpHost: 'call broker.listenHttp({ port, host, adminToken })',
  adminToken: 'call broker.listenHttp({ port, host, adminToken })',
  logLevel: 'pass a pino logger: logger: pino({ level })',
};

/** Throws on a config-file setting createBroker would otherwise ignore, naming what does that job. */
export function refuseCliOnlySettings(options: object): void {
  for (const key of Object.keys(options)) {
    const instead = (NOT_FOR_CREATE_BROKER as Readonly<Record<string, string>>)[key];
    if (instead !== undefined && (options as Record<string, unknown>)[key] !== undefined) {
      throw new TypeError(`createBroker options: "${key}" is a setting of the command line, which createBroker does not act on: ${instead}`);
    }
  }
}

/** Throws on an option `where` does not know, with a hint for a likely mistake. */
export function refuseUnknownOptions(options: object, known: readonly string[], where: string, hints: Readonly<Record<string, string>> = {}): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const hint = hints[key];
    throw new TypeError(`${where}: unknown option "${key}"${hint === undefined ? ` (known: ${known.join(', ')})` : `: ${hint}`}`);
  }
}

/** Throws unless `value` is one of `allowed`. */
export function requireOneOf<T extends string>(value: unknown, allowed: readonly T[], where: string): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new TypeError(`${where} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`);
}

/** The settings of a resolved config that createBroker takes: the command line acts on the rest itself. */
export function brokerSettings<T extends object>(config: T): Omit<T, CliOnly> {
  const out = { ...config } as Record<string, unknown>;
  for (const key of CLI_ONLY_SETTINGS) delete out[key];
  return out as Omit<T, CliOnly>;
}

const HOOKS: ReadonlyArray<keyof Hooks> = ['authenticate', 'authorizePublish', 'authorizeSubscribe'];

/**
 * Throws on a hook name the broker does not know or a hook that is not a function: a misspelt
 * authorization hook would otherwise leave everything allowed, and a value that is not a function
 * would refuse every client.
 */
export function checkHooks(hooks: unknown): void {
  if (hooks === undefined) return;
  const where = 'createBroker options';
  if (typeof hooks !== 'object' || hooks === null || Array.isArray(hooks)) throw new ConfigError(`${where}: hooks must be an object of functions (got ${JSON.stringify(hooks)})`);
  for (const [key, value] of Object.entries(hooks)) {
    if (!(HOOKS as readonly string[]).includes(key)) throw new ConfigError(`${where}: unknown setting "hooks.${key}" (the hooks are ${HOOKS.join(', ')})`);
    if (value !== undefined && typeof value !== 'function') throw new ConfigError(`${where}: hooks.${key} must be a function (got ${typeof value})`);
  }
}

/**
 * Throws unless `authenticators` is a list of enhanced authenticators (a method name and a start
 * function): anything else fails only when a client first asks for enhanced authentication.
 */
export function checkAuthenticators(authenticators: unknown): void {
  if (authenticators === undefined) return;
  const where = 'createBroker options';
  if (!Array.isArray(authenticators)) throw new ConfigError(`${where}: authenticators must be a list of { method, start } objects (got ${JSON.stringify(authenticators)})`);
  const methods = new Set<string>();
  authenticators.forEach((a: unknown, i) => {
    const entry = a as { method?: unknown; start?: unknown } | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.method !== 'string' || entry.method === '' || typeof entry.start !== 'function') {
      throw new ConfigError(`${where}: authenticators[${i}] must have a method name and a start function`);
    }
    if (methods.has(entry.method)) throw new ConfigError(`${where}: authenticators[${i}]: method "${entry.method}" is named twice`);
    methods.add(entry.method);
  });
}

const MQTT5_BOOLEANS = ['serverMoved', 'retainAvailable', 'wildcardSubscriptionAvailable', 'subscriptionIdentifiersAvailable', 'sharedSubscriptionAvailable'] as const;
const MQTT5_STRINGS = ['responseInformationPrefix', 'serverReference'] as const;
const MQTT5_OPTIONS: ReadonlyArray<keyof Mqtt5Options> = [...MQTT5_STRINGS, ...MQTT5_BOOLEANS, 'maximumQoS'];

/** Throws on an `mqtt5` option the broker does not know or of the wrong type, which CONNACK would carry as it is. */
export function checkMqtt5(mqtt5: unknown): void {
  if (mqtt5 === undefined) return;
  const where = 'createBroker options';
  if (typeof mqtt5 !== 'object' || mqtt5 === null || Array.isArray(mqtt5)) throw new ConfigError(`${where}: mqtt5 must be an object (got ${JSON.stringify(mqtt5)})`);
  for (const [key, value] of Object.entries(mqtt5)) {
    if (!(MQTT5_OPTIONS as readonly string[]).includes(key)) throw new ConfigError(`${where}: unknown setting "mqtt5.${key}" (known: ${MQTT5_OPTIONS.join(', ')})`);
    if (value === undefined) continue;
    const shown = JSON.stringify(value);
    if (key === 'maximumQoS') {
      if (value !== 0 && value !== 1 && value !== 2) throw new ConfigError(`${where}: mqtt5.maximumQoS must be 0, 1 or 2 (got ${shown})`);
    } else if ((MQTT5_BOOLEANS as readonly string[]).includes(key)) {
      if (typeof value !== 'boolean') throw new ConfigError(`${where}: mqtt5.${key} must be true or false (got ${shown})`);
    } else if (typeof value !== 'string' || value.includes('\u0000')) {
      throw new ConfigError(`${where}: mqtt5.${key} must be a string without U+0000 (got ${shown})`);
    }
  }
}
