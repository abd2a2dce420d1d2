const MAX_ID = 65535;

/**
 * Packet identifiers of one session's outgoing QoS 1/2 messages ([MQTT-2.3.1-2] (3.1.1): a new
 * packet gets an id not in use). The ids in use are at most the inflight window, so a small set
 * holds them, and the next id is searched from the last one given: the search meets only ids still
 * in flight. (A bitmap of all 65535 ids costs 8 KB per session, and freeing it whenever the window
 * empties made every lone QoS 1 delivery allocate one.)
 */
export class PacketIdAllocator {
  /** created on first use: sessions that never send QoS 1/2 carry none */
  private used: Set<number> | undefined;
  private last = 0;

  get inUse(): number {
    return this.used?.size ?? 0;
  }

  allocate(): number {
    const used = (this.used ??= new Set<number>());
    if (used.size >= MAX_ID) throw new Error('all 65535 packet identifiers are in use');
    let id = this.last;
    do id = id === MAX_ID ? 1 : id + 1;
    while (used.has(id));
    used.add(id);
    this.last = id;
    return id;
  }

  release(id: number): void {
    this.used?.delete(id);
  }

  /** Marks an id as in use (state restored from storage). */
  claim(id: number): void {
    if (id >= 1 && id <= MAX_ID) (this.used ??= new Set<number>()).add(id);
  }

  isInUse(id: number): boolean {
    return this.used?.has(id) === true;
  }
}
