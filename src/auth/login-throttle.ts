/**
 * Slows down password guessing: after a failed login from an address, its next refusals are
 * answered later and later (doubling up to a cap). A success clears the address. Entries are
 * forgotten once quiet for `forgetMs`, so the table stays small.
 */
export class LoginThrottle {
  private readonly failures = new Map<string, { count: number; last: number }>();

  constructor(
    private readonly baseMs = 200,
    private readonly maxMs = 5000,
    private readonly forgetMs = 10 * 60_000,
  ) {}

  /** Records a failure; returns how long to wait before answering it. */
  failed(address: string, now = Date.now()): number {
    const host = hostOf(address);
    const prev = this.failures.get(host);
    const count = prev !== undefined && now - prev.last < this.forgetMs ? prev.count + 1 : 1;
    this.failures.set(host, { count, last: now });
    if (this.failures.size > 100_000) this.prune(now);
    return Math.min(this.maxMs, this.baseMs * 2 ** (count - 1));
  }

  succeeded(address: string): void {
    this.failures.delete(hostOf(address));
  }

  private prune(now: number): void {
    for (const [k, v] of this.failures) if (now - v.last >= this.forgetMs) this.failures.delete(k);
  }
}

/** "1.2.3.4:5678" -> "1.2.3.4"; "[::1]:5678" or "::1:5678" -> the address without the port */
function hostOf(address: string): string {
  const i = address.lastIndexOf(':');
  return i > 0 ? address.slice(0, i) : address;
}
