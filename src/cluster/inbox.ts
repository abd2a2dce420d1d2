import type { Buffer } from 'node:buffer';
import type { RedisClient } from './redis-target.js';
import type { Logger } from 'pino';
import { unpackFrames, type NodeFrame } from './wire.js';

/**
 * Each node reads the messages other nodes route to it from a Redis stream of its own, its inbox.
 * Unlike pub/sub, a stream keeps what its reader has not taken yet: a node that is slow, or
 * restarts within the node timeout, finds its messages waiting instead of being cut off by
 * Redis's output-buffer limit, and senders see how much waits (the byte count kept next to the
 * stream) and hold their publishers' acknowledgements while it is too much.
 */

/**
 * Appends a batch (ARGV[1]) from a node (ARGV[2]) in its run ARGV[3] to an inbox (KEYS[1]) and
 * counts its bytes (KEYS[2]); returns the bytes now waiting. The run tells a sender's messages
 * from those of its earlier runs, which it numbered alike.
 */
export const INBOX_APPEND = `
redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], 'f', ARGV[2], 'r', ARGV[3])
return redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))`;

/**
 * Drops the entries before ARGV[1] from an inbox, which held ARGV[2] bytes; returns the bytes still
 * waiting. An empty inbox resets the count, so a trim that never ran cannot hold senders back for good.
 */
export const INBOX_TRIM = `
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local left = redis.call('DECRBY', KEYS[2], ARGV[2])
if left < 0 or redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 0)
  left = 0
end
return left`;

/** An inbox outlives its node this long, so that a node restarted with its store still finds what was sent to it. */
export const INBOX_KEEP_MS = 24 * 3600 * 1000;

/**
 * Lua: makes sure a node's inbox keys exist (an empty stream, a zero count), so that an expiry set
 * on them as the node goes holds for what is still sent to it after (its routes are kept a while).
 */
export const INBOX_KEYS_LUA = `
local function inboxKeysExist(prefix, node)
  local stream = prefix .. ':inbox:' .. node
  if redis.call('EXISTS', stream) == 0 then redis.call('XADD', stream, 'MAXLEN', 0, '*', 'x', '') end
  redis.call('SET', prefix .. ':inbox-bytes:' .. node, 0, 'NX')
end`;

export interface InboxScripts {
  midgeInboxAppend(stream: string, bytes: string, batch: Buffer, from: string, run: string): Promise<number>;
  midgeInboxTrim(stream: string, bytes: string, minId: string, taken: number): Promise<number>;
}

/** The Redis keys of a node's inbox: the stream, and the count of bytes in it. */
export function inboxKeys(prefix: string, node: string): [stream: string, bytes: string] {
  return [`${prefix}:inbox:${node}`, `${prefix}:inbox-bytes:${node}`];
}

/** What the reader does with each batch: `id` is its entry's id (whose first part is when Redis took it, its clock in ms), `from` the node that sent it, in its run `run`. */
export type InboxConsumer = (batch: Buffer, id: string, from: string, run: string) => void;

/** Asked before each read is handled: undefined to handle it at once, or a promise that settles when it may be. */
export type InboxGate = () => Promise<void> | undefined;

const READ_COUNT = 256;
const BLOCK_MS = 2000;
/**
 * What was handled is trimmed this often, or once this many bytes wait to be: a trim per read
 * would double Redis's work at low rates. A node that dies handles that much again on restart.
 */
const TRIM_EVERY_MS = 50;
const TRIM_BYTES = 1024 * 1024;

/**
 * Reads this node's inbox in order on a connection of its own (XREAD blocks it), and trims what
 * it has handled. A batch is trimmed only after it was routed here, so a node that dies halfway
 * finds the rest on restart: delivery between nodes is at least once.
 */
export class InboxReader {
  private readonly conn: RedisClient;
  private readonly scripts: InboxScripts;
  private readonly keys: [string, string];
  private readonly consume: InboxConsumer;
  private readonly gate: InboxGate;
  private readonly logger: Logger;
  private lastId = '0-0';
  /** the last entry handled: what a trim may drop (lastId runs ahead while a read waits for the gate) */
  private handledId = '0-0';
  private running = false;
  /** the error the last read failed with ('' once reads succeed): an outage is logged once, not every retry */
  private readError = '';
  private loop: Promise<void> | undefined;
  /**
   * Settles when stop() is called. A read is not always ended by disconnecting: a Redis Cluster
   * client can hold a command it was retrying after a failover and never settle it, and the
   * reader must not wait for it.
   */
  private readonly halted: Promise<undefined>;
  private halt: () => void = () => undefined;
  private trimmed: Promise<unknown> = Promise.resolve();
  /** bytes handled and not yet trimmed */
  private untrimmed = 0;
  private trimTimer: NodeJS.Timeout | undefined;
  /** no trim before then (Date.now() ms) */
  private trimsFrom = 0;

  constructor(conn: RedisClient, scripts: InboxScripts, keys: [string, string], consume: InboxConsumer, gate: InboxGate, logger: Logger) {
    this.conn = conn;
    this.scripts = scripts;
    this.keys = keys;
    this.consume = consume;
    this.gate = gate;
    this.logger = logger;
    this.halted = new Promise((resolve) => (this.halt = () => resolve(undefined)));
  }

  /** the id of the last entry handled ('0-0' before the first) */
  get handled(): string {
    return this.handledId;
  }

