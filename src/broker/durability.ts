import process from 'node:process';
import type { Will } from '../codec/packets.js';
import type { ClientInfo } from '../hooks/types.js';
import type { SessionRecord, Store, StoredState } from '../persistence/store.js';
import { StoreFault } from '../protocol/ports.js';
import type { Delivery, Message } from '../session/message.js';
import { OWED_JOURNAL_SLICE, type InflightEntry, type Session, type SessionJournal, type Subscription } from '../session/session.js';
import { isSysTopic } from '../topic/sys-topic.js';

/** how often the store is told the broker is up: a crash is placed within this much of when it came */
const ALIVE_NOTE_MS = 1000;

/** A persistent session's journal: its changes, as store events under its client id. */
class StoreJournal implements SessionJournal {
  constructor(
    private readonly durability: Durability,
    private readonly clientId: string,
  ) {}

  queued(delivery: Delivery): void {
    this.durability.changed().messageQueued(this.clientId, delivery);
  }

  unqueued(delivery: Delivery): void {
    this.durability.changed().messageUnqueued(this.clientId, delivery);
  }

  inflight(packetId: number, entry: InflightEntry): void {
    this.durability.changed().inflightSet(this.clientId, { packetId, delivery: entry.delivery, state: entry.state });
  }

  inflightDone(packetId: number): void {
    this.durability.changed().inflightRemoved(this.clientId, packetId);
  }

  incomingQos2(packetId: number, pending: boolean): void {
    if (pending) this.durability.changed().incomingQos2Added(this.clientId, packetId);
    else this.durability.changed().incomingQos2Removed(this.clientId, packetId);
  }

  journalLater(session: Session): void {
    this.durability.journalOwedLater(session);
  }

  owedStored(session: Session, mark: number): Promise<void> {
    return this.durability.owedStored(session, mark);
  }
}

/** Something waiting for what a session owed at `mark` to be stored (Session.retainedStored). */
interface OwedWaiter {
  readonly mark: number;
  readonly resolve: (commit: Promise<void> | undefined) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * What the broker keeps in its store, and when: persistent sessions (expiry > 0) with everything
 * under them, retained messages (not the broker's own $SYS ones), wills waiting out a delay and,
 * on a disk, those of the connections that are up.
 */
export class Durability {
  /** written to since the last commit was asked for */
  private dirty = false;
  /** the latest commit not yet finished */
  private flushing: Promise<void> | undefined;

  /** sessions owing retained messages not journaled yet */
  private readonly owing = new Set<Session>();
  private owingScheduled = false;
  /** by session in `owing`: what waits for its owed messages to be stored */
  private readonly owedWaiters = new Map<Session, OwedWaiter[]>();

  /** set by the broker: a fault of the store met outside any client's packet */
  reportFault: (err: unknown, task: string) => void = (err) => {
    throw err;
  };

  constructor(private readonly store: Store) {
    store.watch?.((error) => this.health(error));
  }

  /** Journals a slice of what the session owes in each later turn, until all of it is there. */
  journalOwedLater(session: Session): void {
    this.owing.add(session);
    if (this.owingScheduled) return;
    this.owingScheduled = true;
    setImmediate(this.journalOwedSlice);
  }

  private readonly journalOwedSlice = (): void => {
    this.owingScheduled = false;
    let budget = OWED_JOURNAL_SLICE;
    // an even share each: a session owed a few thousand messages, whose SUBACK waits for them to be
    // stored, does not wait for another owed hundreds of thousands that came first
    const share = Math.ceil(budget / this.owing.size);
    const served: Session[] = [];
    for (const session of this.owing) {
      if (budget <= 0) break;
      served.push(session);
      try {
        budget -= session.journalOwed(Math.min(share, budget));
      } catch (err) {
        // not tried again (until it is waited for): a store that failed here would fail every turn
        this.owing.delete(session);
        this.reportFault(err, `storing the retained messages owed to ${session.clientId}`);
        const error = err instanceof Error ? err : new Error(String(err));
        this.settleOwed(session, new StoreFault(error.message, { cause: error }));
        continue;
      }
      // done with it once all it owes is journaled, or it has no journal any more (it ended)
      if (session.journal === undefined || session.retained?.unjournaled !== true) this.owing.delete(session);
      this.settleOwed(session, undefined);
    }
    // those served go behind the others, so the next turn begins with any this one did not reach
    for (const session of served) if (this.owing.delete(session)) this.owing.add(session);
    if (this.owing.size > 0 && !this.owingScheduled) {
      this.owingScheduled = true;
      setImmediate(this.journalOwedSlice);
    }
  };

  /** Journals everything still owed at once: the store is about to close. */
  flushOwed(): void {
    for (const session of this.owing) session.journalOwed(Infinity);
    for (const session of this.owing) this.settleOwed(session, undefined);
    this.owing.clear();
  }

  /**
   * Resolves once what `session` owed at `mark` is journaled and that is on disk (the commit of
   * the turn that journaled the last of it), or is owed no more (sent, forgotten, or the session
   * ended); rejects with a StoreFault when the store refused it.
   */
  owedStored(session: Session, mark: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: OwedWaiter = { mark, resolve, reject };
      const waiting = this.owedWaiters.get(session);
      if (waiting === undefined) this.owedWaiters.set(session, [waiter]);
      else waiting.push(waiter);
      // waiters hear from the slices; a session a fault took out of them is tried again
      this.journalOwedLater(session);
    });
  }

