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

export class PublishQuota {
  private messages: number;
  private bytes: number;
  private at: number;
  /** the rates the buckets were sized for: a reload may change the limits this reads */
  private rate: number;
  private byteRate: number;

  constructor(
    private readonly limits: PublishRateLimits,
    now: number,
  ) {
    this.rate = limits.maxPublishRate;
    this.byteRate = limits.maxPublishBytesRate;
    this.messages = this.rate;
    this.bytes = this.byteRate;
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
    if (rate !== this.rate || byteRate !== this.byteRate) {
      // buckets left from other limits (or from none) say nothing about the new ones
      this.rate = rate;
      this.byteRate = byteRate;
      this.messages = rate;
      this.bytes = byteRate;
      this.at = now;
      return;
    }
    const elapsed = now - this.at;
    if (elapsed <= 0) return;
    this.at = now;
    if (rate > 0) this.messages = Math.min(rate, this.messages + (elapsed * rate) / 1000);
    if (byteRate > 0) this.bytes = Math.min(byteRate, this.bytes + (elapsed * byteRate) / 1000);
  }

  /**
   * Counts a message of `size` bytes; returns how long (ms) to stop reading from the client, 0 for
   * not at all. The pause is as long as the whole debt, however big the message: a shorter one lets
   * a client of large messages through at one a second whatever the byte rate. The debt is then
   * repaid before the client's next publish is read, so it never exceeds one message's worth.
   */
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
    return Math.ceil(wait);
  }
}
