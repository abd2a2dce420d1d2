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
  readonly members: RouteEntry[];
  next: number;
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

  constructor(deliverTo: DeliverFn) {
    this.deliverTo = deliverTo;
  }

  get subscriptionCount(): number {
    return this.direct.size + this.sharedMembers;
  }
  private sharedMembers = 0;

  /** Returns true when an existing subscription of the session was replaced. */
  add(session: Session, sub: Subscription): boolean {
    const existed = session.subscriptions.get(sub.filter);
    if (existed !== undefined) this.unlink(session, existed);
    session.subscriptions.set(sub.filter, sub);
    this.link(session, sub);
    return existed !== undefined;
  }

  remove(session: Session, filter: string): boolean {
    const sub = session.subscriptions.get(filter);
    if (sub === undefined) return false;
    session.subscriptions.delete(filter);
    this.unlink(session, sub);
    return true;
  }

  /** Takes all of a session's subscriptions out of the index (the session ends). */
  removeAll(session: Session): void {
    for (const sub of session.subscriptions.values()) this.unlink(session, sub);
    session.subscriptions.clear();
  }

  /**
   * Routes one message to every matching subscription; returns how many sessions it reached. The
   * arrays it collects into are the router's own, so a delivery must not route again (none does:
   * sessions queue and connections batch their writes).
   */
  route(message: Message, memo?: MatchMemo): number {
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
    if (this.shared.size > 0) count += this.routeShared(message);
    return count;
  }

  private routeShared(message: Message): number {
    const groups = this.groups;
    const found = this.shared.match(message.topic, groups);
    let count = 0;
    for (let i = 0; i < found; i++) {
      const group = groups[i] as SharedGroup;
      groups[i] = undefined as unknown as SharedGroup;
      const entry = pickMember(group, undefined);
      if (entry === undefined) continue;
      this.deliverShared(entry, message);
      count++;
    }
    return count;
  }

  /**
   * A member of a shared subscription went away holding a message it had not acknowledged: give
   * it to another member of the same group. Returns false when no other member exists.
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
      this.direct.set(sub.topicFilter, session.clientId, { session, sub });
      return;
    }
    let group = this.shared.get(sub.topicFilter, sub.shareGroup);
    if (group === undefined) {
      group = { members: [], next: 0 };
      this.shared.set(sub.topicFilter, sub.shareGroup, group);
    }
    group.members.push({ session, sub });
    this.sharedMembers++;
  }

  private unlink(session: Session, sub: Subscription): void {
    if (sub.shareGroup === undefined) {
      this.direct.delete(sub.topicFilter, session.clientId);
      return;
    }
    const group = this.shared.get(sub.topicFilter, sub.shareGroup);
    if (group === undefined) return;
    const i = group.members.findIndex((m) => m.session === session);
    if (i < 0) return;
    group.members.splice(i, 1);
    this.sharedMembers--;
    if (group.members.length === 0) this.shared.delete(sub.topicFilter, sub.shareGroup);
  }
}

/**
 * Round robin over the group: first among connected members with a free inflight slot, then
 * among connected ones, then any (an offline member's session queues it). `exclude` is skipped.
 */
function pickMember(group: SharedGroup, exclude: Session | undefined): RouteEntry | undefined {
  const members = group.members;
  const n = members.length;
  if (n === 0) return undefined;
  let online = -1;
  let any = -1;
  for (let k = 0; k < n; k++) {
    const i = (group.next + k) % n;
    const m = members[i] as RouteEntry;
    if (m.session === exclude) continue;
    const sink = m.session.sink;
    if (sink !== undefined) {
      if (sink.hasCapacity) return take(group, i);
      if (online < 0) online = i;
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
