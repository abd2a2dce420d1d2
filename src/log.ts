import pino, { type Logger } from 'pino';
import type { LogLevel } from './config/schema.js';

/** The broker's logger: one JSON line per event on stdout, so log shippers need no parsing rules. */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { name: 'midge' } });
}

/**
 * At most `perSecond` lines a second for events a client can cause at will (failed TLS
 * handshakes), so that no client floods the log. The rest are counted, and their number is
 * logged in one line once the second is over.
 */
export class LogCap {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(
    private readonly perSecond: number,
    private readonly logSuppressed: (count: number) => void,
  ) {}

  /** Whether this event may have its line; when not, it is counted. */
  admit(now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged < this.perSecond) {
      this.logged++;
      return true;
    }
    if (this.suppressed++ === 0) {
      const timer = setTimeout(() => {
        const count = this.suppressed;
        this.suppressed = 0;
        this.logSuppressed(count);
      }, this.windowStart + 1000 - now);
      timer.unref();
    }
    return false;
  }
}
