// stands in for the slot arrays until the first id: nothing is written to it
const NONE: never[] = [];
/** slots an empty table keeps (a window of up to 32 ids) */
const KEPT_CAPACITY = 64;

/**
 * Values by MQTT packet identifier (1-65535), iterated in the order the ids were added: a session's
 * outgoing QoS 1/2 messages in flight (whose resends [MQTT-4.4.0-1] follow that order) and its
 * incoming QoS 2 ids awaiting PUBREL. It replaces a Map: with the usual window of one or a few
 * messages, every message added one key and its acknowledgement deleted it, and V8 reallocates a
 * small Map's table as it empties and fills again, which made the pair cost about ten times the
 * work here. Ids come in sequence, so they fall into distinct slots of an open-addressed table
 * (linear probing, deletion by shifting back: no tombstones to clean up). Nothing is allocated
 * before the first id, so an idle connection pays for none of it.
 */
export class PacketIdMap<V> implements Iterable<[number, V]> {
  /** packet id per slot; 0 = free (ids are 1-65535) */
  private ids: number[] | undefined;
  private items: Array<V | undefined> = NONE;
  /** when each slot's id was added, for the iteration order */
  private order: number[] = NONE;
  private mask = 0;
  private count = 0;
  private clock = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): V | undefined {
    const i = this.slotOf(id);
    return i < 0 ? undefined : this.items[i];
  }

  has(id: number): boolean {
    return this.slotOf(id) >= 0;
  }

  /** Adds the id, or replaces its value in place (an id keeps its place in the order, as in a Map). */
  set(id: number, value: V): this {
    let ids = this.ids;
    if (ids === undefined) ids = this.resize(8);
    else if ((this.count + 1) * 2 > ids.length) ids = this.resize(ids.length * 2);
    const mask = this.mask;
    let i = id & mask;
    for (;;) {
      const at = ids[i] as number;
      if (at === id) {
        this.items[i] = value;
        return this;
      }
      if (at === 0) break;
      i = (i + 1) & mask;
    }
    ids[i] = id;
    this.items[i] = value;
    this.order[i] = this.clock++;
    this.count++;
    return this;
  }

  delete(id: number): boolean {
    let hole = this.slotOf(id);
    if (hole < 0) return false;
    const ids = this.ids as number[];
    const values = this.items;
    const order = this.order;
    const mask = this.mask;
    // Shift back each later id of the run whose home slot is not between the hole and where it
    // sits, so that every lookup still meets its id before a free slot.
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const at = ids[j] as number;
      if (at === 0) break;
      const home = at & mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      ids[hole] = at;
      values[hole] = values[j];
      order[hole] = order[j] as number;
      hole = j;
    }
    ids[hole] = 0;
    values[hole] = undefined;
    if (--this.count === 0) {
      this.clock = 0;
      // a table grown for a burst is given back once it empties; a small one is kept for the next id
      if (ids.length > KEPT_CAPACITY) this.clear();
    }
    return true;
  }

  clear(): void {
    this.ids = undefined;
    this.items = NONE;
    this.order = NONE;
    this.mask = 0;
    this.count = 0;
    this.clock = 0;
  }

  /** A snapshot in sending order: the window may change while it is walked (a resend, an id released). */
  entries(): IterableIterator<[number, V]> {
    const ids = this.ids;
    if (ids === undefined || this.count === 0) return ([] as Array<[number, V]>).values();
    const slots: number[] = [];
    for (let i = 0; i < ids.length; i++) if (ids[i] !== 0) slots.push(i);
    const order = this.order;
    slots.sort((a, b) => (order[a] as number) - (order[b] as number));
    return slots.map((i): [number, V] => [ids[i] as number, this.items[i] as V]).values();
  }

  keys(): IterableIterator<number> {
    return Array.from(this.entries(), ([k]) => k).values();
  }

  values(): IterableIterator<V> {
    return Array.from(this.entries(), ([, v]) => v).values();
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.entries();
  }

  private slotOf(id: number): number {
    const ids = this.ids;
    if (ids === undefined) return -1;
    const mask = this.mask;
    for (let i = id & mask; ; i = (i + 1) & mask) {
      const at = ids[i];
      if (at === id) return i;
      if (at === 0) return -1;
    }
  }

  private resize(capacity: number): number[] {
    const before = this.entries();
    this.ids = new Array<number>(capacity).fill(0);
    this.items = new Array<V | undefined>(capacity).fill(undefined);
    this.order = new Array<number>(capacity).fill(0);
    this.mask = capacity - 1;
    this.count = 0;
    this.clock = 0;
    for (const [id, value] of before) this.set(id, value);
    return this.ids;
  }
}
