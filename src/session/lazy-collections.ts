// An empty Map or Set still carries a hash table of about 200 bytes. Most connections never use
// most of their collections (topic aliases, QoS 2 ids, even inflight on a QoS 0 client), and with
// tens of thousands of idle devices those tables are a large share of the memory per connection.
// These wrappers allocate the real collection on the first insert and answer reads without one.

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

export class LazySet<T> implements Iterable<T> {
  private set: Set<T> | undefined;

  get size(): number {
    return this.set === undefined ? 0 : this.set.size;
  }

  has(value: T): boolean {
    return this.set !== undefined && this.set.has(value);
  }

  add(value: T): this {
    (this.set ??= new Set()).add(value);
    return this;
  }

  delete(value: T): boolean {
    return this.set !== undefined && this.set.delete(value);
  }

  clear(): void {
    this.set?.clear();
  }

  values(): IterableIterator<T> {
    return this.set === undefined ? NO_ENTRIES.values() : this.set.values();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.values();
  }
}
