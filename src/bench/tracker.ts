/**
 * What subscribers received, per publisher: duplicates and reordering from sequence numbers,
 * losses against what the publishers had acknowledged, and end-to-end latency samples.
 */
export class Tracker {
  delivered = 0;
  /** every delivery, measured or not */
  total = 0;
  duplicates = 0;
  outOfOrder = 0;
  private latencies: Float64Array = new Float64Array(1 << 16);
  private samples = 0;
  /** per (subscriber, publisher): sequence numbers seen, as a growing bitmap */
  private readonly seen = new Map<number, Uint8Array>();
  private readonly last = new Map<number, number>();
  private readonly unique = new Map<number, number>();
  measuring = false;

  /** Payload layout: u32 publisher, u32 sequence, f64 send time (ms, performance.now()). */
  static payload(size: number, publisher: number, seq: number, now: number): Buffer {
    const b = Buffer.alloc(Math.max(16, size));
    b.writeUInt32BE(publisher, 0);
    b.writeUInt32BE(seq, 4);
    b.writeDoubleBE(now, 8);
    return b;
  }

  received(subscriber: number, payload: Buffer, now: number): void {
    if (payload.length < 16) return;
    this.total++;
    const publisher = payload.readUInt32BE(0);
    const seq = payload.readUInt32BE(4);
    const key = subscriber * 1_000_003 + publisher;
    let bits = this.seen.get(key);
    if (bits === undefined || (seq >> 3) >= bits.length) {
      const grown = new Uint8Array(Math.max(1024, ((seq >> 3) + 1) * 2));
      if (bits !== undefined) grown.set(bits);
      bits = grown;
      this.seen.set(key, bits);
    }
    const mask = 1 << (seq & 7);
    if (((bits[seq >> 3] as number) & mask) !== 0) {
      this.duplicates++;
      return;
    }
    bits[seq >> 3] = (bits[seq >> 3] as number) | mask;
    this.unique.set(key, (this.unique.get(key) ?? 0) + 1);
    const last = this.last.get(key) ?? -1;
    if (seq < last) this.outOfOrder++;
    else this.last.set(key, seq);
    if (!this.measuring) return;
    this.delivered++;
    if (this.samples === this.latencies.length) {
      const grown = new Float64Array(this.latencies.length * 2);
      grown.set(this.latencies);
      this.latencies = grown;
    }
    this.latencies[this.samples++] = now - payload.readDoubleBE(8);
  }

  /** Messages a subscriber should have had from a publisher but did not get. */
  lost(subscriber: number, publisher: number, expected: number): number {
    return Math.max(0, expected - (this.unique.get(subscriber * 1_000_003 + publisher) ?? 0));
  }

  /** Latency percentiles in ms. */
  percentiles(): { p50: number; p99: number; p999: number } {
    const a = this.latencies.subarray(0, this.samples).slice().sort();
    const at = (q: number): number => (a.length === 0 ? NaN : (a[Math.min(a.length - 1, Math.floor(q * a.length))] as number));
    return { p50: at(0.5), p99: at(0.99), p999: at(0.999) };
  }
}
