// An empty Map still carries a hash table of about 200 bytes. Most connections never use most of
// their maps (topic aliases, even subscriptions on a publisher), and with tens of thousands of idle
// devices those tables are a large share of the memory per connection. This wrapper allocates the
// real Map on the first insert and answers reads without one.

const NO_ENTRIES: readonly never[] = [];

export class LazyMap<K, V> implements Iterable<[K, V]> {
  private map: Map<K, V> | undefined;

  get size(): number {
    return this.map === undefined ? 0 : this.map.size;
  }

  get(key: K): V | undefined {
    return this.map === undefined ? undefined : this.map.get(key);
  }

  has(key: K): boolean {
    return this.map !== undefined && this.map.has(key);
  }

  set(key: K, value: V): this {
    (this.map ??= new Map()).set(key, value);
    return this;
  }

  delete(key: K): boolean {
    return this.map !== undefined && this.map.delete(key);
  }

  clear(): void {
    this.map?.clear();
  }

  keys(): IterableIterator<K> {
    return this.map === undefined ? NO_ENTRIES.values() : this.map.keys();
  }

  values(): IterableIterator<V> {
    return this.map === undefined ? NO_ENTRIES.values() : this.map.values();
  }

  entries(): IterableIterator<[K, V]> {
    return this.map === undefined ? NO_ENTRIES.values() : this.map.entries();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }
}
