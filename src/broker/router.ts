import { Buffer } from 'node:buffer';
import type { QoS } from '../codec/packets.js';
import type { Delivery, Message, ShareRef } from '../session/message.js';
import type { Session, Subscription } from '../session/session.js';
import { SubscriptionTrie, type MatchMemo } from '../topic/subscription-trie.js';

export interface RouteEntry {
  readonly session: Session;
  readonly sub: Subscription;
}

/** One `$share/{group}/{filter}`: each message goes to one member. */
interface SharedGroup {
  readonly topicFilter: string;
  readonly name: string;
  readonly members: RouteEntry[];
  next: number;
}

/** Which shared groups of this node take a message (in a cluster, another node's member may take it instead). */
export type SharedSelector = (topicFilter: string, group: string) => boolean;

/**
 * Told when this node starts or stops having subscribers for a filter (a shared one as
 * `$share/{group}/{filter}`): what a cluster's route table needs, and nothing per message.
 */
export interface RouteObserver {
  added(filter: string): void;
  removed(filter: string): void;
}

/** Where routed messages go: to the live connection, or to the queue of an offline session. */
export type DeliverFn = (
  session: Session,
  message: Message,
  qos: QoS,
  retain: boolean,
  subscriptionIds: number[] | undefined,
  share: ShareRef | undefined,
) => void;

/**
 * Subscription index and fan-out. Matching costs time in proportion to the matching filters, not
 * to the number of subscriptions (the trie). Overlapping subscriptions of one session are merged
 * into a single delivery at the highest granted QoS carrying every subscription identifier.
 */
export class Router {
  private readonly direct = new SubscriptionTrie<RouteEntry>();
  private readonly shared = new SubscriptionTrie<SharedGroup>();
  private readonly matches: RouteEntry[] = [];
  private readonly groups: SharedGroup[] = [];
  private readonly targets: Session[] = [];
  private seq = 0;
  private readonly deliverTo: DeliverFn;
  /** direct subscriptions per filter, so the observer hears only of the first and the last (kept only while observed) */
  private readonly filterCounts = new Map<string, number>();
  private observer: RouteObserver | undefined;

  constructor(deliverTo: DeliverFn) {
    this.deliverTo = deliverTo;
  }

  /** Starts telling `observer` of filters gained and lost; it is told at once of every filter held now. */
  observe(observer: RouteObserver): void {
    this.filterCounts.clear();
    for (const [filter] of this.direct.entries()) this.filterCounts.set(filter, (this.filterCounts.get(filter) ?? 0) + 1);
    this.observer = observer;
    for (const filter of this.filters()) observer.added(filter);
  }

  /** while observed: every filter this node has subscribers for, shared ones as `$share/{group}/{filter}` */
  *filters(): IterableIterator<string> {
    yield* this.filterCounts.keys();
    for (const [, , group] of this.shared.entries()) yield `$share/${group.name}/${group.topicFilter}`;
  }

  get subscriptionCount(): number {
    return this.direct.size + this.sharedMembers;
  }
  private sharedMembers = 0;

  /** Returns true when an existing subscription of the session was replaced. */
  add(session: Session, sub: Subscription): boolean {
    const existed = session.subscriptions.get(sub.filter);
    if (existed !== undefined) this.unlink(session, existed);
    else session.subscriptionBytes += Buffer.byteLength(sub.filter);
    session.subscriptions.set(sub.filter, sub);
    this.link(session, sub);
    return existed !== undefined;
  }

  remove(session: Session, filter: string): boolean {
    const sub = session.subscriptions.get(filter);
    if (sub === undefined) return false;
    session.subscriptions.delete(filter);
    session.subscriptionBytes -= Buffer.byteLength(filter);
    this.unlink(session, sub);
    return true;
  }

  /** Takes all of a session's subscriptions out of the index (the session ends). */
  removeAll(session: Session): void {
    for (const sub of session.subscriptions.values()) this.unlink(session, sub);
    session.subscriptions.clear();
    session.subscriptionBytes = 0;
  }

  /**
   * Routes one message to every matching subscription; returns how many sessions it reached. The
   * arrays it collects into are the router's own, so a delivery must not route again (none does:
   * sessions queue and connections batch their writes). With `only`, direct subscriptions are
   * those of the sessions `only` accepts.
   */
  route(message: Message, memo?: MatchMemo, shared?: SharedSelector, only?: (session: Session) => boolean): number {
    const matches = this.matches;
    const targets = this.targets;
    const seq = ++this.seq;
    const found = this.direct.match(message.topic, matches, memo);
    let count = 0;
    for (let i = 0; i < found; i++) {
      const { session, sub } = matches[i] as RouteEntry;
      // the slot is reused by the next message; emptied so it keeps no ended session alive
      matches[i] = undefined as unknown as RouteEntry;
      // [MQTT-3.8.3-3] No Local: not back to the publisher's own connection
      if (sub.noLocal && session.clientId === message.senderId) continue;
      if (only !== undefined && !only(session)) continue;
      const qos = (sub.qos < message.qos ? sub.qos : message.qos) as QoS;
      if (session.routeSeq !== seq) {
        session.routeSeq = seq;
        session.routeQos = qos;
        session.routeRetainAsPublished = sub.retainAsPublished;
        session.routeSubIds = sub.subscriptionId === undefined ? undefined : [sub.subscriptionId];
        targets[count++] = session;
      } else {
        if (qos > session.routeQos) session.routeQos = qos;
        if (sub.retainAsPublished) session.routeRetainAsPublished = true;
        if (sub.subscriptionId !== undefined) (session.routeSubIds ??= []).push(sub.subscriptionId);
      }
    }
    for (let i = 0; i < count; i++) {
      const s = targets[i] as Session;
      targets[i] = undefined as unknown as Session;
      // [MQTT-3.3.1-9] (3.1.1) / [MQTT-3.3.1-12] (5.0): RETAIN is cleared unless Retain As Published
      this.deliverTo(s, message, s.routeQos, message.retain && s.routeRetainAsPublished, s.routeSubIds, undefined);
      s.routeSubIds = undefined;
    }
    if (this.shared.size > 0) count += this.routeShared(message, shared);
    return count;
  }

