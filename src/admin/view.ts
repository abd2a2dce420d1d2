import { Buffer } from 'node:buffer';
import { RC } from '../codec/reason-codes.js';
import type { BrokerCore } from '../broker/broker-core.js';
import type { SessionOwner } from '../protocol/ports.js';

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

  clients(): ClientRow[] {
    const rows: ClientRow[] = [];
    for (const s of this.core.sessions.values()) {
      const owner = s.sink as SessionOwner | undefined;
      if (owner === undefined) continue;
      const c = owner.client;
      rows.push({
        id: c.id,
        username: c.username ?? null,
        address: c.remoteAddress,
        protocolVersion: c.protocolVersion,
        connectedAt: new Date(c.connectedAt).toISOString(),
        keepAlive: c.keepAlive,
        inflight: s.inflight.size,
        queued: s.queue.length,
        subscriptions: s.subscriptions.size,
      });
    }
    return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Closes a client's connection (5.0: DISCONNECT 0x98 Administrative action). */
  disconnect(clientId: string): boolean {
    const owner = this.core.sessions.get(clientId)?.sink;
    if (owner === undefined) return false;
    owner.disconnect(RC.AdministrativeAction);
    return true;
  }

  subscriptions(clientId: string): SubscriptionRow[] | undefined {
    const s = this.core.sessions.get(clientId);
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

  sessions(): SessionRow[] {
    const rows: SessionRow[] = [];
    for (const s of this.core.sessions.values()) {
      rows.push({
        clientId: s.clientId,
        connected: s.sink !== undefined,
        expiryInterval: s.expiryInterval,
        expiresAt: s.expiresAt === undefined ? null : new Date(s.expiresAt).toISOString(),
        subscriptions: s.subscriptions.size,
        inflight: s.inflight.size,
        queued: s.queue.length,
      });
    }
    return rows.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
  }

  /** Ends a session for good; a connected client is disconnected first. */
  deleteSession(clientId: string): boolean {
    const s = this.core.sessions.get(clientId);
    if (s === undefined) return false;
    s.expiryInterval = 0;
    if (s.sink !== undefined) s.sink.disconnect(RC.AdministrativeAction);
    else this.core.sessions.end(s);
    return true;
  }

  retained(): RetainedRow[] {
    const rows: RetainedRow[] = [];
    for (const m of this.core.retained.values()) rows.push({ topic: m.topic, qos: m.qos, payloadBytes: m.payload.length });
    return rows.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
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
}
