/** What one subscriber received from one publisher. */
interface Stream {
  /** sequence numbers seen, as a growing bitmap */
  seen: Uint8Array;
  last: number;
  unique: number;
}

/**
 * What subscribers received, per publisher: duplicates and reordering from sequence numbers,
 * losses against what the publishers had sent (QoS 0) or had acknowledged (QoS 1/2), and end-to-end latency samples.
 */
export class Tracker {
  delivered = 0;
  /** every delivery, measured or not */
  total = 0;
  duplicates = 0;
  outOfOrder = 0;
  private latencies: Float64Array = new Float64Array(1 << 16);
  private samples = 0;
  /** indexed by subscriber, then publisher */
  private readonly streams: Array<Array<Stream | undefined> | undefined> = [];
  measuring = false;

  /** Payload layout: u32 publisher, u32 sequence, f64 send time (ms, performance.now()). */
  static stamp(buf: Buffer, at: number, publisher: number, seq: number, now: number): void {
    buf.writeUInt32BE(publisher, at);
    buf.writeUInt32BE(seq, at + 4);
    buf.writeDoubleBE(now, at + 8);
  }

  /** A payload received by `subscriber`: buf[start, end). */
  received(subscriber: number, buf: Buffer, start: number, end: number, now: number): void {
    if (end - start < 16) return;
    this.total++;
    const publisher = buf.readUInt32BE(start);
    const seq = buf.readUInt32BE(start + 4);
    const bySubscriber = (this.streams[subscriber] ??= []);
    let s = bySubscriber[publisher];
    if (s === undefined) {
      s = { seen: new Uint8Array(1024), last: -1, unique: 0 };
      bySubscriber[publisher] = s;
    }
    if ((seq >> 3) >= s.seen.length) {
      const grown = new Uint8Array(((seq >> 3) + 1) * 2);
      grown.set(s.seen);
      s.seen = grown;
    }
    const mask = 1 << (seq & 7);
    const bits = s.seen;
    if (((bits[seq >> 3] as number) & mask) !== 0) {
      this.duplicates++;
      return;
    }
    bits[seq >> 3] = (bits[seq >> 3] as number) | mask;
    s.unique++;
    if (seq < s.last) this.outOfOrder++;
    else s.last = seq;
    if (!this.measuring) return;
    this.delivered++;
    if (this.samples === this.latencies.length) {
      const grown = new Float64Array(this.latencies.length * 2);
      grown.set(this.latencies);
      this.latencies = grown;
    }
    this.latencies[this.samples++] = now - buf.readDoubleBE(start + 8);
  }

  /** Messages a subscriber should have had from a publisher but did not get. */
  lost(subscriber: number, publisher: number, expected: number): number {
    return Math.max(0, expected - (this.streams[subscriber]?.[publisher]?.unique ?? 0));
  }

  /** Latency percentiles in ms. */
  percentiles(): { p50: number; p99: number; p999: number } {
    const a = this.latencies.subarray(0, this.samples).slice().sort();
    const at = (q: number): number => (a.length === 0 ? NaN : (a[Math.min(a.length - 1, Math.floor(q * a.length))] as number));
    return { p50: at(0.5), p99: at(0.99), p999: at(0.999) };
  }
}
