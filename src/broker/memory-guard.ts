import { getHeapStatistics } from 'node:v8';

/** What the guard weighs, in bytes. */
export interface MemoryReading {
  /** live JavaScript objects (and garbage not yet collected) */
  heapUsed: number;
  /** buffers outside the JavaScript heap: payloads, mostly */
  external: number;
  /** V8's heap limit: past it the process dies */
  heapLimit: number;
}

const heapLimit = getHeapStatistics().heap_size_limit;

/**
 * V8's own figures: `process.memoryUsage()` also reads the resident set from /proc, which needs a
 * file descriptor, and threw (EMFILE) once connections had taken them all, ending the process.
 */
export function readMemory(): MemoryReading {
  const h = getHeapStatistics();
  return { heapUsed: h.used_heap_size, external: h.external_memory, heapLimit };
}

/** Bytes the process holds in JavaScript objects and buffers, what `maxMemory` bounds. */
export function memoryInUse(r: MemoryReading = readMemory()): number {
  return r.heapUsed + r.external;
}

/** The share of V8's heap limit the broker guards itself at when no `maxMemory` is set. */
export const HEAP_SHARE = 0.85;
/** How often memory is measured: often enough to stop a flood, rarely enough to cost nothing. */
const CHECK_MS = 1000;
/** once over the limit, the broker takes new work again below this share of it */
const RESUME_AT = 0.9;

/**
 * A broker-wide memory bound, as Mosquitto's `memory_limit`: past `maxMemory()` bytes of heap and
 * buffers, or with none set past 85% of V8's heap limit (beyond which the process dies, and every
 * connection and unsaved message with it), the broker stops taking on what would grow its memory
 * (new connections, new subscriptions, messages that would wait in a queue, retained messages owed
 * or on new topics)
 * until use falls back below 90% of the bound.
 */
export class MemoryGuard {
  /** true while over the bound */
  full = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxMemory: () => number;
  private readonly read: () => MemoryReading;
  private readonly onChange: (full: boolean, used: number, limit: number) => void;

  constructor(maxMemory: () => number, onChange: (full: boolean, used: number, limit: number) => void, read: () => MemoryReading = readMemory) {
    this.maxMemory = maxMemory;
    this.onChange = onChange;
    this.read = read;
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

  /** Measures now (every second on its own once started); returns whether the broker is full. */
  check(): boolean {
    const r = this.read();
    const max = this.maxMemory();
    const used = max > 0 ? memoryInUse(r) : r.heapUsed;
    const limit = max > 0 ? max : r.heapLimit * HEAP_SHARE;
    if (!this.full && used > limit) this.set(true, used, limit);
    else if (this.full && used < limit * RESUME_AT) this.set(false, used, limit);
    return this.full;
  }

  private set(full: boolean, used: number, limit: number): void {
    this.full = full;
    this.onChange(full, used, limit);
  }
}
