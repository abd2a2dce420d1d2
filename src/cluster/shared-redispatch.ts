import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { Message } from '../session/message.js';
import { INBOX_KEEP_MS, inboxKeys, readInboxPage, type InboxMessage } from './inbox.js';
import type { RedisClient } from './redis-target.js';
import { unpackMessage } from './wire.js';

/** Renews a lock (KEYS[1]) for ARGV[2] ms if this node (ARGV[1]) still holds it; returns whether it does. */
export const RENEW_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

export interface LockScripts {
  midgeRenewLock(key: string, nodeId: string, ms: number): Promise<number>;
  /** deletes the key if this node holds it (client-ownership.ts RELEASE) */
  midgeRelease(key: string, nodeId: string): Promise<number>;
}

/** What redispatching a gone node's shared-subscription messages needs of the node. */
export interface RedispatchNode {
  readonly nodeId: string;
  readonly prefix: string;
  readonly core: ClusterHost;
  readonly cmd: RedisClient;
  readonly scripts: LockScripts;
  readonly logger: Logger;
  readonly counters: { sharedRedispatched: number };
  isLive(node: string): boolean;
  /**
   * gives `message` to the shared groups `groups` alone (`$share/{group}/{filter}`): a member
   * here, or a node with members; says whether every group had a member to take it
   */
  redispatch(message: Message, groups: readonly string[]): boolean;
  /** settles once what was forwarded so far is in the other nodes' inboxes; rejects when some could not be */
  sent(): Promise<void> | undefined;
}

/** One node redispatches a gone node's messages, or the node reads how far that went: it holds this lock meanwhile. */
const LOCK_MS = 10_000;
const POLL_MS = 200;
// entries are batches of a turn's messages: a read of many would hold up the command connection
const READ_COUNT = 100;
/** Reading goes on this long after the node went: senders that had not heard of it yet were still sending it messages. */
const FOLLOW_MS = 2000;
/** How long a node coming back waits for a redispatch of its messages to end before it reads how far it went. */
const BACK_WAIT_MS = 10_000;

/**
 * The key naming the last entry of a node's inbox whose shared-subscription messages another node
 * redispatched: the node, back, gives those entries to its direct subscribers only.
 */
export function redispatchedKey(prefix: string, node: string): string {
  return `${prefix}:redispatched:${node}`;
}

function lockKey(prefix: string, node: string): string {
  return `${prefix}:redispatch-lock:${node}`;
}

/**
 * Messages for shared subscriptions that other nodes routed to a node that then died or stopped,
 * read from its inbox and given to the groups' other members. Each such message went to that
 * node alone for its groups, so no other member has it; the node's shares of the groups go to
 * the other members as soon as it is known gone, and what was waiting in its inbox for them, or
 * sent there before its senders heard, would otherwise reach no one.
 *
 * One node does it for each gone node, holding a lock in Redis. It reads the inbox from where an
 * earlier redispatch ended (or the start: what the node handled is trimmed every 50 ms, so little
 * is given twice), and on for FOLLOW_MS, and records how far every message reached a member of
 * its groups once the other nodes have them. The node, if it comes back (it was only stalled, or
 * restarts with its store within a day), waits for the lock, reads that, and does not give those
 * messages to its own group members again; what had no other member to go to is still its own.
 * Between nodes, delivery is at least once: the last page before a failure may go twice.
 */
export class SharedRedispatch {
  private readonly node: RedispatchNode;
  /** gone nodes whose inbox is being read here */
  private readonly active = new Set<string>();
  private stopped = false;

  constructor(node: RedispatchNode) {
    this.node = node;
  }

  /** A node went (it stopped, or was found dead): its shared-subscription messages are redispatched, here or by another node. */
  gone(node: string): void {
    if (this.stopped || node === this.node.nodeId || this.active.has(node)) return;
    this.active.add(node);
    void this.run(node)
      .catch((err: Error) => this.node.logger.warn({ err: err.message, node }, 'cluster: shared-subscription messages of a gone node not redispatched'))
      .finally(() => this.active.delete(node));
  }

  stop(): void {
    this.stopped = true;
  }

  /**
   * This node is back (started, or readmitted): resolves to the last entry of its inbox whose
   * shared-subscription messages another node gave the groups, once no node is doing so.
   */
  async doneThrough(): Promise<string | undefined> {
    const { cmd, prefix, nodeId, scripts } = this.node;
    const lock = lockKey(prefix, nodeId);
    // a redispatch under way sees this node live and ends after its page
    for (const end = this.node.core.now() + BACK_WAIT_MS; this.node.core.now() < end; await delay(POLL_MS)) {
      if ((await cmd.set(lock, nodeId, 'PX', LOCK_MS, 'NX')) === 'OK') break;
    }
    try {
      return (await cmd.get(redispatchedKey(prefix, nodeId))) ?? undefined;
    } finally {
      await scripts.midgeRelease(lock, nodeId).catch(() => undefined);
    }
  }

  private async run(node: string): Promise<void> {
    const { cmd, prefix, nodeId, scripts } = this.node;
    const lock = lockKey(prefix, node);
    if ((await cmd.set(lock, nodeId, 'PX', LOCK_MS, 'NX')) !== 'OK') return;
    try {
      // back already (a late 'down'): it reads its inbox itself
      if (this.node.isLive(node)) return;
      const began = this.node.core.now();
      let lastId = (await cmd.get(redispatchedKey(prefix, node))) ?? '';
      // every message so far reached a member of its groups: how far is recorded
      let covered = true;
      for (;;) {
        const page = await readInboxPage(cmd, inboxKeys(prefix, node)[0], lastId, READ_COUNT);
        if (this.ended(node)) return;
        // the last entry all of whose messages reached their groups, while all before it did too
        let through: string | undefined;
        let entry: string | undefined;
        for (const m of page.messages) {
          if (covered && entry !== undefined && m.id !== entry) through = entry;
          entry = m.id;
          // what had no member to go to stays the node's, should it come back; what follows is still given (at least once)
          if (!this.redispatch(node, m)) covered = false;
        }
        if (covered && page.lastId !== lastId) through = page.lastId;
        lastId = page.lastId;
        // recorded once the messages are in the other nodes' inboxes: the node, back, may give the last page again, not miss it
        await this.node.sent();
        if (this.ended(node)) return;
        if (through !== undefined) await cmd.set(redispatchedKey(prefix, node), through, 'PX', INBOX_KEEP_MS);
        if ((await scripts.midgeRenewLock(lock, nodeId, LOCK_MS)) === 0) return;
        if (page.entries === READ_COUNT) continue;
        if (this.node.core.now() - began >= FOLLOW_MS) return;
        await delay(POLL_MS);
      }
    } finally {
      await scripts.midgeRelease(lock, nodeId).catch(() => undefined);
    }
  }

  /** Whether reading is to stop: this node stops, or the gone node is back and reads its inbox itself. */
  private ended(node: string): boolean {
    return this.stopped || this.node.isLive(node);
  }

  /** Redispatches a message that was for shared groups; returns whether each of them had a member to take it (true for one that was for none). */
  private redispatch(node: string, m: InboxMessage): boolean {
    const { core } = this.node;
    const groups = m.frame.groups;
    if (groups === null || groups.length === 0) return true;
    try {
      // its expiry counts from when Redis took it
      const covered = this.node.redispatch(unpackMessage(m.frame.body, Math.min(core.now(), m.at)), groups);
      this.node.counters.sharedRedispatched++;
      return covered;
    } catch (err) {
      core.reportFault(err, `redispatching a shared-subscription message left in the inbox of node ${node}`);
      return true;
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