  /**
   * Starts reading; what is read is not trimmed for `holdTrimsMs`: what was sent to this node's
   * earlier run stays for the sessions of that run taken up here or elsewhere (gone-inboxes.ts).
   */
  start(holdTrimsMs = 0): void {
    this.trimsFrom = Date.now() + holdTrimsMs;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops reading; resolves once the last trim is done, so a restart does not read again what was handled. */
  async stop(): Promise<void> {
    this.running = false;
    this.halt();
    this.conn.disconnect();
    await this.loop;
    this.trim();
    await this.trimmed;
  }

  /** Reads what follows `lastId`; never rejects (a failed read is its error), so a read left pending at stop is harmless. */
  private read(): Promise<InboxReply | Error> {
    return this.conn.xreadBuffer('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.keys[0], this.lastId).then(
      (reply) => reply,
      (err: Error) => err,
    );
  }

  private async run(): Promise<void> {
    let next = this.read();
    while (this.running) {
      const reply = await Promise.race([next, this.halted]);
      if (!this.running) return;
      if (reply instanceof Error) {
        if (reply.message !== this.readError) this.logger.warn({ err: reply.message }, 'cluster: inbox read failed, retrying');
        this.readError = reply.message;
        await new Promise((r) => setTimeout(r, 250));
        next = this.read();
        continue;
      }
      if (this.readError !== '') {
        this.logger.info('cluster: inbox read again');
        this.readError = '';
      }
      const entries = reply?.[0]?.[1] ?? [];
      const last = entries[entries.length - 1];
      if (last === undefined) {
        next = this.read();
        continue;
      }
      this.lastId = last[0].toString();
      // the next read is on its way while this batch is handled: a round trip less per batch
      next = this.read();
      const gate = this.gate();
      if (gate !== undefined) {
        await Promise.race([gate, this.halted]);
        if (!this.running) return;
      }
      let bytes = 0;
      for (const [id, fields] of entries) {
        const batch = fields[1];
        if (batch === undefined) continue;
        bytes += batch.length;
        try {
          this.consume(batch, id.toString(), fields[3]?.toString() ?? '', fields[5]?.toString() ?? '');
        } catch (err) {
          this.logger.warn({ err: (err as Error).message }, 'cluster: unreadable inbox entry ignored');
        }
      }
      this.handledId = this.lastId;
      this.untrimmed += bytes;
      const held = this.trimsFrom - Date.now();
      if (held > 0) this.trimTimer ??= setTimeout(this.trim, held);
      else if (this.untrimmed >= TRIM_BYTES) this.trim();
      else this.trimTimer ??= setTimeout(this.trim, TRIM_EVERY_MS);
    }
  }

  private readonly trim = (): void => {
    clearTimeout(this.trimTimer);
    this.trimTimer = undefined;
    if (this.untrimmed === 0) return;
    const bytes = this.untrimmed;
    this.untrimmed = 0;
    this.trimmed = this.scripts.midgeInboxTrim(this.keys[0], this.keys[1], nextId(this.handledId), bytes).catch((err: Error) => {
      this.logger.warn({ err: err.message }, 'cluster: inbox not trimmed');
    });
  };
}

type InboxReply = Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;

/** A message read from an inbox: its entry's id, the node that sent it and its run, when Redis took it (ms), and its frame. */
export interface InboxMessage {
  readonly id: string;
  readonly from: string;
  readonly run: string;
  readonly at: number;
  readonly frame: Extract<NodeFrame, { kind: 'message' }>;
}

/**
 * Reads up to `count` entries of an inbox after `after` ('': from the start) and up to `end`
 * (inclusive); resolves to the messages in them, in order, the last id read (`after` when none)
 * and how many entries there were. Unreadable entries are passed over.
 */
export async function readInboxPage(cmd: RedisClient, stream: string, after: string, count: number, end = '+'): Promise<{ messages: InboxMessage[]; lastId: string; entries: number }> {
  const batch = await cmd.xrangeBuffer(stream, after === '' ? '-' : nextId(after), end, 'COUNT', count);
  const messages: InboxMessage[] = [];
  let lastId = after;
  for (const [id, fields] of batch) {
    lastId = id.toString();
    const bytes = fields[1];
    if (bytes === undefined) continue;
    const head = { id: lastId, from: fields[3]?.toString() ?? '', run: fields[5]?.toString() ?? '', at: parseInt(lastId, 10) };
    let frames;
    try {
      frames = unpackFrames(bytes);
    } catch {
      continue;
    }
    for (const frame of frames) if (frame.kind === 'message') messages.push({ ...head, frame });
  }
  return { messages, lastId, entries: batch.length };
}

/** Whether stream id `a` ("ms-seq") comes no later than `b`. */
export function idAtMost(a: string, b: string): boolean {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  const ma = Number(a.slice(0, da));
  const mb = Number(b.slice(0, db));
  return ma < mb || (ma === mb && BigInt(a.slice(da + 1)) <= BigInt(b.slice(db + 1)));
}

/** The stream id right after `id` ("ms-seq"): XTRIM MINID keeps it and what follows, XRANGE starts at it. */
export function nextId(id: string): string {
  const dash = id.indexOf('-');
  return `${id.slice(0, dash)}-${BigInt(id.slice(dash + 1)) + 1n}`;
}
