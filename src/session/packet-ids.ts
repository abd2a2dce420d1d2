const MAX_ID = 65535;

/**
 * Packet identifiers of one session's outgoing QoS 1/2 messages ([MQTT-2.3.1-2] (3.1.1): a new
 * packet gets an id not in use). A bitmap of 65536 bits, created on first use, so sessions that
 * never send QoS 1/2 carry none of it; the next id is searched from the last one given.
 */
export class PacketIdAllocator {
  private bits: Uint32Array | undefined;
  private last = 0;
  private used = 0;

  get inUse(): number {
    return this.used;
  }

  allocate(): number {
    if (this.used >= MAX_ID) throw new Error('all 65535 packet identifiers are in use');
    const bits = (this.bits ??= new Uint32Array(2048));
    let id = this.last;
    for (;;) {
      id = id === MAX_ID ? 1 : id + 1;
      const word = id >>> 5;
      const mask = 1 << (id & 31);
      if (((bits[word] as number) & mask) === 0) {
        bits[word] = (bits[word] as number) | mask;
        this.used++;
        this.last = id;
        return id;
      }
    }
  }

  release(id: number): void {
    const bits = this.bits;
    if (bits === undefined || id < 1 || id > MAX_ID) return;
    const word = id >>> 5;
    const mask = 1 << (id & 31);
    if (((bits[word] as number) & mask) === 0) return;
    bits[word] = (bits[word] as number) & ~mask;
    if (--this.used === 0) this.bits = undefined;
  }

  /** Marks an id as in use (state restored from storage). */
  claim(id: number): void {
    if (id < 1 || id > MAX_ID || this.isInUse(id)) return;
    const bits = (this.bits ??= new Uint32Array(2048));
    bits[id >>> 5] = (bits[id >>> 5] as number) | (1 << (id & 31));
    this.used++;
  }

  isInUse(id: number): boolean {
    const bits = this.bits;
    return bits !== undefined && id >= 1 && id <= MAX_ID && ((bits[id >>> 5] as number) & (1 << (id & 31))) !== 0;
  }
}
