/**
 * Per-client publish rate limits (messages/s and bytes/s) as token buckets. Two ways to hold a
 * client to them: `tryTake` refuses what is over the rate (5.0 can say so with 0x97), `charge` runs
 * into debt and asks to stop reading from the client for a while, so that nothing it sent is dropped
 * (EMQX's limiter works that way; it is the only way for 3.1.1, which has no refusal code). No timers here: two numbers
 * per client, refilled from the clock on each publish.
 */
export interface PublishRateLimits {
  /** 0 = no limit */
  maxPublishRate: number;
  /** 0 = no limit */
  maxPublishBytesRate: number;
}

/** Longest single pause: the connection is read at least this often, so keep alive still works. */
export const MAX_THROTTLE_MS = 1000;

export class PublishQuota {
  private messages: number;
  private bytes: number;
  private at: number;

  constructor(
    private readonly limits: PublishRateLimits,
    now: number,
  ) {
    this.messages = limits.maxPublishRate;
    this.bytes = limits.maxPublishBytesRate;
    this.at = now;
  }

  static needed(limits: PublishRateLimits): boolean {
    return limits.maxPublishRate > 0 || limits.maxPublishBytesRate > 0;
  }

  /** Takes a message of `size` bytes if the rate allows it now; a refused one costs nothing. */
  tryTake(size: number, now: number): boolean {
    this.refill(now);
    const { maxPublishRate: rate, maxPublishBytesRate: byteRate } = this.limits;
    if (rate > 0 && this.messages < 1) return false;
    // a message bigger than a whole second's allowance still passes when the bucket is full
    if (byteRate > 0 && this.bytes < Math.min(size, byteRate)) return false;
    if (rate > 0) this.messages -= 1;
    if (byteRate > 0) this.bytes -= size;
    return true;
  }

  private refill(now: number): void {
    const { maxPublishRate: rate, maxPublishBytesRate: byteRate } = this.limits;
    const elapsed = now - this.at;
    if (elapsed <= 0) return;
    this.at = now;
    if (rate > 0) this.messages = Math.min(rate, this.messages + (elapsed * rate) / 1000);
    if (byteRate > 0) this.bytes = Math.min(byteRate, this.bytes + (elapsed * byteRate) / 1000);
  }

  /** Counts a message of `size` bytes; returns how long (ms) to stop reading from the client, 0 for not at all. */
  charge(size: number, now: number): number {
    this.refill(now);
    const { maxPublishRate: rate, maxPublishBytesRate: byteRate } = this.limits;
    let wait = 0;
    if (rate > 0) {
      this.messages -= 1;
      if (this.messages < 0) wait = Math.max(wait, (-this.messages * 1000) / rate);
    }
    if (byteRate > 0) {
      this.bytes -= size;
      if (this.bytes < 0) wait = Math.max(wait, (-this.bytes * 1000) / byteRate);
    }
    return Math.min(Math.ceil(wait), MAX_THROTTLE_MS);
  }
}
