/**
 * Broker-wide admission of new connections: a cap on connections open at once and on new
 * connections per second (a token bucket, so short bursts pass). A refused connection still gets
 * its CONNACK with the reason (0x97 / 0x9F), so clients see why instead of a silent reset.
 */
export interface AdmissionLimits {
  /** 0 = no limit */
  maxConnections: number;
  /** new connections per second; 0 = no limit */
  maxConnectionRate: number;
}

export interface Refusal {
  readonly reasonCode: number;
  readonly reason: string;
}

const QUOTA_EXCEEDED = 0x97;
const CONNECTION_RATE_EXCEEDED = 0x9f;

export class Admission {
  limits: AdmissionLimits;
  private tokens: number;
  private refilledAt: number;

  constructor(limits: AdmissionLimits, now = Date.now()) {
    this.limits = limits;
    this.tokens = limits.maxConnectionRate;
    this.refilledAt = now;
  }

  /** `open` is the number of connections open now, this one included. */
  admit(open: number, now = Date.now()): Refusal | undefined {
    const { maxConnections, maxConnectionRate } = this.limits;
    if (maxConnections > 0 && open > maxConnections) {
      return { reasonCode: QUOTA_EXCEEDED, reason: `connection limit (${maxConnections}) reached` };
    }
    if (maxConnectionRate > 0) {
      const elapsed = now - this.refilledAt;
      this.refilledAt = now;
      this.tokens = Math.min(maxConnectionRate, this.tokens + (elapsed * maxConnectionRate) / 1000);
      if (this.tokens < 1) return { reasonCode: CONNECTION_RATE_EXCEEDED, reason: `more than ${maxConnectionRate} new connections per second` };
      this.tokens -= 1;
    }
    return undefined;
  }
}
