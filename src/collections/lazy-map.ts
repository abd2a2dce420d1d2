// An empty Map still carries a hash table of about 200 bytes, and a Map of one entry as much. Most
// connections never use most of their maps (topic aliases, even subscriptions on a publisher), a
// device's session usually holds one subscription, and most nodes of the subscription trie have one
// child and one subscriber: with many devices those tables would be most of the memory each one
// costs. This map keeps its first entry in two fields and makes a real Map only for a second.

const NO_ENTRIES: readonly never[] = [];

export class LazyMap<K, V> implements Iterable<[K, V]> {
  private map: Map<K, V> | undefined;
  private hasOne = false;
  private oneKey: K | undefined;
  private oneValue: V | undefined;

  get size(): number {
    return this.map !== undefined ? this.map.size : this.hasOne ? 1 : 0;
  }

  get(key: K): V | undefined {
    if (this.map !== undefined) return this.map.get(key);
    return this.hasOne && this.oneKey === key ? this.oneValue : undefined;
  }

  has(key: K): boolean {
    if (this.map !== undefined) return this.map.has(key);
    return this.hasOne && this.oneKey === key;
  }

  set(key: K, value: V): this {
    if (this.map !== undefined) {
      this.map.set(key, value);
    } else if (!this.hasOne || this.oneKey === key) {
      this.hasOne = true;
      this.oneKey = key;
      this.oneValue = value;
    } else {
      this.map = new Map([[this.oneKey as K, this.oneValue as V], [key, value]]);
      this.dropOne();
    }
    return this;
  }

  delete(key: K): boolean {
    if (this.map !== undefined) {
      if (!this.map.delete(key)) return false;
      if (this.map.size === 0) this.map = undefined;
      return true;
    }
    if (!this.hasOne || this.oneKey !== key) return false;
    this.dropOne();
    return true;
  }

  clear(): void {
    this.map = undefined;
    this.dropOne();
  }

  /** Writes every value to out[n..] and returns the new count: no iterator on a hot path. */
  copyValues(out: V[], n: number): number {
    if (this.map === undefined) {
      if (this.hasOne) out[n++] = this.oneValue as V;
      return n;
    }
    for (const v of this.map.values()) out[n++] = v;
    return n;
  }

  keys(): IterableIterator<K> {
    if (this.map !== undefined) return this.map.keys();
    return (this.hasOne ? [this.oneKey as K] : NO_ENTRIES).values();
  }

  values(): IterableIterator<V> {
    if (this.map !== undefined) return this.map.values();
    return (this.hasOne ? [this.oneValue as V] : NO_ENTRIES).values();
  }

  entries(): IterableIterator<[K, V]> {
    if (this.map !== undefined) return this.map.entries();
    return (this.hasOne ? [[this.oneKey as K, this.oneValue as V] as [K, V]] : NO_ENTRIES).values();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  private dropOne(): void {
    this.hasOne = false;
    this.oneKey = undefined;
    this.oneValue = undefined;
  }
}