  /** Tells the waiters of `session` whose owed messages are stored now, or all of them of `fault`. */
  private settleOwed(session: Session, fault: StoreFault | undefined): void {
    const waiting = this.owedWaiters.get(session);
    if (waiting === undefined) return;
    const owed = session.journal === undefined ? undefined : session.retained;
    let commit: Promise<void> | undefined;
    let asked = false;
    let kept = 0;
    for (const w of waiting) {
      if (fault !== undefined) {
        w.reject(fault);
      } else if (owed === undefined || owed.journaledUpTo(w.mark)) {
        if (!asked) {
          commit = this.commit();
          asked = true;
        }
        w.resolve(commit);
      } else {
        waiting[kept++] = w;
      }
    }
    waiting.length = kept;
    if (kept === 0) this.owedWaiters.delete(session);
  }

  /** The store, for a write: the next commit has something to wait for. */
  changed(): Store {
    this.dirty = true;
    return this.store;
  }

  /** Acknowledgements wait for the disk only when there is one. */
  get onDisk(): boolean {
    return this.store.kind !== 'memory';
  }

  /** The session was opened or its expiry changed: start, keep or stop recording it. */
  sessionOpened(session: Session): void {
    if (session.expiryInterval === 0) {
      if (session.journal !== undefined) this.sessionEnded(session);
      return;
    }
    if (session.journal === undefined) {
      session.journal = new StoreJournal(this, session.clientId);
      this.snapshot(session);
    } else {
      this.saveRecord(session);
    }
  }

  /** A session read back from the store: recorded from now on, nothing written again. */
  adopt(session: Session): void {
    session.journal = new StoreJournal(this, session.clientId);
  }

  /** The connection is gone; the session waits for its client until `expiresAt`. */
  sessionDetached(session: Session): void {
    if (session.journal !== undefined) this.saveRecord(session, true);
  }

  sessionEnded(session: Session): void {
    if (session.journal === undefined) return;
    session.journal = undefined;
    this.changed().sessionRemoved(session.clientId);
  }

  subscribed(session: Session, subscription: Subscription): void {
    if (session.journal !== undefined) this.changed().subscriptionAdded(session.clientId, subscription);
  }

  unsubscribed(session: Session, filter: string): void {
    if (session.journal !== undefined) this.changed().subscriptionRemoved(session.clientId, filter);
  }

  retained(message: Message): void {
    if (isSysTopic(message.topic)) return;
    if (message.payload.length === 0) this.changed().retainedCleared(message.topic);
    else this.changed().retainedSet(message);
  }

  retainedDeleted(topic: string): void {
    this.changed().retainedCleared(topic);
  }

  willPending(client: ClientInfo, will: Will, fireAt: number): void {
    this.changed().willSet({ clientId: client.id, username: client.username, will, fireAt });
  }

  willDone(clientId: string): void {
    this.changed().willCleared(clientId);
  }

  /** the connection whose will is in the store as armed, by client identifier */
  private readonly armed = new Map<string, object>();

  /**
   * A connection with a will is up: its will is stored, due at no set time, so that a crash (which
   * closes the connection without DISCONNECT) does not lose it ([MQTT-3.1.2-8]); on a disk only,
   * for a memory store does not outlive the process.
   */
  willArmed(owner: object, client: ClientInfo, will: Will): void {
    if (!this.onDisk) return;
    this.armed.set(client.id, owner);
    // not through changed(): no acknowledgement waits for it (a device fleet connecting and leaving
    // would otherwise make clean QoS 1 publishes wait for the disk); it goes with this turn's batch
    this.store.willSet({ clientId: client.id, username: client.username, will, fireAt: undefined });
  }

  /** That connection closed: its will is published, waits out its delay (willPending) or was discarded. */
  willDisarmed(owner: object, clientId: string): void {
    // a connection taken over may close after its successor armed its own will
    if (this.armed.get(clientId) !== owner) return;
    this.armed.delete(clientId);
    this.store.willCleared(clientId);
  }

  private aliveTimer: NodeJS.Timeout | undefined;

