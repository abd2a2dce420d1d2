import type { ClusterHost } from '../broker/cluster-port.js';
import { RC } from '../codec/reason-codes.js';
import type { Delivery } from '../session/message.js';
import { Session, type Subscription } from '../session/session.js';
import { fromWireDelivery, toWireDelivery, type SessionEntry, type SessionTransfer, type WireDelivery } from './wire.js';

/**
 * A client connected to another node: its connection here closes with 0x8E (Session taken over),
 * as on one node ([MQTT-3.1.4-3]), and its session leaves this node. With Clean Start the session
 * ends here (its will goes out now, [MQTT-3.1.3-9]); otherwise everything it holds is returned to be
 * resumed there, and a will waiting out its delay is not sent.
 *
 * The session itself stays here, offline and subscribed, until the other node has told the
 * cluster of its subscriptions (`release`): messages routed here meanwhile wait in its queue and
 * follow it (`tail`) instead of reaching no one.
 */
export function handOver(core: ClusterHost, clientId: string, cleanStart: boolean): { transfer: SessionTransfer; session: Session } | null {
  core.sessions.get(clientId)?.sink?.disconnect(RC.SessionTakenOver);
  const session = core.sessions.get(clientId);
  if (session === undefined) {
    core.wills.fire(clientId);
    return null;
  }
  if (cleanStart) {
    // discarded, not moved: its shared-subscription messages go to the group's other members here
    core.sessions.end(session, true);
    return null;
  }
  core.wills.cancel(clientId);
  const now = core.now();
  const transfer: SessionTransfer = {
    expiryInterval: session.expiryInterval,
    username: session.username ?? null,
    subscriptions: [...session.subscriptions.values()].map((s) => ({ ...s })),
    queue: [],
    inflight: [],
    incomingQos2: [...session.incomingQos2.keys()],
  };
  for (const [packetId, entry] of session.inflight) {
    transfer.inflight.push({ packetId, state: entry.state, delivery: toWireDelivery(entry.delivery, now) });
  }
  transfer.queue = takeQueue(session, now);
  return { transfer, session };
}

/**
 * What reached a session handed over since then (those `keep` accepts), taken out of it; the
 * session ends when `end`.
 */
export function takeTail(core: ClusterHost, session: Session, end: boolean, keep?: (d: Delivery) => boolean, origin?: (d: Delivery) => [string, number] | undefined): WireDelivery[] {
  // the client may have come back here meanwhile, with a session of its own
  if (core.sessions.get(session.clientId) !== session || session.sink !== undefined) return [];
  const queue = takeQueue(session, core.now(), keep, origin);
  if (end) core.sessions.end(session);
  return queue;
}

/**
 * The old node's first tail, for a session adopted here whose client has not been answered yet:
 * what reached the old node went there before anything reached the session here, so it goes in
 * behind the `brought` deliveries the session came with and ahead of what came here since.
 */
export function insertTail(core: ClusterHost, clientId: string, brought: number, queue: WireDelivery[]): void {
  const session = core.sessions.get(clientId);
  if (session === undefined || session.sink !== undefined) {
    deliverTail(core, clientId, queue);
    return;
  }
  const waiting: Delivery[] = [];
  for (let d = session.takeWaiting(); d !== undefined; d = session.takeWaiting()) waiting.push(d);
  const now = core.now();
  for (let i = 0; i < waiting.length && i < brought; i++) session.restoreQueued(waiting[i] as Delivery);
  for (const w of queue) core.deliver(session, fromWireDelivery(w, now));
  for (let i = brought; i < waiting.length; i++) session.restoreQueued(waiting[i] as Delivery);
}

/** What reached a session after its handover, delivered to it here as if routed here; returns how many (0 without a session). */
export function deliverTail(core: ClusterHost, clientId: string, queue: WireDelivery[]): number {
  const session = core.sessions.get(clientId);
  if (session === undefined) return 0;
  const now = core.now();
  for (const w of queue) core.deliver(session, fromWireDelivery(w, now));
  return queue.length;
}

/**
 * A session brought back from the store whose client went to another node meanwhile: it ends
 * here, and what it held (messages sent and not acknowledged, then those queued) is returned to
 * be delivered where the client is.
 */
