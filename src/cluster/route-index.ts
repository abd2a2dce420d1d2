import { parseSharedFilter } from '../topic/shared.js';
import { SubscriptionTrie } from '../topic/subscription-trie.js';

/** The nodes with members in one shared group, taking its messages in turn. */
interface GroupNodes {
  /** `$share/{group}/{filter}` */
  readonly key: string;
  readonly nodes: string[];
  next: number;
}

/** Where one message goes in the cluster: other nodes (with the shared groups each delivers to), and this node's groups. */
export interface RoutePlan {
  /** node id -> the shared groups it takes the message for (empty: its direct subscribers only) */
  readonly nodes: Map<string, string[]>;
  /** shared groups (`$share/{group}/{filter}`) whose turn falls to this node */
  readonly localGroups: Set<string>;
}

/**
 * The cluster's route table as this node sees it: which nodes have subscribers for which
 * filters (EMQX's route table). A message goes only to nodes with a matching subscriber, and each
 * shared group's messages go round its nodes, one node per message, so that a group spread over
 * the cluster still gets each message once.
 */
export class RouteIndex {
  readonly self: string;
  private readonly direct = new SubscriptionTrie<string>();
  private readonly shared = new SubscriptionTrie<GroupNodes>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly found: string[] = [];
  private readonly groups: GroupNodes[] = [];

  constructor(self: string) {
    this.self = self;
  }

  /** nodes known to have routes */
  get nodes(): string[] {
    return [...this.byNode.keys()];
  }

  /** routes (node, filter) of the other nodes */
  get remoteRoutes(): number {
    let n = 0;
    for (const [node, filters] of this.byNode) if (node !== this.self) n += filters.size;
    return n;
  }

  filtersOf(node: string): ReadonlySet<string> {
    return this.byNode.get(node) ?? new Set();
  }

  add(node: string, filter: string): void {
    let filters = this.byNode.get(node);
    if (filters === undefined) {
      filters = new Set();
      this.byNode.set(node, filters);
    }
    if (filters.has(filter)) return;
    filters.add(filter);
    const share = parseSharedFilter(filter);
    if (share === null || typeof share !== 'object') {
      this.direct.set(filter, node, node);
      return;
    }
    let group = this.shared.get(share.filter, share.group);
    if (group === undefined) {
      group = { key: filter, nodes: [], next: 0 };
      this.shared.set(share.filter, share.group, group);
    }
    group.nodes.push(node);
  }

  remove(node: string, filter: string): void {
    const filters = this.byNode.get(node);
    if (filters === undefined || !filters.delete(filter)) return;
    if (filters.size === 0) this.byNode.delete(node);
    const share = parseSharedFilter(filter);
    if (share === null || typeof share !== 'object') {
      this.direct.delete(filter, node);
      return;
    }
    const group = this.shared.get(share.filter, share.group);
    if (group === undefined) return;
    const i = group.nodes.indexOf(node);
    if (i >= 0) group.nodes.splice(i, 1);
    if (group.nodes.length === 0) this.shared.delete(share.filter, share.group);
  }

  /** A node's whole route set, as read from Redis: what it no longer has goes, what it has comes. */
  replaceNode(node: string, filters: Iterable<string>): void {
    const next = new Set(filters);
    for (const f of [...this.filtersOf(node)]) if (!next.has(f)) this.remove(node, f);
    for (const f of next) this.add(node, f);
  }

  removeNode(node: string): void {
    for (const f of [...this.filtersOf(node)]) this.remove(node, f);
  }

  /** Drops the node's shared-subscription routes (`$share/...`), keeping its direct ones. */
  removeShared(node: string): void {
    for (const f of [...this.filtersOf(node)]) if (f.startsWith('$share/')) this.remove(node, f);
  }

  /** Fills `plan` (emptied first) for a message on `topic`; with `only`, for those shared groups alone (`$share/{group}/{filter}`), no direct subscribers. */
  plan(topic: string, plan: RoutePlan, only?: ReadonlySet<string>): void {
    plan.nodes.clear();
    plan.localGroups.clear();
    if (only === undefined) this.planDirect(topic, plan);
    if (this.shared.size === 0) return;
    const groups = this.groups;
    const g = this.shared.match(topic, groups);
    for (let i = 0; i < g; i++) {
      const group = groups[i] as GroupNodes;
      if (only !== undefined && !only.has(group.key)) continue;
      const node = group.nodes[group.next % group.nodes.length] as string;
      group.next = (group.next + 1) % group.nodes.length;
      if (node === this.self) {
        plan.localGroups.add(group.key);
        continue;
      }
      let list = plan.nodes.get(node);
      if (list === undefined) {
        list = [];
        plan.nodes.set(node, list);
      }
      list.push(group.key);
    }
    groups.length = 0;
  }

  private planDirect(topic: string, plan: RoutePlan): void {
    const found = this.found;
    const n = this.direct.match(topic, found);
    for (let i = 0; i < n; i++) {
      const node = found[i] as string;
      if (node !== this.self && !plan.nodes.has(node)) plan.nodes.set(node, []);
    }
    found.length = 0;
  }
}