  /**
   * Notes in the store every second that the broker is up, so that after a crash the sessions and
   * wills that were live count their expiry and delay from about when it happened, not from the
   * restart ([MQTT-4.1.0-2], [MQTT-3.1.3-9]). A memory store has no crash to tell of.
   */
  startAliveNotes(): void {
    if (!this.onDisk || this.store.aliveAt === undefined || this.aliveTimer !== undefined) return;
    const note = (): void => {
      try {
        // not through changed(): no acknowledgement has to wait for this row to be on disk
        this.store.aliveAt?.(Date.now());
      } catch (err) {
        this.reportFault(err, 'noting the time in the store');
      }
    };
    note();
    this.aliveTimer = setInterval(note, ALIVE_NOTE_MS);
    this.aliveTimer.unref();
  }

  /** Before the store closes. */
  stop(): void {
    if (this.aliveTimer !== undefined) clearInterval(this.aliveTimer);
    this.aliveTimer = undefined;
  }

  /** told how long each group commit took (seconds), for the metrics */
  observeCommit: ((seconds: number) => void) | undefined;

  /**
   * Told once when the store stops taking changes (the first error; the clients waiting for commits
   * are let go unacknowledged) and once when it takes them again (`error` undefined, with how long
   * it failed), so that a full disk is one line in the log and not one per message.
   */
  storeHealth: ((error: Error | undefined, failedMs: number) => void) | undefined;
  /** when commits started failing; undefined while they succeed */
  private failingSince: number | undefined;

  /**
   * Resolves when every change so far is on disk; undefined when nothing is on its way there, so a
   * QoS 1 publish that nobody stores is acknowledged at once instead of after an empty commit.
   * Without new writes the latest unfinished commit is returned: acknowledgements waiting for it
   * leave first, keeping them in the order their PUBLISHes came ([MQTT-4.6.0-2]); the store
   * finishes its commits in the order they were asked for.
   */
  commit(): Promise<void> | undefined {
    if (!this.dirty) {
      // rows the store could not write wait in memory: what depends on them is not on disk either
      return this.failingSince === undefined ? this.flushing : this.wrap(this.store.commit());
    }
    this.dirty = false;
    return this.wrap(this.store.commit());
  }

  /** the store's promise wrap() was last given, and what it made of it */
  private lastRaw: Promise<void> | undefined;
  private lastWrapped: Promise<void> | undefined;

  /**
   * The store's commit, timed and with a failure as a StoreFault. Asked again for the same batch,
   * the store gives the same promise, and so does this: the publishes of one turn share it. A turn
   * is not assumed to be one batch: writes that asked for no commit in an earlier turn, or a batch
   * sent before this turn's later writes, would then be acknowledged with a commit they are not in.
   */
  private wrap(raw: Promise<void>): Promise<void> {
    if (raw === this.lastRaw && this.lastWrapped !== undefined) return this.lastWrapped;
    const started = process.hrtime.bigint();
    const p = raw.then(
      () => {
        this.observeCommit?.(Number(process.hrtime.bigint() - started) / 1e9);
        if (this.store.watch === undefined) this.health(undefined);
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        if (this.store.watch === undefined) this.health(error);
        // what waits for it tells a store fault from other failures by this
        throw new StoreFault(error.message, { cause: error });
      },
    );
    const finished = (): void => {
      if (this.flushing === p) this.flushing = undefined;
      if (this.lastWrapped === p) {
        this.lastRaw = undefined;
        this.lastWrapped = undefined;
      }
    };
    p.then(finished, finished);
    this.lastRaw = raw;
    this.lastWrapped = p;
    this.flushing = p;
    return p;
  }

  load(): Promise<StoredState> {
    return this.store.load();
  }

  /** A commit failed (error) or succeeded: storeHealth hears of the first failure and of the end of them. */
  private health(error: Error | undefined): void {
    if (error !== undefined) {
      if (this.failingSince !== undefined) return;
      this.failingSince = Date.now();
      this.storeHealth?.(error, 0);
    } else if (this.failingSince !== undefined) {
      const failedMs = Date.now() - this.failingSince;
      this.failingSince = undefined;
      this.storeHealth?.(undefined, failedMs);
    }
  }

  /** Writes the whole session: it becomes persistent with state it already has. */
  private snapshot(session: Session): void {
    this.saveRecord(session);
    const journal = session.journal as SessionJournal;
    for (const sub of session.subscriptions.values()) this.changed().subscriptionAdded(session.clientId, sub);
    // retained messages owed go out before the queue, so they come back first
    session.retained?.forgetJournal();
    session.retained?.journalAhead(journal, Infinity);
    for (const d of session.queue) if (d.qos > 0) journal.queued(d);
    for (const [packetId, entry] of session.inflight) journal.inflight(packetId, entry);
    for (const packetId of session.incomingQos2.keys()) journal.incomingQos2(packetId, true);
  }

  private saveRecord(session: Session, offline = false): void {
    const record: SessionRecord = { clientId: session.clientId, expiryInterval: session.expiryInterval, expiresAt: session.expiresAt };
    if (session.username !== undefined) record.username = session.username;
    if (offline) record.offline = true;
    this.changed().sessionSaved(record);
  }
}
