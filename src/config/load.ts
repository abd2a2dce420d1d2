import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { redactUrl, redisUrlProblem } from '../cluster/redis-target.js';
import { resolveListeners } from './listeners.js';
import { DEFAULT_CONFIG, LIMIT_SPECS, TOP_SPECS, type MidgeConfig, type SettingSpec } from './schema.js';

/** A configuration mistake, said in one line that names the setting. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Validates a partial configuration (from a file, flags or createBroker) and fills in defaults.
 * `nameOf` names a setting in messages: settings given as flags are reported under the flag.
 */
export function resolveConfig(input: unknown, source: string, nameOf: (setting: string) => string = (s) => s): MidgeConfig {
  const obj = asObject(input, source, '');
  const out: MidgeConfig = { ...DEFAULT_CONFIG, limits: { ...DEFAULT_CONFIG.limits } };
  const top = out as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined || key === 'listeners') continue;
    if (key === 'limits') {
      const limits = out.limits as unknown as Record<string, unknown>;
      for (const [lk, lv] of Object.entries(asObject(value, source, 'limits'))) {
        if (lv === undefined) continue;
        limits[lk] = check(LIMIT_SPECS, lk, lv, source, nameOf(`limits.${lk}`));
      }
      continue;
    }
    top[key] = check(TOP_SPECS, key, value, source, nameOf(key));
  }
  if (obj.listeners !== undefined) {
    out.listeners = resolveListeners(obj.listeners, source, out.host);
    // it replaces the default listener: an empty list would start a broker no client can reach
    if (out.listeners.length === 0) throw new ConfigError(`${source}: listeners must name at least one listener (leave it out for the single host/port one)`);
  }
  checkCluster(out, source, nameOf);
  return out;
}

/** Reads a YAML or JSON config file into a plain object (not yet validated). */
export function loadConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let parsed: unknown;
  if (extname(path).toLowerCase() === '.json') {
    try {
      parsed = JSON.parse(text) as unknown;
    } catch (err) {
      throw new ConfigError(`config: ${path} is not valid JSON: ${(err as Error).message}`);
    }
    return mappingOf(parsed, path);
  }
  try {
    parsed = parseYaml(text) ?? {};
  } catch (err) {
    const e = err as Error & { linePos?: Array<{ line: number }> };
    const line = e.linePos?.[0]?.line;
    throw new ConfigError(`config: ${path}${line === undefined ? '' : `:${line}`} is not valid YAML: ${e.message.split('\n')[0]}`);
  }
  return mappingOf(parsed, path);
}

/** A list or a scalar at the top would reach the settings as "0", "1"... and be called unknown settings. */
function mappingOf(parsed: unknown, path: string): unknown {
  if (isPlainObject(parsed)) return parsed;
  if (parsed === null) return {};
  const got = Array.isArray(parsed) ? 'a list' : JSON.stringify(parsed);
  throw new ConfigError(`config: ${path} must hold a mapping of settings (name: value), not ${got}`);
}

/** Deep-merges `override` onto `base` (objects merge, anything else replaces). */
export function mergeConfig(base: unknown, override: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries((override ?? {}) as Record<string, unknown>)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] = isPlainObject(prev) && isPlainObject(v) ? mergeConfig(prev, v) : v;
  }
  return out;
}

function check(specs: readonly SettingSpec[], key: string, value: unknown, source: string, name: string): unknown {
  const spec = specs.find((s) => s.key === key);
  if (spec === undefined) throw new ConfigError(`${source}: unknown setting "${name}"`);
  const shown = JSON.stringify(value);
  switch (spec.type) {
    case 'integer': {
      const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) {
        throw new ConfigError(`${source}: ${name} must be an integer between ${spec.min} and ${spec.max} (got ${shown})`);
      }
      return n;
    }
    case 'string':
      if (typeof value !== 'string' || value.length === 0) throw new ConfigError(`${source}: ${name} must be a non-empty string (got ${shown})`);
      return value;
    case 'path':
      if (typeof value !== 'string') throw new ConfigError(`${source}: ${name} must be a file path (got ${shown})`);
      return value;
    case 'text':
      // YAML reads an unquoted 12345 as a number
      if (typeof value !== 'string') throw new ConfigError(`${source}: ${name} must be a string (got ${shown}${typeof value === 'number' ? '; quote it in YAML' : ''})`);
      return value;
    case 'boolean':
      if (value === '') return '';
      if (value === true || value === 'true') return 'true';
      if (value === false || value === 'false') return 'false';
      throw new ConfigError(`${source}: ${name} must be true or false (got ${shown})`);
    case 'enum':
      if (typeof value !== 'string' || !spec.values?.includes(value)) {
        throw new ConfigError(`${source}: ${name} must be one of ${spec.values?.join(', ')} (got ${shown})`);
      }
      return value;
  }
}

function checkCluster(config: MidgeConfig, source: string, nameOf: (setting: string) => string): void {
  const problem = config.clusterRedis === '' ? undefined : redisUrlProblem(config.clusterRedis);
  if (problem !== undefined) {
    throw new ConfigError(`${source}: ${nameOf('clusterRedis')} ${problem} (got ${JSON.stringify(redactUrl(config.clusterRedis))})`);
  }
  // node ids and the prefix go into Redis keys, channel names and line-based route messages
  if (config.clusterNodeId !== '' && !/^[A-Za-z0-9._:-]{1,128}$/.test(config.clusterNodeId)) {
    throw new ConfigError(`${source}: ${nameOf('clusterNodeId')} must be 1 to 128 letters, digits, '.', '_', ':' or '-' (got ${JSON.stringify(config.clusterNodeId)})`);
  }
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(config.clusterPrefix)) {
    throw new ConfigError(`${source}: ${nameOf('clusterPrefix')} must be 1 to 64 letters, digits, '.', '_', ':' or '-' (got ${JSON.stringify(config.clusterPrefix)})`);
  }
}

function asObject(value: unknown, source: string, name: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) throw new ConfigError(`${source}: ${name === '' ? 'the configuration' : name} must be a mapping of settings`);
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}
