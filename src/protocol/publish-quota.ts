/**
 * Per-client publish rate limits (messages/s and bytes/s) as token buckets refilled from the
 * coarse clock: no timers, two numbers per client. A client over its rate is told 0x97 (quota
 * exceeded) where 5.0 allows it; 3.1.1 has no such code, so its excess messages are dropped.
 */
export interface PublishRateLimits {
  /** 0 = no limit */
  maxPublishRate: number;
  /** 0 = no limit */
  maxPublishBytesRate: number;
}

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

  /** True when a message of `size` bytes fits in the client's rate now (and takes its share). */
  take(size: number, now: number): boolean {
    const { maxPublishRate: rate, maxPublishBytesRate: byteRate } = this.limits;
    const elapsed = now - this.at;
    if (elapsed > 0) {
      this.at = now;
      if (rate > 0) this.messages = Math.min(rate, this.messages + (elapsed * rate) / 1000);
      if (byteRate > 0) this.bytes = Math.min(byteRate, this.bytes + (elapsed * byteRate) / 1000);
    }
    if (rate > 0 && this.messages < 1) return false;
    // a message bigger than a whole second's allowance still passes when the bucket is full
    if (byteRate > 0 && this.bytes < Math.min(size, byteRate)) return false;
    if (rate > 0) this.messages -= 1;
    if (byteRate > 0) this.bytes -= size;
    return true;
  }
}
