import pino, { type Logger } from 'pino';
import type { LogLevel } from './config/schema.js';

/** The broker's logger: one JSON line per event on stdout, so log shippers need no parsing rules. */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { name: 'midge' } });
}
