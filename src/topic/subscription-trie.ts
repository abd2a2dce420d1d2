import { LazyMap } from '../collections/lazy-map.js';

interface Node<V> {
  children: LazyMap<string, Node<V>> | undefined;
  plus: Node<V> | undefined;
  hash: Node<V> | undefined;
  /** values of the filter ending here, by key (client id or share group) */
  values: LazyMap<string, V> | undefined;
}

function newNode<V>(): Node<V> {
  return { children: undefined, plus: undefined, hash: undefined, values: undefined };
}

/**
 * What one topic matched, kept by its publisher: a device or service mostly publishes to the same
 * topic over and over, and while no subscription has changed since, the trie need not be walked
 * again for it. Only filled on the topic's second use in a row, so a publisher of ever-new topics
 * costs a string comparison and nothing more.
 */
export class MatchMemo {
  topic = '';
  /** the trie's version the values are good for; -1 = none */
  version = -1;
  values: readonly unknown[] = NONE;
}

const NONE: readonly unknown[] = [];
/** a topic with more matches than this is not kept: walking costs little next to delivering to them */
const MEMO_MAX = 16;

/**
 * Subscription filters by level, for routing: `match` visits only the branches the topic can
 * reach, so its cost follows the topic's depth and the number of matches, never the number of
 * subscriptions. Each (filter, key) holds one value.
 */
export class SubscriptionTrie<V> {
  private readonly root: Node<V> = newNode();
  private count = 0;
  /** changes with every set and delete, so that no MatchMemo outlives what it saw */
  private version = 0;

  get size(): number {
    return this.count;
  }

  /** Returns true when the (filter, key) entry is new. */
  set(filter: string, key: string, value: V): boolean {
    let node = this.root;
    for (const level of filter.split('/')) {
      if (level === '+') node = node.plus ??= newNode();
      else if (level === '#') node = node.hash ??= newNode();
      else {
        const children = (node.children ??= new LazyMap());
        let child = children.get(level);
        if (child === undefined) {
          child = newNode();
          children.set(level, child);
        }
        node = child;
      }
    }
    const values = (node.values ??= new LazyMap());
    this.version++;
    const isNew = !values.has(key);
    values.set(key, value);
    if (isNew) this.count++;
    return isNew;
  }

  get(filter: string, key: string): V | undefined {
    return this.find(filter)?.values?.get(key);
  }

  delete(filter: string, key: string): boolean {
    const path: Array<[Node<V>, string]> = [];
    let node: Node<V> | undefined = this.root;
    for (const level of filter.split('/')) {
      path.push([node, level]);
      node = step(node, level);
      if (node === undefined) return false;
    }
    if (node.values === undefined || !node.values.delete(key)) return false;
    this.version++;
    this.count--;
    if (node.values.size === 0) node.values = undefined;
    // prune nodes left empty so churn does not grow memory
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [Node<V>, string];
      const child = step(parent, level) as Node<V>;
      if (!isEmpty(child)) break;
      if (level === '+') parent.plus = undefined;
      else if (level === '#') parent.hash = undefined;
      else {
        parent.children?.delete(level);
        if (parent.children?.size === 0) parent.children = undefined;
      }
    }
    return true;
  }

  /**
   * Writes the value of every (filter, key) whose filter matches the topic name to out[0..n) and
   * returns n. What `out` holds past n is left as it was: a router reuses one array for every
   * message, and truncating it (`length = 0`) costs a runtime call and its backing store each time.
   */
  match(topic: string, out: V[], memo?: MatchMemo): number {
    if (memo === undefined) return walk(this.root, topic, 0, topic.charCodeAt(0) === 0x24 /* $ */, out, 0);
    if (memo.topic !== topic) {
      memo.topic = topic;
      memo.version = -1;
      memo.values = NONE;
      return walk(this.root, topic, 0, topic.charCodeAt(0) === 0x24, out, 0);
    }
    if (memo.version === this.version) {
      const values = memo.values as readonly V[];
      for (let i = 0; i < values.length; i++) out[i] = values[i] as V;
      return values.length;
    }
    const n = walk(this.root, topic, 0, topic.charCodeAt(0) === 0x24, out, 0);
    if (n <= MEMO_MAX) {
      memo.values = out.slice(0, n);
      memo.version = this.version;
    }
    return n;
  }

  *entries(): IterableIterator<[string, string, V]> {
    yield* entriesOf(this.root, []);
  }

  private find(filter: string): Node<V> | undefined {
    let node: Node<V> | undefined = this.root;
    for (const level of filter.split('/')) {
      node = step(node, level);
      if (node === undefined) return undefined;
    }
    return node;
  }
}

function step<V>(node: Node<V>, level: string): Node<V> | undefined {
  if (level === '+') return node.plus;
  if (level === '#') return node.hash;
  return node.children?.get(level);
}

function isEmpty<V>(n: Node<V>): boolean {
  return n.values === undefined && n.children === undefined && n.plus === undefined && n.hash === undefined;
}

function putAll<V>(values: LazyMap<string, V> | undefined, out: V[], n: number): number {
  return values === undefined ? n : values.copyValues(out, n);
}

/**
 * `start` is where the next topic level begins, or -1 once the whole topic has been consumed; `n`
 * is how many matches `out` holds so far, and the new count is returned.
 */
function walk<V>(node: Node<V>, topic: string, start: number, dollar: boolean, out: V[], n: number): number {
  if (start < 0) {
    n = putAll(node.values, out, n);
    // "a/#" also matches "a" itself
    return node.hash === undefined ? n : putAll(node.hash.values, out, n);
  }
  // [MQTT-4.7.2-1] a leading wildcard does not match a topic starting with '$'
  const wildcardsAllowed = !(dollar && start === 0);
  if (node.hash !== undefined && wildcardsAllowed) n = putAll(node.hash.values, out, n);
  const end = topic.indexOf('/', start);
  const next = end < 0 ? -1 : end + 1;
  if (node.children !== undefined) {
    const child = node.children.get(end < 0 ? topic.slice(start) : topic.slice(start, end));
    if (child !== undefined) n = walk(child, topic, next, dollar, out, n);
  }
  if (node.plus !== undefined && wildcardsAllowed) n = walk(node.plus, topic, next, dollar, out, n);
  return n;
}

function* entriesOf<V>(node: Node<V>, levels: string[]): IterableIterator<[string, string, V]> {
  if (node.values !== undefined) {
    const filter = levels.join('/');
    for (const [k, v] of node.values) yield [filter, k, v];
  }
  if (node.children !== undefined) for (const [level, child] of node.children) yield* entriesOf(child, [...levels, level]);
  if (node.plus !== undefined) yield* entriesOf(node.plus, [...levels, '+']);
  if (node.hash !== undefined) yield* entriesOf(node.hash, [...levels, '#']);
}
