/** Bytes the process holds in JavaScript objects and buffers (payloads live outside the JS heap). */
export function memoryInUse(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** How often memory is measured: often enough to stop a flood, rarely enough to cost nothing. */
const CHECK_MS = 1000;
/** once over the limit, the broker takes new work again below this share of it */
const RESUME_AT = 0.9;

/**
 * A broker-wide memory bound, as Mosquitto's `memory_limit`: past `limit()` bytes (0 = none), the
 * broker stops taking on what would grow its memory (new connections, messages that would wait in
 * a queue, new retained topics) until use falls back below 90% of it. Without it, enough offline
 * sessions with full queues exhaust the heap, and the crash loses every connection at once.
 */
export class MemoryGuard {
  /** true while over the limit */
  full = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly limit: () => number;
  private readonly measure: () => number;
  private readonly onChange: (full: boolean, used: number, limit: number) => void;

  constructor(limit: () => number, onChange: (full: boolean, used: number, limit: number) => void, measure: () => number = memoryInUse) {
    this.limit = limit;
    this.onChange = onChange;
    this.measure = measure;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.check(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Measures now (every second on its own once started). */
  check(): void {
    const limit = this.limit();
    if (limit <= 0) {
      if (this.full) this.set(false, 0, limit);
      return;
    }
    const used = this.measure();
    if (!this.full && used > limit) this.set(true, used, limit);
    else if (this.full && used < limit * RESUME_AT) this.set(false, used, limit);
  }

  private set(full: boolean, used: number, limit: number): void {
    this.full = full;
    this.onChange(full, used, limit);
  }
}
