import { Buffer } from 'node:buffer';
import { statfsSync } from 'node:fs';
import process from 'node:process';
import type { Database, Key, RootDatabase } from 'lmdb';
import { deferred, type Deferred } from '../collections/deferred.js';
import { StoreError } from './store.js';

/** A row to write (or REMOVE) in one of the store's databases. */
interface Change {
  db: Database<unknown, Key>;
  key: Key;
  value: unknown;
}

const REMOVE = Symbol('remove');

type Waiter = Deferred<StoreError>;

/** The changes of one event-loop turn: one LMDB transaction. */
interface Batch {
  changes: Change[];
  /** what the transaction may add to the data file at most (bytesFor), counted while it is under way */
  bytes: number;
  /** what commit() callers wait on; made by the first of them */
  waiter: Waiter | undefined;
  /** LMDB committed it (with the rows it refused): its waiter hears so once every batch before it is done too */
  done?: { refused: unknown[] };
}

/** Changes the data dir could not take, kept in memory (the latest of each row) until it can. */
interface Held {
  error: StoreError;
  rows: Map<string, Change>;
  timer: NodeJS.Timeout | undefined;
}

interface Writers {
  id: number;
  put: (key: Key, value: unknown) => Promise<boolean>;
  remove: (key: Key) => Promise<boolean>;
}

/** free space is looked at again at least this often (ms), and after this many bytes were handed to LMDB */
const CHECK_MS = 1000;
const CHECK_BYTES = 64 * 1024 * 1024;
/** below this much free space, it is looked at for every batch: another program may take the rest at any time */
const LOW_FREE = 256 * 1024 * 1024;
const RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;
/** Pages a put or remove may copy besides its row (its leaf, a share of the branches above it). */
const PAGES_PER_CHANGE = 2;
const PAGES_PER_BATCH = 8;
/** lmdb-js writes the detail of a failed page write with sprintf into a malloc(100) (see heapOverrun) */
const NATIVE_DETAIL_BUFFER = 100;

/** Said by put and remove: the change is queued; commit() says when it is on disk. */
const QUEUED: Promise<boolean> = Promise.resolve(true);

/**
 * The write path of the LMDB store. Its puts and removes are queued in memory and handed to
 * LMDB once per event-loop turn as one explicit batch (the environment is opened without
 * lmdb-js's event-turn batching): every promise lmdb-js makes for it is one this class holds, so
 * a commit that fails is an answer to the commit() callers waiting for it, never an unhandled
 * rejection that ends the process (event-turn batching makes a promise of its own that nobody can
 * catch). A turn's changes stay one transaction, as before.
 *
 * A data dir that cannot take the changes (its file system is full, or LMDB fails a write) does
 * not end the broker: commit() rejects, so nothing more is acknowledged, and the changes wait here,
 * the latest of each row, until a try (every second) finds room and writes them all in one
 * transaction, ahead of anything newer. What LMDB had written stays as it was: nothing is lost
 * that a commit said was on disk.
 *
 * LMDB is not left to find out that the disk is full: lmdb-js 3.5 (mdb.c, mdb_page_flush) writes the
 * detail of a failed page write into a 100-byte buffer with sprintf, and the text is usually longer,
 * which corrupts the heap: the process aborts then or later ("corrupted size vs. prev_size").
 * So each batch is held back when the file system's free space, less a reserve, may not take it
 * (bytesFor is a bound on what a transaction adds to the data file). Should LMDB meet a full disk
 * all the same (another program took the space), `fatal` is told when the detail overran the buffer,
 * before the corrupted heap can do anything else.
 */
export class LmdbWrites {
  private batch: Batch | undefined;
  /** handed to LMDB, not known to be on disk yet, in the order they were sent */
  private readonly sent: Batch[] = [];
  private held: Held | undefined;
  private readonly writers = new Map<Database<unknown, Key>, Writers>();
  private readonly pageSize: number;
  /** bytes that may still be handed to LMDB before free space is looked at again */
  private room = 0;
  private checkedAt = -Infinity;
  /** free space was low when last looked at: it is looked at for every batch */
  private low = true;
  /** estimated bytes of the batches sent and not finished, which free space does not show yet */
  private underWay = 0;
  /** transactions LMDB failed in a row: tries come less often (1 s, doubled up to 30 s) */
  private failures = 0;
  /** the latest transaction failed: lmdb-js's close waits for its flush until another one commits */
  private stuck = false;
  private closing = false;
  private closed = false;
  /** the changes are kept and `health` was told so: it is told again once they are written */
  private reported = false;