  private routeShared(message: Message, select: SharedSelector | undefined): number {
    const groups = this.groups;
    const found = this.shared.match(message.topic, groups);
    let count = 0;
    for (let i = 0; i < found; i++) {
      const group = groups[i] as SharedGroup;
      groups[i] = undefined as unknown as SharedGroup;
      if (select !== undefined && !select(group.topicFilter, group.name)) continue;
      const entry = pickMember(group, undefined);
      if (entry === undefined) continue;
      this.deliverShared(entry, message);
      count++;
    }
    return count;
  }

  /**
   * A member of a shared subscription went away holding a message it had not acknowledged: give
   * it to another member of the same group on this node. Returns false when no other member is here.
   */
  reassignShared(delivery: Delivery, from: Session): boolean {
    const share = delivery.share;
    if (share?.shareGroup === undefined) return false;
    const group = this.shared.get(share.topicFilter, share.shareGroup);
    if (group === undefined) return false;
    const entry = pickMember(group, from);
    if (entry === undefined) return false;
    this.deliverShared(entry, delivery.message);
    return true;
  }

  private deliverShared(entry: RouteEntry, message: Message): void {
    const qos = (entry.sub.qos < message.qos ? entry.sub.qos : message.qos) as QoS;
    const ids = entry.sub.subscriptionId === undefined ? undefined : [entry.sub.subscriptionId];
    this.deliverTo(entry.session, message, qos, message.retain && entry.sub.retainAsPublished, ids, entry.sub);
  }

  private link(session: Session, sub: Subscription): void {
    if (sub.shareGroup === undefined) {
      const isNew = this.direct.set(sub.topicFilter, session.clientId, { session, sub });
      const observer = this.observer;
      if (observer === undefined || !isNew) return;
      const n = this.filterCounts.get(sub.topicFilter) ?? 0;
      this.filterCounts.set(sub.topicFilter, n + 1);
      if (n === 0) observer.added(sub.topicFilter);
      return;
    }
    let group = this.shared.get(sub.topicFilter, sub.shareGroup);
    if (group === undefined) {
      group = { topicFilter: sub.topicFilter, name: sub.shareGroup, members: [], next: 0 };
      this.shared.set(sub.topicFilter, sub.shareGroup, group);
      this.observer?.added(sub.filter);
    }
    group.members.push({ session, sub });
    this.sharedMembers++;
  }

  private unlink(session: Session, sub: Subscription): void {
    if (sub.shareGroup === undefined) {
      if (!this.direct.delete(sub.topicFilter, session.clientId) || this.observer === undefined) return;
      const n = (this.filterCounts.get(sub.topicFilter) ?? 1) - 1;
      if (n > 0) {
        this.filterCounts.set(sub.topicFilter, n);
      } else {
        this.filterCounts.delete(sub.topicFilter);
        this.observer?.removed(sub.topicFilter);
      }
      return;
    }
    const group = this.shared.get(sub.topicFilter, sub.shareGroup);
    if (group === undefined) return;
    const i = group.members.findIndex((m) => m.session === session);
    if (i < 0) return;
    group.members.splice(i, 1);
    this.sharedMembers--;
    if (group.members.length === 0) {
      this.shared.delete(sub.topicFilter, sub.shareGroup);
      this.observer?.removed(sub.filter);
    }
  }
}

/**
 * Round robin over the group: first among connected members with a free inflight slot, then the
 * connected one with the shortest queue, then any (an offline member's session queues it).
 * `exclude` is skipped. Without the shortest queue, a member that stopped reading would take every
 * other message once the others' windows were full, into a queue that is full: dropped messages,
 * acknowledged to their publisher, that a member with room would have taken.
 */
function pickMember(group: SharedGroup, exclude: Session | undefined): RouteEntry | undefined {
  const members = group.members;
  const n = members.length;
  if (n === 0) return undefined;
  let online = -1;
  let onlineQueued = 0;
  let any = -1;
  for (let k = 0; k < n; k++) {
    const i = (group.next + k) % n;
    const m = members[i] as RouteEntry;
    if (m.session === exclude) continue;
    const sink = m.session.sink;
    if (sink !== undefined) {
      if (sink.hasCapacity) return take(group, i);
      const queued = m.session.queue.length;
      if (online < 0 || queued < onlineQueued) {
        online = i;
        onlineQueued = queued;
      }
    } else if (any < 0) {
      any = i;
    }
  }
  if (online >= 0) return take(group, online);
  if (any >= 0) return take(group, any);
  return undefined;
}

function take(group: SharedGroup, i: number): RouteEntry {
  group.next = (i + 1) % group.members.length;
  return group.members[i] as RouteEntry;
}
