import { RC } from '../codec/reason-codes.js';
import type { OpenedSession, SessionOwner } from '../protocol/ports.js';
import { Session, type SessionTotals } from '../session/session.js';
import { ExpirySchedule } from './expiry-schedule.js';

const NEVER = 0xffffffff;

/**
 * Sessions by client identifier: takeover, clean start, resumption, and expiry of sessions whose
 * client is gone. What a session ending means for the rest of the broker (subscriptions, wills)
 * is the `onEnd` callback's business.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  private readonly expiries = new ExpirySchedule((session) => {
    try {
      if (session.sink === undefined && this.sessions.get(session.clientId) === session) this.end(session, true);
    } catch (err) {
      // the other sessions due in this turn still end, and the schedule goes on
      this.onFault(err, `the expiry of session ${session.clientId}`);
    }
  });
  private readonly onEnd: (session: Session, handOver: boolean) => void;
  private readonly onFault: (err: unknown, task: string) => void;
  /** what every session here holds, kept by the sessions themselves */
  readonly totals: SessionTotals = { queued: 0, queuedBytes: 0, inflight: 0 };
  private attached = 0;

  constructor(onEnd: (session: Session, handOver: boolean) => void, onFault: (err: unknown, task: string) => void) {
    this.onEnd = onEnd;
    this.onFault = onFault;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** sessions here with a connection */
  get online(): number {
    return this.attached;
  }

  get(clientId: string): Session | undefined {
    return this.sessions.get(clientId);
  }

  values(): IterableIterator<Session> {
    return this.sessions.values();
  }

  /**
   * [MQTT-3.1.4-2] / [MQTT-3.1.4-3]: a live connection with the same id is closed first (5.0 gets
   * DISCONNECT 0x8E). Clean start discards the old session ([MQTT-3.1.2-4]); otherwise it resumes.
   */
  open(owner: SessionOwner, cleanStart: boolean, expiryInterval: number): OpenedSession {
    const clientId = owner.client.id;
    const live = this.sessions.get(clientId);
    if (live?.sink !== undefined && live.sink !== owner) live.sink.disconnect(RC.SessionTakenOver);

    let session = this.sessions.get(clientId);
    if (session !== undefined && cleanStart) {
      this.end(session, true);
      session = undefined;
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(clientId, expiryInterval, this.totals);
      this.sessions.set(clientId, session);
    } else {
      this.cancelExpiry(session);
      session.expiryInterval = expiryInterval;
    }
    // a connection taken over has closed by now (synchronously), so the session has none
    if (session.sink === undefined) this.attached++;
    session.sink = owner;
    return { session, present };
  }

  /** The session's connection is gone; the session stays until detach() says for how long. */
  goOffline(session: Session): void {
    if (session.sink === undefined) return;
    session.sink = undefined;
    if (this.sessions.get(session.clientId) === session) this.attached--;
  }

  /** The session's connection is gone: end it now (expiry 0) or when its interval passes. */
  detach(session: Session): void {
    this.goOffline(session);
    const interval = session.expiryInterval;
    if (interval === 0) {
      // what it held for shared groups was handed over as its connection closed (closeSession)
      this.end(session, false);
      return;
    }
    if (interval === NEVER) return;
    session.expiresAt = Date.now() + interval * 1000;
    this.expiries.add(session);
  }

  /**
   * A session read back from the store: offline, due to end at `expiresAt`; false if it ended
   * already. One that was online when the broker stopped (no `expiresAt`) lost its connection at
   * `lostAt`, when the broker was last known to be up (now when that is not known).
   */
  restore(session: Session, expiresAt: number | undefined, lostAt = Date.now()): boolean {
    this.sessions.set(session.clientId, session);
    if (session.expiryInterval === NEVER) return true;
    session.expiresAt = expiresAt ?? lostAt + session.expiryInterval * 1000;
    if (session.expiresAt <= Date.now()) {
      this.end(session, true);
      return false;
    }
    this.expiries.add(session);
    return true;
  }

  /**
   * Removes a session from this node. `handOver` when it ends for good here (it expired, or a
   * clean start discarded it): what it holds for shared groups goes to their other members. Not
   * when it moves to another node of a cluster (which has what it holds), nor by default.
   */
  end(session: Session, handOver = false): void {
    this.cancelExpiry(session);
    if (this.sessions.get(session.clientId) === session) {
      this.sessions.delete(session.clientId);
      // its connection, if it still has one, closes later and finds the session gone
      if (session.sink !== undefined) this.attached--;
    }
    this.onEnd(session, handOver);
  }

  clear(): void {
    this.expiries.clear();
  }

  private cancelExpiry(session: Session): void {
    this.expiries.remove(session);
    session.expiresAt = undefined;
  }
}