  /**
   * `health` is told once when changes start being kept (why) and once when they are written
   * (undefined); `fatal` when the process must stop at once.
   */
  constructor(
    private readonly env: RootDatabase,
    private readonly dir: string,
    private readonly health: (error: StoreError | undefined) => void,
    private readonly fatal: (message: string) => void,
  ) {
    this.pageSize = pageSizeOf(env);
  }

  /** From now on `db`'s put and remove queue their change here (and resolve at once: see commit()). */
  route(db: object): void {
    const any = db as Database<unknown, Key>;
    const put = any.put.bind(any) as Writers['put'];
    const remove = any.remove.bind(any) as Writers['remove'];
    this.writers.set(any, { id: this.writers.size, put, remove });
    const own = any as unknown as { put: (key: Key, value: unknown) => Promise<boolean>; remove: (key: Key) => Promise<boolean> };
    own.put = (key, value) => this.add(any, key, value);
    own.remove = (key) => this.add(any, key, REMOVE);
  }

  /** Resolves once every change queued so far is on disk; rejects (a StoreError) if any of them cannot be. */
  commit(): Promise<void> {
    const b = this.batch ?? this.sent[this.sent.length - 1];
    if (b !== undefined) return (b.waiter ??= deferred<StoreError>()).promise;
    return this.held === undefined ? Promise.resolve() : Promise.reject(this.held.error);
  }

  /** Writes what can be written before the store closes; returns how many changes could not be. */
  async finish(): Promise<number> {
    this.closing = true;
    this.submit();
    if (this.held !== undefined) this.retry();
    for (let b = this.sent[this.sent.length - 1]; b !== undefined; b = this.sent[this.sent.length - 1]) {
      await (b.waiter ??= deferred<StoreError>()).promise.catch(() => undefined);
    }
    if (this.held?.timer !== undefined) clearTimeout(this.held.timer);
    // an empty transaction commits on a full disk too, and lets lmdb-js's close finish
    if (this.stuck) await this.env.batch(() => undefined).catch(() => undefined);
    this.closed = true;
    return this.held?.rows.size ?? 0;
  }

  private add(db: Database<unknown, Key>, key: Key, value: unknown): Promise<boolean> {
    if (this.closed) throw new StoreError('the store is closed');
    // a key LMDB will not take is refused here, to the caller, as lmdb-js's own put does
    if (typeof key !== 'number') checkKey(db, key);
    let b = this.batch;
    if (b === undefined) {
      b = this.batch = { changes: [], bytes: 0, waiter: undefined };
      setImmediate(this.submit);
    }
    b.changes.push({ db, key, value });
    return QUEUED;
  }

  /** The turn is over: its changes go to LMDB, or wait with the others while the data dir cannot take them. */
  private readonly submit = (): void => {
    const b = this.batch;
    if (b === undefined) return;
    this.batch = undefined;
    if (this.held !== undefined) {
      this.keep([b], this.held.error);
      return;
    }
    b.bytes = this.bytesFor(b.changes);
    const short = this.roomFor(b.bytes);
    if (short !== undefined) {
      this.keep([b], short);
      return;
    }
    this.send(b);
  };

  private send(b: Batch): void {
    this.sent.push(b);
    this.underWay += b.bytes;
    const refused: unknown[] = [];
    let written: Promise<boolean>;
    try {
      written = this.env.batch(() => {
        for (const c of b.changes) {
          const w = this.writers.get(c.db) as Writers;
          try {
            if (c.value === REMOVE) void w.remove(c.key);
            else void w.put(c.key, c.value);
          } catch (err) {
            // a row lmdb-js will not take (a key over its 1978 bytes): it leaves nothing half-written
            refused.push(err);
          }
        }
      });
    } catch (err) {
      this.failed(b, err);
      return;
    }
    const flushed = this.env.flushed as PromiseLike<unknown>;
    Promise.all([written, flushed]).then(
      () => this.written(b, refused),
      (err: unknown) => this.failed(b, err),
    );
  }

  private written(b: Batch, refused: unknown[]): void {
    // kept since, as an earlier transaction failed: its rows are written again with the rest
    if (!this.sent.includes(b)) return;
    b.done = { refused };
    // lmdb-js may report a later transaction flushed before an earlier one: the acknowledgements
    // waiting on them leave in the order their batches were made ([MQTT-4.6.0-2])
    while (this.sent[0]?.done !== undefined) {
      const first = this.sent.shift() as Batch;
      this.underWay -= first.bytes;
      this.stuck = false;
      this.failures = 0;
      if (this.reported && this.held === undefined) {
        this.reported = false;
        this.health(undefined);
      }
      const r = (first.done as { refused: unknown[] }).refused;
      if (r.length === 0) first.waiter?.resolve();
      else first.waiter?.reject(new StoreError(`a row could not be stored: ${(r[0] as Error).message}`));
    }
  }