export function giveUp(core: ClusterHost, session: Session): WireDelivery[] {
  const now = core.now();
  const held: WireDelivery[] = [];
  for (const entry of session.inflight.values()) if (entry.state === 'publish') held.push(toWireDelivery(entry.delivery, now));
  held.push(...takeQueue(session, now));
  core.sessions.end(session);
  return held;
}

function takeQueue(session: Session, now: number, keep?: (d: Delivery) => boolean, origin?: (d: Delivery) => [string, number] | undefined): WireDelivery[] {
  const queue: WireDelivery[] = [];
  // retained messages still owed come first, then the queue: the order they would have gone in
  for (let d = session.takeWaiting(); d !== undefined; d = session.takeWaiting()) {
    if (keep !== undefined && !keep(d)) continue;
    const w = toWireDelivery(d, now);
    const o = origin?.(d);
    if (o !== undefined) w.o = o;
    queue.push(w);
  }
  return queue;
}

/**
 * The session a client had on another node, resumed here: it waits offline in the registry for
 * the connection that asked for it, which opens it at once (and the store snapshots it then). A
 * session already connected here is newer than the one handed over, which is dropped.
 */
export function adopt(core: ClusterHost, clientId: string, transfer: SessionTransfer): boolean {
  const existing = core.sessions.get(clientId);
  if (existing?.sink !== undefined) return false;
  if (existing !== undefined) core.sessions.end(existing);
  const now = core.now();
  const session = subscribedSession(core, clientId, transfer.expiryInterval, transfer.username ?? undefined, transfer.subscriptions);
  for (const w of transfer.queue) session.restoreQueued(fromWireDelivery(w, now));
  for (const e of transfer.inflight) session.restoreInflight(e.packetId, { delivery: fromWireDelivery(e.delivery, now), state: e.state });
  for (const id of transfer.incomingQos2) session.incomingQos2.set(id, true);
  core.sessions.restore(session, undefined);
  return true;
}

/**
 * A session whose node is gone, taken up here to wait offline for its client (the messages
 * published for it from now on queue here): its subscriptions, and its expiry, which runs from
 * `wentAt` (when its node went) unless it was offline already then. Says 'expired' when it ended
 * meanwhile, and 'present' when a session of that client id is here already (it is left as is).
 */
export function adoptOffline(core: ClusterHost, clientId: string, entry: SessionEntry, wentAt: number): 'adopted' | 'expired' | 'present' {
  if (core.sessions.get(clientId) !== undefined) return 'present';
  const session = subscribedSession(core, clientId, entry.expiryInterval, entry.username, entry.subscriptions);
  const ends = endsAt(entry, wentAt);
  if (!core.sessions.restore(session, ends === Infinity ? undefined : ends)) return 'expired';
  core.keep(session);
  return 'adopted';
}

/**
 * When a session kept in Redis ends: at its recorded instant if it was offline, else its expiry
 * interval after `wentAt` (when its node went); Infinity for one that never expires.
 */
export function endsAt(entry: SessionEntry, wentAt: number): number {
  if (entry.expiresAt !== null) return entry.expiresAt;
  return entry.expiryInterval === NEVER ? Infinity : wentAt + entry.expiryInterval * 1000;
}

const NEVER = 0xffffffff;

/** A session with the subscriptions it had on another node (as they travel: null for what a subscription has not), routed here. */
function subscribedSession(core: ClusterHost, clientId: string, expiryInterval: number, username: string | undefined, subscriptions: Subscription[]): Session {
  const session = new Session(clientId, expiryInterval, core.sessions.totals);
  session.username = username;
  for (const sub of subscriptions) {
    core.router.add(session, { ...sub, shareGroup: sub.shareGroup ?? undefined, subscriptionId: sub.subscriptionId ?? undefined });
  }
  return session;
}

/**
 * A session handed over after this node gave up waiting for it: the client has a new session
 * here by now (it was told it had none), which takes the messages the old one held and had not
 * got through to the client: queued ones, and those in flight without an acknowledgement. Its
 * subscriptions are not brought back (the client subscribes again). Returns how many there were.
 */
export function resumeLate(core: ClusterHost, clientId: string, transfer: SessionTransfer): number {
  const unacknowledged = transfer.inflight.filter((e) => e.state === 'publish').map((e) => e.delivery);
  return deliverTail(core, clientId, [...unacknowledged, ...transfer.queue]);
}
