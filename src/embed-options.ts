/**
 * Checks of what an embedding application passes to createBroker, listen and listenHttp. Plain
 * JavaScript callers get no type errors, and an option the broker does not know would otherwise be
 * dropped without a word: a listener that never opens, a path that is not the one served.
 */

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