  /** LMDB did not commit `b`: it and every batch sent after it wait to be written again. */
  private failed(b: Batch, err: unknown): void {
    // lmdb-js rejects this promise with the error LMDB gave, at once; nobody else holds it
    const detail = (err as { commitError?: Promise<unknown> }).commitError;
    const i = this.sent.indexOf(b);
    if (i < 0) {
      detail?.catch((native: unknown) => this.native(native));
      return;
    }
    this.stuck = true;
    this.failures++;
    const again = this.sent.splice(i);
    for (const s of again) this.underWay -= s.bytes;
    // kept at once, ahead of anything newer; the waiters hear of it with LMDB's words when they come
    this.keep(again, new StoreError(`the data dir ${this.dir} did not take a write: ${describe(err)}`), false);
    let told = false;
    const tell = (): void => {
      if (told) return;
      told = true;
      const error = this.held?.error ?? new StoreError(`the data dir ${this.dir} did not take a write: ${describe(err)}`);
      for (const s of again) s.waiter?.reject(error);
    };
    detail?.catch((native: unknown) => {
      this.native(native);
      tell();
    });
    setImmediate(tell);
  }

  /** What LMDB said a failed transaction met. */
  private native(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (this.held !== undefined) this.held.error = new StoreError(`the data dir ${this.dir} did not take a write: ${message}`);
    const overrun = heapOverrun(message);
    if (overrun > 0) {
      this.fatal(
        `the data dir ${this.dir} did not take a write (${message.slice(0, message.indexOf(': '))}) and lmdb-js wrote ${overrun} bytes past the buffer it reports it in, ` +
          'which corrupts the heap of this process: it stops now, before that aborts it or damages data. What was acknowledged is on disk. ' +
          'Make room on the disk before starting the broker again',
      );
    }
  }

  /** Keeps the batches' changes (in order: a later change of a row replaces an earlier one) and fails their waiters. */
  private keep(batches: Batch[], error: StoreError, reject = true): void {
    let held = this.held;
    if (held === undefined) {
      held = this.held = { error, rows: new Map(), timer: undefined };
      this.schedule();
      // once LMDB's own words for a failed write are in (they come a step after the failure)
      if (!this.reported) {
        setImmediate(() => {
          if (this.held === undefined || this.reported) return;
          this.reported = true;
          this.health(this.held.error);
        });
      }
    }
    for (const b of batches) {
      for (const c of b.changes) held.rows.set(this.rowKey(c), c);
    }
    if (reject) for (const b of batches) b.waiter?.reject(held.error);
  }

  private schedule(): void {
    const held = this.held;
    if (held === undefined || this.closing) return;
    held.timer = setTimeout(this.retry, Math.min(RETRY_MS * 2 ** Math.max(0, this.failures - 1), MAX_RETRY_MS));
    held.timer.unref();
  }

  /** Writes what is kept, with this turn's changes after it, once there is room for it. */
  private readonly retry = (): void => {
    const held = this.held;
    if (held === undefined) return;
    held.timer = undefined;
    const b: Batch = { changes: [...held.rows.values()], bytes: 0, waiter: undefined };
    const turn = this.batch;
    if (turn !== undefined) {
      this.batch = undefined;
      for (const c of turn.changes) b.changes.push(c);
      b.waiter = turn.waiter;
    }
    b.bytes = this.bytesFor(b.changes);
    const short = this.roomFor(b.bytes);
    if (short !== undefined) {
      // still no room: the turn's changes join the kept ones
      held.error = short;
      if (turn !== undefined) this.keep([turn], short);
      this.schedule();
      return;
    }
    this.held = undefined;
    this.send(b);
  };

  /**
   * Whether the file system may take `bytes` more (besides what is under way) and keep its reserve;
   * a StoreError saying why not otherwise. Free space is read at most once a second while there is
   * room, and at once when a batch may not fit.
   */
  private roomFor(bytes: number): StoreError | undefined {
    const now = Date.now();
    if (!this.low && bytes <= this.room && now - this.checkedAt < CHECK_MS) {
      this.room -= bytes;
      return undefined;
    }
    let free: number;
    let size: number;
    try {
      const s = statfsSync(this.dir);
      free = Number(s.bavail) * Number(s.bsize);
      size = Number(s.blocks) * Number(s.bsize);
    } catch {
      // a file system that cannot tell: LMDB finds out
      this.room = Infinity;
      this.checkedAt = now;
      return undefined;
    }
    const reserve = reserveFor(size);
    this.room = Math.min(free - reserve - this.underWay, CHECK_BYTES);
    this.checkedAt = now;
    this.low = free < LOW_FREE;
    if (bytes <= this.room) {
      this.room -= bytes;
      return undefined;
    }
    this.checkedAt = -Infinity;
    return new StoreError(
      `the file system of the data dir ${this.dir} is full: ${kib(free)} free, a write may take ${kib(bytes + this.underWay)} and ${kib(reserve)} is kept in reserve`,
    );
  }

