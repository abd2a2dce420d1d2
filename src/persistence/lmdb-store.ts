import { Buffer } from 'node:buffer';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { lockDataDir, type DataDirLock } from './dir-lock.js';
import { exitOnFatal, kib, LmdbWrites, reserveFor } from './lmdb-writes.js';
import type { Delivery, Message, ShareRef } from '../session/message.js';
import type { Subscription } from '../session/session.js';
import { STORE_FORMAT, StoreError, type InflightRecord, type SessionRecord, type Store, type StoredSession, type StoredState, type WillRecord } from './store.js';

/** A stored message row: the message without its encoding caches. */
interface MessageRow {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  properties?: Message['properties'];
  expiresAt?: number;
  senderId?: string;
}

/** A queue or inflight row: the delivery decisions plus the id of the message row. */
interface DeliveryRow {
  m: number | undefined;
  qos: 0 | 1 | 2;
  retain: boolean;
  ids?: number[];
  share?: ShareRef;
  state?: 'publish' | 'pubrel';
  /**
   * Inflight rows: when the message went in flight, in the session's send order (rows are keyed by
   * packet id, which after a restart or a wraparound is not that order). Rows written before this
   * field existed have none: they were sent before any row that has one, and sort first.
   */
  o?: number;
}

interface SessionIndex {
  /** queue seq -> message id */
  queue: Map<number, number>;
  nextSeq: number;
  /** packet id -> message id (undefined once in the PUBREL state) */
  inflight: Map<number, number | undefined>;
  /** packet id -> its row's place in the send order (none for rows written without one) */
  inflightOrder: Map<number, number>;
  nextInflightOrder: number;
  subscriptions: Set<string>;
  incoming: Set<number>;
}

type Key = string | number | Array<string | number>;

/**
 * The embedded on-disk store on LMDB: crash-safe copy-on-write B-trees, one environment per data
 * dir. The puts of an event-loop turn go to LMDB as one transaction (LmdbWrites), so `commit()` is a
 * group commit. Messages are stored once under a numeric id and referenced by queue, inflight and
 * retained rows; the reference counts live in memory and are rebuilt at load.
 */
export class LmdbStore implements Store {
  readonly kind = 'lmdb' as const;
  private readonly env: RootDatabase;
  private readonly meta: Database<unknown, string>;
  private readonly messages: Database<MessageRow, number>;
  private readonly sessions: Database<SessionRecord, string>;
  private readonly subscriptions: Database<Subscription, Key>;
  private readonly queue: Database<DeliveryRow, Key>;
  private readonly inflight: Database<DeliveryRow, Key>;
  private readonly incoming: Database<number, Key>;
  private readonly retained: Database<number, string>;
  private readonly wills: Database<WillRecord, string>;

  private readonly ids = new WeakMap<Message, number>();
  private readonly refs = new Map<number, number>();
  private nextId = 1;
  private readonly seqs = new WeakMap<Delivery, number>();
  private readonly index = new Map<string, SessionIndex>();
  private readonly retainedIds = new Map<string, number>();
  /** the data dir held for this store (openExclusive), let go once the store is closed */
  private lock: DataDirLock | undefined;

  /** queues the writes of each turn for one batch, and keeps them while the data dir cannot take them */
  private readonly writes: LmdbWrites;

  /**
   * Told when the process must stop at once: LMDB met a full disk that the free-space check did not
   * foresee and lmdb-js corrupted the heap reporting it (see LmdbWrites). By default the message
   * goes to stderr and the process exits with code 1; the broker logs it first.
   */
  onFatal: ((message: string) => void) | undefined;
  private healthListener: ((error: StoreError | undefined) => void) | undefined;

