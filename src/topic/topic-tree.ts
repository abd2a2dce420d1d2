interface Node<V> {
  children: Map<string, Node<V>> | undefined;
  value: V | undefined;
  has: boolean;
}

function newNode<V>(): Node<V> {
  return { children: undefined, value: undefined, has: false };
}

/**
 * Values stored by topic name (retained messages), found by a wildcard filter: the mirror of the
 * subscription trie. A filter visits only the branches it can match.
 */
export class TopicTree<V> {
  private readonly root: Node<V> = newNode();
  private count = 0;

  get size(): number {
    return this.count;
  }

  set(topic: string, value: V): void {
    let node = this.root;
    for (const level of topic.split('/')) {
      const children = (node.children ??= new Map());
      let child = children.get(level);
      if (child === undefined) {
        child = newNode();
        children.set(level, child);
      }
      node = child;
    }
    if (!node.has) this.count++;
    node.has = true;
    node.value = value;
  }

  get(topic: string): V | undefined {
    let node: Node<V> | undefined = this.root;
    for (const level of topic.split('/')) {
      node = node.children?.get(level);
      if (node === undefined) return undefined;
    }
    return node.value;
  }

  delete(topic: string): boolean {
    const path: Array<[Node<V>, string]> = [];
    let node: Node<V> | undefined = this.root;
    for (const level of topic.split('/')) {
      path.push([node, level]);
      node = node.children?.get(level);
      if (node === undefined) return false;
    }
    if (!node.has) return false;
    node.has = false;
    node.value = undefined;
    this.count--;
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [Node<V>, string];
      const child = parent.children?.get(level) as Node<V>;
      if (child.has || child.children !== undefined) break;
      parent.children?.delete(level);
      if (parent.children?.size === 0) parent.children = undefined;
    }
    return true;
  }

  /** Appends every stored value whose topic matches the filter (section 4.7 rules). */
  matchFilter(filter: string, out: V[]): void {
    collect(this.root, filter.split('/'), 0, out);
  }

  *values(): IterableIterator<V> {
    yield* valuesOf(this.root);
  }
}

function collect<V>(node: Node<V>, levels: string[], i: number, out: V[]): void {
  if (i === levels.length) {
    if (node.has) out.push(node.value as V);
    return;
  }
  const level = levels[i] as string;
  const children = node.children;
  if (level === '#') {
    // the parent level itself, then everything below
    if (node.has && i > 0) out.push(node.value as V);
    if (children !== undefined) {
      for (const [name, child] of children) {
        // [MQTT-4.7.2-1] a leading wildcard skips topics starting with '$'
        if (i === 0 && name.charCodeAt(0) === 0x24) continue;
        pushSubtree(child, out);
      }
    }
    return;
  }
  if (children === undefined) return;
  if (level === '+') {
    for (const [name, child] of children) {
      if (i === 0 && name.charCodeAt(0) === 0x24) continue;
      collect(child, levels, i + 1, out);
    }
    return;
  }
  const child = children.get(level);
  if (child !== undefined) collect(child, levels, i + 1, out);
}

function pushSubtree<V>(node: Node<V>, out: V[]): void {
  if (node.has) out.push(node.value as V);
  if (node.children !== undefined) for (const child of node.children.values()) pushSubtree(child, out);
}

function* valuesOf<V>(node: Node<V>): IterableIterator<V> {
  if (node.has) yield node.value as V;
  if (node.children !== undefined) for (const child of node.children.values()) yield* valuesOf(child);
}
