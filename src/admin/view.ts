import { Buffer } from 'node:buffer';
import { RC } from '../codec/reason-codes.js';
import type { BrokerCore } from '../broker/broker-core.js';
import type { SessionOwner } from '../protocol/ports.js';
import type { Message } from '../session/message.js';
import type { Session } from '../session/session.js';
import { pageOf } from './page-of.js';

/** One page of a listing sorted by key, and how many rows the whole listing has. */
export interface Page<T> {
  total: number;
  offset: number;
  limit: number;
  items: T[];
}

export interface ClientRow {
  id: string;
  username: string | null;
  address: string;
  protocolVersion: number;
  connectedAt: string;
  keepAlive: number;
  inflight: number;
  queued: number;
  subscriptions: number;
}

export interface SessionRow {
  clientId: string;
  connected: boolean;
  expiryInterval: number;
  expiresAt: string | null;
  subscriptions: number;
  inflight: number;
  queued: number;
}

export interface SubscriptionRow {
  filter: string;
  qos: number;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: number;
  subscriptionId: number | null;
}

export interface RetainedRow {
  topic: string;
  qos: number;
  payloadBytes: number;
  /** the payload as UTF-8 when it is valid UTF-8, else base64 with `encoding: 'base64'` */
  payload?: string;
  encoding?: 'utf8' | 'base64';
}

/**
 * What the admin API may read and do: a narrow query view over the broker core, so the HTTP
 * layer never reaches into sessions or the router itself.
 */
export class AdminView {
  constructor(private readonly core: BrokerCore) {}

  /** Connected clients by id; `query` keeps those whose id or user name contains it. */
  clients(query: string | null, offset: number, limit: number): Page<ClientRow> {
    const ids: string[] = [];
    for (const s of this.core.sessions.values()) {
      const owner = s.sink as SessionOwner | undefined;
      if (owner === undefined) continue;
      if (query === null || s.clientId.includes(query) || (owner.client.username ?? '').includes(query)) ids.push(s.clientId);
    }
    return { total: ids.length, offset, limit, items: pageOf(ids, offset, limit).map((id) => this.client(id) as ClientRow) };
  }

  client(clientId: string): ClientRow | undefined {
    const s = this.core.sessions.get(clientId);
    const owner = s?.sink as SessionOwner | undefined;
    if (s === undefined || owner === undefined) return undefined;
    const c = owner.client;
    return {
      id: c.id,
      username: c.username ?? null,
      address: c.remoteAddress,
      protocolVersion: c.protocolVersion,
      connectedAt: new Date(c.connectedAt).toISOString(),
      keepAlive: c.keepAlive,
      inflight: s.inflight.size,
      queued: s.waiting,
      subscriptions: s.subscriptions.size,
    };
  }

  /** Closes a client's connection (5.0: DISCONNECT 0x98 Administrative action). */
  disconnect(clientId: string): boolean {
    const owner = this.core.sessions.get(clientId)?.sink;
    if (owner === undefined) return false;
    owner.disconnect(RC.AdministrativeAction);
    return true;
  }

  /** Whether a session here is this node's: not one handed to another node that only lingers here. */
  private isOurs(clientId: string): boolean {
    return this.core.cluster?.leaving(clientId) !== true;
  }

  private session(clientId: string): Session | undefined {
    return this.isOurs(clientId) ? this.core.sessions.get(clientId) : undefined;
  }

  subscriptions(clientId: string): SubscriptionRow[] | undefined {
    const s = this.session(clientId);
    if (s === undefined) return undefined;
    return [...s.subscriptions.values()].map((sub) => ({
      filter: sub.filter,
      qos: sub.qos,
      noLocal: sub.noLocal,
      retainAsPublished: sub.retainAsPublished,
      retainHandling: sub.retainHandling,
      subscriptionId: sub.subscriptionId ?? null,
    }));
  }

  /** Every session, connected or not, by client id. */
  sessions(offset: number, limit: number): Page<SessionRow> {
    const ids: string[] = [];
    for (const s of this.core.sessions.values()) if (this.isOurs(s.clientId)) ids.push(s.clientId);
    const items = pageOf(ids, offset, limit).map((id) => sessionRow(this.core.sessions.get(id) as Session));
    return { total: ids.length, offset, limit, items };
  }

  /** Ends a session for good; a connected client is disconnected first. */
  deleteSession(clientId: string): boolean {
    const s = this.session(clientId);
    if (s === undefined) return false;
    s.expiryInterval = 0;
    if (s.sink !== undefined) s.sink.disconnect(RC.AdministrativeAction);
    // its shared-subscription messages go to the group's other members, as at its expiry
    else this.core.sessions.end(s, true);
    return true;
  }

  /** Retained messages by topic, without their payloads. */
  retained(offset: number, limit: number): Page<RetainedRow> {
    const topics: string[] = [];
    for (const m of this.core.retained.values()) topics.push(m.topic);
    const items = pageOf(topics, offset, limit).map((topic) => {
      const m = this.core.retained.get(topic) as Message;
      return { topic: m.topic, qos: m.qos, payloadBytes: m.payload.length };
    });
    return { total: topics.length, offset, limit, items };
  }

  retainedMessage(topic: string): RetainedRow | undefined {
    const m = this.core.retained.get(topic);
    if (m === undefined) return undefined;
    const text = Buffer.from(m.payload).toString('utf8');
    const utf8 = Buffer.from(text, 'utf8').equals(m.payload);
    return {
      topic: m.topic,
      qos: m.qos,
      payloadBytes: m.payload.length,
      payload: utf8 ? text : m.payload.toString('base64'),
      encoding: utf8 ? 'utf8' : 'base64',
    };
  }

  deleteRetained(topic: string): boolean {
    return this.core.deleteRetained(topic);
  }

  /** A fault of the admin API's own (answered 500), logged with the broker's other faults. */
  reportFault(err: unknown, task: string): void {
    try {
      this.core.reportFault(err, task);
    } catch {
      // a core outside a broker throws its faults; the request is answered already, so nothing more to do
    }
  }
}

function sessionRow(s: Session): SessionRow {
  return {
    clientId: s.clientId,
    connected: s.sink !== undefined,
    expiryInterval: s.expiryInterval,
    expiresAt: s.expiresAt === undefined ? null : new Date(s.expiresAt).toISOString(),
    subscriptions: s.subscriptions.size,
    inflight: s.inflight.size,
    queued: s.waiting,
  };
}
