const MAX_ID = 65535;

/** The ids in use: a session's inflight map, read without copying. */
export interface IdsInUse {
  has(id: number): boolean;
  readonly size: number;
}

/**
 * Packet identifiers of one session's outgoing QoS 1/2 messages ([MQTT-2.3.1-2] (3.1.1): a new
 * packet gets an id not in use). An id is in use exactly while its message is in flight, so the
 * inflight map is the record of them; this only remembers where the last search ended, so that
 * the next one meets only ids still in flight.
 */
export class PacketIdAllocator {
  private last = 0;

  constructor(private readonly inUse: IdsInUse) {}

  /** An id not in flight; it is in use once the caller puts its message in flight. */
  next(): number {
    const inUse = this.inUse;
    if (inUse.size >= MAX_ID) throw new Error('all 65535 packet identifiers are in use');
    let id = this.last;
    do id = id === MAX_ID ? 1 : id + 1;
    while (inUse.has(id));
    this.last = id;
    return id;
  }
}
