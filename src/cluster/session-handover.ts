import type { BrokerCore } from '../broker/broker-core.js';
import { RC } from '../codec/reason-codes.js';
import { Session } from '../session/session.js';
import { fromWireDelivery, toWireDelivery, type SessionTransfer } from './wire.js';

/**
 * A client connected to another node: its connection here closes with 0x8E (Session taken over),
 * as on one node ([MQTT-3.1.4-3]), and its session leaves this node. With Clean Start the session
 * ends here (its will goes out now, [MQTT-3.1.3-9]); otherwise everything it holds is returned to be
 * resumed there, and a will waiting out its delay is not sent.
 */
export function handOver(core: BrokerCore, clientId: string, cleanStart: boolean): SessionTransfer | null {
  core.sessions.get(clientId)?.sink?.disconnect(RC.SessionTakenOver);
  const session = core.sessions.get(clientId);
  if (session === undefined) {
    core.wills.fire(clientId);
    return null;
  }
  if (cleanStart) {
    core.sessions.end(session);
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
  // retained messages still owed come first, then the queue: the order they would have gone in
  for (let d = session.takeWaiting(); d !== undefined; d = session.takeWaiting()) transfer.queue.push(toWireDelivery(d, now));
  core.sessions.end(session);
  return transfer;
}

/**
 * The session a client had on another node, resumed here: it waits offline in the registry for
 * the connection that asked for it, which opens it at once (and the store snapshots it then). A
 * session already connected here is newer than the one handed over, which is dropped.
 */
export function adopt(core: BrokerCore, clientId: string, transfer: SessionTransfer): boolean {
  const existing = core.sessions.get(clientId);
  if (existing?.sink !== undefined) return false;
  if (existing !== undefined) core.sessions.end(existing);
  const now = core.now();
  const session = new Session(clientId, transfer.expiryInterval, core.sessions.totals);
  session.username = transfer.username ?? undefined;
  for (const sub of transfer.subscriptions) {
    core.router.add(session, { ...sub, shareGroup: sub.shareGroup ?? undefined, subscriptionId: sub.subscriptionId ?? undefined });
  }
  for (const w of transfer.queue) session.restoreQueued(fromWireDelivery(w, now));
  for (const e of transfer.inflight) session.restoreInflight(e.packetId, { delivery: fromWireDelivery(e.delivery, now), state: e.state });
  for (const id of transfer.incomingQos2) session.incomingQos2.set(id, true);
  core.sessions.restore(session, undefined);
  return true;
}