  private constructor(env: RootDatabase, dir: string) {
    this.env = env;
    this.meta = env.openDB({ name: DB.meta });
    this.messages = env.openDB({ name: DB.messages, keyEncoding: 'uint32' });
    this.sessions = env.openDB({ name: DB.sessions });
    this.subscriptions = env.openDB({ name: DB.subscriptions });
    this.queue = env.openDB({ name: DB.queue });
    this.inflight = env.openDB({ name: DB.inflight });
    this.incoming = env.openDB({ name: DB.incoming });
    this.retained = env.openDB({ name: DB.retained });
    this.wills = env.openDB({ name: DB.wills });
    this.writes = new LmdbWrites(
      env,
      dir,
      (error) => this.healthListener?.(error),
      (message) => (this.onFatal ?? exitOnFatal)(message),
    );
    for (const db of [this.meta, this.messages, this.sessions, this.subscriptions, this.queue, this.inflight, this.incoming, this.retained, this.wills]) this.writes.route(db);
  }

  /**
   * Opens (or creates) the store in `dir` once no other broker holds the dir, and holds it until
   * close() (or the end of the process): a StoreError "data dir X is in use by another broker
   * (pid N)" otherwise, before anything in the dir is read. What createBroker uses.
   */
  static async openExclusive(dir: string): Promise<LmdbStore> {
    const lock = await lockDataDir(dir);
    try {
      const store = LmdbStore.open(dir);
      store.lock = lock;
      return store;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /**
   * Opens (or creates) the store in `dir`; an unusable dir is a StoreError, never an empty start.
   * It takes no lock: openExclusive does.
   */
  static open(dir: string): LmdbStore {
    let env: RootDatabase;
    checkDataFile(join(dir, 'data.mdb'));
    checkRoomToOpen(dir);
    try {
      mkdirSync(dir, { recursive: true });
      // LmdbWrites batches each turn's writes itself (see there)
      env = open({ path: dir, compression: false, maxDbs: 16, eventTurnBatching: false });
    } catch (err) {
      throw new StoreError(`cannot open the data dir ${dir}: ${(err as Error).message}`);
    }
    try {
      return LmdbStore.adopt(env, dir);
    } catch (err) {
      void env.close();
      throw err instanceof StoreError ? err : new StoreError(`cannot open the data dir ${dir}: ${(err as Error).message}`);
    }
  }

  /** Checks that `env` is Midge's (or empty) before anything is written to it. */
  private static adopt(env: RootDatabase, dir: string): LmdbStore {
    const { ours, foreign } = mainKeys(env);
    // read before any database is created, so that a dir Midge refuses is left as it was
    const format = ours.has(DB.meta) ? env.openDB<unknown, string>({ name: DB.meta }).get('format') : undefined;
    // a newer Midge may keep a database this one does not know: that dir is newer, not foreign
    if (format !== undefined && (typeof format !== 'number' || format > STORE_FORMAT)) {
      throw new StoreError(`the data dir ${dir} has format ${String(format)}, newer than this Midge reads (${STORE_FORMAT})`);
    }
    if (foreign.length > 0) {
      const shown = foreign.slice(0, 3).map((k) => JSON.stringify(k).slice(0, 40)).join(', ');
      throw new StoreError(`the data dir ${dir} holds an LMDB environment with keys Midge never writes (${shown}${foreign.length > 3 ? ', ...' : ''}): it was not written by Midge`);
    }
    const store = new LmdbStore(env, dir);
    if (format === undefined) {
      if (store.sessions.getKeysCount() > 0 || store.messages.getKeysCount() > 0) {
        throw new StoreError(`the data dir ${dir} has data but no format version: it was not written by Midge`);
      }
      store.meta.putSync('format', STORE_FORMAT);
    }
    return store;
  }

  async load(): Promise<StoredState> {
    try {
      return this.loadAll();
    } catch (err) {
      throw new StoreError(`the data dir cannot be read: ${(err as Error).message}`);
    }
  }

  private loadAll(): StoredState {
    const messages = new Map<number, Message>();
    for (const { key, value } of this.messages.getRange()) {
      messages.set(key, toMessage(value));
      if (key >= this.nextId) this.nextId = key + 1;
    }
    const byClient = new Map<string, StoredSession>();
    for (const { key, value } of this.sessions.getRange()) {
      byClient.set(key, { record: value, subscriptions: [], queue: [], inflight: [], incomingQos2: [] });
      this.index.set(key, newIndex());
    }
    for (const { key, value } of this.subscriptions.getRange()) {
      const [clientId] = key as [string, string];
      const s = byClient.get(clientId);
      if (s === undefined) continue;
      s.subscriptions.push(value);
      this.indexOf(clientId).subscriptions.add(value.filter);
    }
    for (const { key, value } of this.queue.getRange()) {
      const [clientId, seq] = key as [string, number];
      const s = byClient.get(clientId);
      const message = value.m === undefined ? undefined : messages.get(value.m);
      if (s === undefined || message === undefined) continue;
      const delivery = toDelivery(value, message);
      s.queue.push(delivery);
      const ix = this.indexOf(clientId);
      ix.queue.set(seq, value.m as number);
      if (seq >= ix.nextSeq) ix.nextSeq = seq + 1;
      this.seqs.set(delivery, seq);
      this.countRef(value.m as number, message);
    }
    // rows come in packet id order; the broker resends them in the order they were first sent
    const order = new Map<InflightRecord, number>();
    for (const { key, value } of this.inflight.getRange()) {
      const [clientId, packetId] = key as [string, number];
      const s = byClient.get(clientId);
      if (s === undefined) continue;
      const message = value.m === undefined ? undefined : messages.get(value.m);
      if (value.state === 'publish' && message === undefined) continue;
      const delivery = toDelivery(value, message ?? placeholderMessage());
      const entry: InflightRecord = { packetId, delivery, state: value.state ?? 'publish' };
      s.inflight.push(entry);
      const ix = this.indexOf(clientId);
      ix.inflight.set(packetId, value.m);
      if (typeof value.o === 'number') {
        order.set(entry, value.o);
        ix.inflightOrder.set(packetId, value.o);
        if (value.o >= ix.nextInflightOrder) ix.nextInflightOrder = value.o + 1;
      }
      if (value.m !== undefined && message !== undefined) this.countRef(value.m, message);
    }
    // stable: rows without a place (older ones, sent before the rest) stay first, by packet id
    for (const s of byClient.values()) if (s.inflight.length > 1) s.inflight.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
    for (const { key } of this.incoming.getRange()) {
      const [clientId, packetId] = key as [string, number];
      const s = byClient.get(clientId);
      if (s === undefined) continue;
      s.incomingQos2.push(packetId);
      this.indexOf(clientId).incoming.add(packetId);
    }
    const retained: Message[] = [];
    for (const { key, value } of this.retained.getRange()) {
      const message = messages.get(value);
      if (message === undefined) continue;
      retained.push(message);
      this.retainedIds.set(key, value);
      this.countRef(value, message);
    }
    // rows no reference reaches (a crash between writes of one turn cannot leave any, but be sure)
    for (const id of messages.keys()) if (!this.refs.has(id)) void this.messages.remove(id);
    const wills = [...this.wills.getRange()].map(({ value }) => value);
    const alive = this.meta.get(ALIVE_KEY);
    return { sessions: [...byClient.values()], retained, wills, ...(typeof alive === 'number' ? { aliveAt: alive } : {}) };
  }

  sessionSaved(record: SessionRecord): void {
    if (!this.index.has(record.clientId)) this.index.set(record.clientId, newIndex());
    void this.sessions.put(record.clientId, { ...record });
  }

  sessionRemoved(clientId: string): void {
    const ix = this.index.get(clientId);
    void this.sessions.remove(clientId);
    if (ix === undefined) return;
    this.index.delete(clientId);
    for (const filter of ix.subscriptions) void this.subscriptions.remove([clientId, filter]);
    for (const [seq, id] of ix.queue) {
      void this.queue.remove([clientId, seq]);
      this.unref(id);
    }
    for (const [packetId, id] of ix.inflight) {
      void this.inflight.remove([clientId, packetId]);
      if (id !== undefined) this.unref(id);
    }
    for (const packetId of ix.incoming) void this.incoming.remove([clientId, packetId]);
  }

  subscriptionAdded(clientId: string, subscription: Subscription): void {
    this.indexOf(clientId).subscriptions.add(subscription.filter);
    void this.subscriptions.put([clientId, subscription.filter], { ...subscription });
  }

  subscriptionRemoved(clientId: string, filter: string): void {
    this.index.get(clientId)?.subscriptions.delete(filter);
    void this.subscriptions.remove([clientId, filter]);
  }

  messageQueued(clientId: string, delivery: Delivery): void {
    const ix = this.indexOf(clientId);
    const seq = ix.nextSeq++;
    const id = this.store(delivery.message);
    this.seqs.set(delivery, seq);
    ix.queue.set(seq, id);
    void this.queue.put([clientId, seq], toRow(delivery, id));
  }

  messageUnqueued(clientId: string, delivery: Delivery): void {
    const seq = this.seqs.get(delivery);
    const ix = this.index.get(clientId);
    if (seq === undefined || ix === undefined) return;
    const id = ix.queue.get(seq);
    if (id === undefined) return;
    ix.queue.delete(seq);
    void this.queue.remove([clientId, seq]);
    this.unref(id);
  }

  inflightSet(clientId: string, entry: InflightRecord): void {
    const ix = this.indexOf(clientId);
    const before = ix.inflight.get(entry.packetId);
    const had = ix.inflight.has(entry.packetId);
    // in the PUBREL state only the packet id matters: the message reference is let go
    const id = entry.state === 'publish' ? this.store(entry.delivery.message) : undefined;
    ix.inflight.set(entry.packetId, id);
    // a new id goes after every message in flight; a move to PUBREL keeps the message's place
    let o = ix.inflightOrder.get(entry.packetId);
    if (!had) {
      o = ix.nextInflightOrder++;
      ix.inflightOrder.set(entry.packetId, o);
    }
    const row: DeliveryRow = { ...toRow(entry.delivery, id), state: entry.state };
    if (o !== undefined) row.o = o;
    void this.inflight.put([clientId, entry.packetId], row);
    if (had && before !== undefined) this.unref(before);
  }

  inflightRemoved(clientId: string, packetId: number): void {
    const ix = this.index.get(clientId);
    if (ix === undefined || !ix.inflight.has(packetId)) return;
    const id = ix.inflight.get(packetId);
    ix.inflight.delete(packetId);
    ix.inflightOrder.delete(packetId);
    void this.inflight.remove([clientId, packetId]);
    if (id !== undefined) this.unref(id);
  }

  incomingQos2Added(clientId: string, packetId: number): void {
    this.indexOf(clientId).incoming.add(packetId);
    void this.incoming.put([clientId, packetId], 1);
  }

  incomingQos2Removed(clientId: string, packetId: number): void {
    this.index.get(clientId)?.incoming.delete(packetId);
    void this.incoming.remove([clientId, packetId]);
  }

  retainedSet(message: Message): void {
    const id = this.store(message);
    const before = this.retainedIds.get(message.topic);
    this.retainedIds.set(message.topic, id);
    void this.retained.put(message.topic, id);
    if (before !== undefined) this.unref(before);
  }

  retainedCleared(topic: string): void {
    const before = this.retainedIds.get(topic);
    if (before === undefined) return;
    this.retainedIds.delete(topic);
    void this.retained.remove(topic);
    this.unref(before);
  }

  willSet(record: WillRecord): void {
    void this.wills.put(record.clientId, { ...record });
  }

  willCleared(clientId: string): void {
    void this.wills.remove(clientId);
  }

  aliveAt(ms: number): void {
    void this.meta.put(ALIVE_KEY, ms);
  }

  commit(): Promise<void> {
    // every write so far sits in this turn's batch or one under way; this resolves once they are on disk
    return this.writes.commit();
  }

  watch(listener: (error: StoreError | undefined) => void): void {
    this.healthListener = listener;
  }

  async close(): Promise<void> {
    try {
      const unwritten = await this.writes.finish();
      await this.env.close();
      if (unwritten > 0) throw new StoreError(`${unwritten} changes could not be written to the data dir before it closed; it holds the state of the last commit that succeeded`);
    } finally {
      // only once the environment is shut: the next broker must not meet this one's writes
      await this.lock?.release();
      this.lock = undefined;
    }
  }

  /** Takes a reference to a message, writing its row on the first one. */
  private store(message: Message): number {
    let id = this.ids.get(message);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(message, id);
    }
    this.ref(id, message);
    return id;
  }

  private ref(id: number, message: Message): void {
    const n = this.refs.get(id) ?? 0;
    this.refs.set(id, n + 1);
    if (n === 0) void this.messages.put(id, toRow2(message));
  }

  /** At load the rows exist already: only count. */
  private countRef(id: number, message: Message): void {
    this.refs.set(id, (this.refs.get(id) ?? 0) + 1);
    this.ids.set(message, id);
  }

  private unref(id: number): void {
    const n = (this.refs.get(id) ?? 0) - 1;
    if (n > 0) {
      this.refs.set(id, n);
      return;
    }
    this.refs.delete(id);
    void this.messages.remove(id);
  }

  private indexOf(clientId: string): SessionIndex {
    let ix = this.index.get(clientId);
    if (ix === undefined) {
      ix = newIndex();
      this.index.set(clientId, ix);
    }
    return ix;
  }
}

function newIndex(): SessionIndex {
  return { queue: new Map(), nextSeq: 1, inflight: new Map(), inflightOrder: new Map(), nextInflightOrder: 1, subscriptions: new Set(), incoming: new Set() };
}

function toRow2(m: Message): MessageRow {
  const row: MessageRow = { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain };
  if (m.properties !== undefined) row.properties = m.properties;
  if (m.expiresAt !== undefined) row.expiresAt = m.expiresAt;
  if (m.senderId !== undefined) row.senderId = m.senderId;
  return row;
}

function toMessage(row: MessageRow): Message {
  return {
    topic: row.topic,
    payload: Buffer.isBuffer(row.payload) ? row.payload : Buffer.from(row.payload as Uint8Array),
    qos: row.qos,
    retain: row.retain,
    properties: row.properties,
    expiresAt: row.expiresAt,
    senderId: row.senderId,
    frame: undefined,
    frameSlot: -1,
    frames: undefined,
    framesExpiry: -1,
    bytesSettled: false,
  };
}

function toRow(d: Delivery, id: number | undefined): DeliveryRow {
  const row: DeliveryRow = { m: id, qos: d.qos, retain: d.retain };
  if (d.subscriptionIds !== undefined) row.ids = d.subscriptionIds;
  if (d.share !== undefined) row.share = { shareGroup: d.share.shareGroup, topicFilter: d.share.topicFilter };
  return row;
}

function toDelivery(row: DeliveryRow, message: Message): Delivery {
  return { message, qos: row.qos, retain: row.retain, subscriptionIds: row.ids, share: row.share };
}

/** The message of a delivery in the PUBREL state is gone; only its packet id is used. */
function placeholderMessage(): Message {
  return { topic: '', payload: Buffer.alloc(0), qos: 2, retain: false, properties: undefined, expiresAt: undefined, senderId: undefined, frame: undefined, frameSlot: -1, frames: undefined, framesExpiry: -1, bytesSettled: false };
}

/** The named databases, by the field that holds each: in LMDB each is a key of the main (unnamed) database. */
/** the meta row the broker's latest aliveAt is kept in */
const ALIVE_KEY = 'aliveAt';
const DB = { meta: 'meta', messages: 'msg', sessions: 'sess', subscriptions: 'sub', queue: 'queue', inflight: 'inflight', incoming: 'incoming', retained: 'retained', wills: 'will' } as const;
const DB_NAMES: ReadonlySet<string> = new Set(Object.values(DB));

/**
 * The keys of the main database: Midge's named databases, and any other key, which is another
 * program's data that Midge must neither take for an empty store nor write its format into. A
 * named database's key has no value of its own to read (lmdb-js answers undefined), so a plain key
 * that happens to be called `meta` is foreign too.
 */
function mainKeys(env: RootDatabase): { ours: Set<string>; foreign: unknown[] } {
  const ours = new Set<string>();
  const foreign: unknown[] = [];
  for (const key of env.getKeys()) {
    if (typeof key === 'string' && DB_NAMES.has(key) && env.getBinary(key) === undefined) ours.add(key);
    else foreign.push(key);
    // enough to refuse the dir and name a few; another program's database may be large
    if (foreign.length > 3) break;
  }
  return { ours, foreign };
}

/**
 * What opening may write besides the reserve: a lock file (3 pages, mapped: see checkRoomToOpen)
 * and a new data file's first pages (its 2 meta pages, the named databases and the format row,
 * about 10 more), with room to spare for larger pages.
 */
const OPEN_BYTES = 64 * 1024;

/**
 * LMDB maps its lock file and touches its pages in place: on a file system that cannot back a page
 * that is SIGBUS, which ends the process with no word of why (with a page or two left, LMDB gets
 * further and crashes on a data file it could not finish). And a broker that starts below the
 * reserve LmdbWrites keeps could store nothing: every write would wait for room. So the store is
 * not opened unless the data dir's file system has the reserve and what opening writes.
 */
function checkRoomToOpen(dir: string): void {
  // the dir may not exist yet: it is made on the file system of the nearest dir that does
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  let free: number;
  let size: number;
  try {
    const s = statfsSync(at);
    free = Number(s.bavail) * Number(s.bsize);
    size = Number(s.blocks) * Number(s.bsize);
  } catch {
    // a file system that cannot tell: as LmdbWrites, LMDB finds out
    return;
  }
  const reserve = reserveFor(size);
  if (free >= reserve + OPEN_BYTES) return;
  throw new StoreError(
    `the file system of the data dir ${dir} is full: ${kib(free)} free, the store needs ${kib(reserve + OPEN_BYTES)} to open (${kib(reserve)} of it kept in reserve); free some space on it and start again`,
  );
}

/** LMDB's meta page magic, at byte 24 of the data file (after the page header). */
const LMDB_MAGIC = 0xbeefc0de;
/**
 * A data file starts with two meta pages, written at once when it is made, and a page is 4 KiB at
 * least: anything stored comes after them.
 */
const MIN_DATA_FILE = 2 * 4096;

/**
 * LMDB trusts its data file and can crash the process on one that is not an LMDB file at all, so
 * the magic number is checked first: a damaged or foreign file is an error, not a crash. So is one
 * whose making was cut short (a full disk stops LMDB's write of the meta pages after the first;
 * LMDB then crashes on every open of it).
 */
function checkDataFile(path: string): void {
  if (!existsSync(path)) return;
  const head = Buffer.alloc(32);
  let read = 0;
  let size = 0;
  try {
    const fd = openSync(path, 'r');
    try {
      size = fstatSync(fd).size;
      read = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new StoreError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const lmdb = read === head.length && head.readUInt32LE(24) === LMDB_MAGIC;
  if (size === 0 || (lmdb && size < MIN_DATA_FILE)) {
    throw new StoreError(`${path} is incomplete (${size} bytes): making it was cut short, by a full disk or a crash, before anything was stored in it; remove it and start again`);
  }
  if (!lmdb) {
    throw new StoreError(`${path} is corrupted or not a Midge data file`);
  }
}