  /**
   * At most what a transaction of these changes adds to the data file: rows over half a page in
   * pages of their own, smaller ones packed (leaves half full at worst), and a copy of each page a
   * change touches, never more pages than the file has.
   */
  private bytesFor(changes: Change[]): number {
    const page = this.pageSize;
    let own = 0;
    let packed = 0;
    for (const c of changes) {
      if (c.value === REMOVE) continue;
      const row = sizeOf(c.key, 0) + sizeOf(c.value, 0);
      if (row > page / 2) own += Math.ceil((row + 16) / page);
      else packed += row;
    }
    let touched = changes.length * PAGES_PER_CHANGE;
    if (touched > 256) touched = Math.min(touched, this.usedPages());
    return (PAGES_PER_BATCH + own + Math.ceil((2 * packed) / page) + touched) * page;
  }

  /** Pages the data file holds now (each is copied at most once by a transaction). */
  private usedPages(): number {
    try {
      const last = (this.env.getStats() as { lastPageNumber?: unknown }).lastPageNumber;
      return typeof last === 'number' ? last + 1 : Infinity;
    } catch {
      return Infinity;
    }
  }

  private rowKey(c: Change): string {
    return `${(this.writers.get(c.db) as Writers).id}\u0000${JSON.stringify(c.key)}`;
  }
}

/**
 * Throws, as lmdb-js's put would, for a key over the database's maximum key size (1978 bytes): a
 * topic or topic filter may be longer. Most keys are measured by a bound on their encoding alone.
 */
function checkKey(db: Database<unknown, Key>, key: Key): void {
  const keys = db as unknown as { maxKeySize?: number; writeKey?: (key: Key, target: Buffer, start: number) => number };
  const max = keys.maxKeySize;
  if (max === undefined || keys.writeKey === undefined) return;
  const parts = Array.isArray(key) ? key : [key];
  let bound = 0;
  for (const p of parts) bound += typeof p === 'string' ? p.length * 3 + 2 : 10;
  if (bound <= max) return;
  let size: number;
  try {
    size = keys.writeKey(key, Buffer.allocUnsafe(bound + 64), 0);
  } catch {
    size = Infinity;
  }
  if (size > max) throw new Error(`Key size is larger than the maximum key size (${max})`);
}

/** A bound on the bytes a value takes encoded (MessagePack, as lmdb-js writes rows). */
function sizeOf(v: unknown, depth: number): number {
  if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'bigint') return 9;
  if (typeof v === 'string') return 5 + v.length * 3;
  if (v instanceof Uint8Array) return 5 + v.byteLength;
  if (typeof v !== 'object' || depth > 8) return 64;
  let n = 5;
  if (Array.isArray(v)) for (const x of v) n += sizeOf(x, depth + 1);
  else for (const k in v) n += 5 + k.length * 3 + sizeOf((v as Record<string, unknown>)[k], depth + 1);
  return n;
}

/**
 * Kept free on the data dir's file system: a 64th of it, at least 128 KiB and at most 64 MiB. A
 * batch that would eat into it waits, and a store is not opened without it (LmdbStore.open).
 */
export function reserveFor(size: number): number {
  return Math.min(64 * 1024 * 1024, Math.max(128 * 1024, Math.floor(size / 64)));
}

function pageSizeOf(env: RootDatabase): number {
  try {
    const size = (env.getStats() as { pageSize?: unknown }).pageSize;
    return typeof size === 'number' && size > 0 ? size : 4096;
  } catch {
    return 4096;
  }
}

/**
 * Bytes lmdb-js wrote past its buffer reporting a failed page write: it formats "Attempting to
 * write page at position ..." into a malloc(100) with sprintf, and the error's message ends with
 * that text after "<strerror>: ". 0 when it fitted (or the message has no such text).
 */
export function heapOverrun(message: string): number {
  const at = message.indexOf('Attempting to write page');
  if (at < 0) return 0;
  // the text and its terminating NUL
  return Math.max(0, message.length - at + 1 - NATIVE_DETAIL_BUFFER);
}

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // lmdb-js's own words for a failed transaction, with LMDB's error on a promise of its own
  return message.startsWith('Commit failed') ? 'the transaction failed' : message;
}

export function kib(bytes: number): string {
  return `${Math.max(0, Math.round(bytes / 1024))} KiB`;
}

/** Told when the process must stop (see LmdbWrites): to stderr, then exit. */
export function exitOnFatal(message: string): void {
  process.stderr.write(`midge: ${message}\n`);
  process.exit(1);
}
