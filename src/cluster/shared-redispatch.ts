import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { Message } from '../session/message.js';
import { INBOX_KEEP_MS, inboxKeys, readInboxPage } from './inbox.js';
import type { RedisClient } from './redis-target.js';
import { unpackMessage } from './wire.js';

/** What redispatching a gone node's shared-subscription messages needs of the node. */
export interface RedispatchNode {
  readonly nodeId: string;
  readonly prefix: string;
  readonly core: ClusterHost;
  readonly cmd: RedisClient;
  readonly logger: Logger;
  readonly counters: { sharedRedispatched: number };
  isLive(node: string): boolean;
  /** gives `message` to the shared groups `groups` alone (`$share/{group}/{filter}`): a member here, or a node with members */
  redispatch(message: Message, groups: readonly string[]): void;
}

/** One node redispatches a gone node's messages: it holds this lock (and renews it) meanwhile. */
const LOCK_MS = 10_000;
const POLL_MS = 200;
// entries are batches of a turn's messages: a read of many would hold up the command connection
const READ_COUNT = 100;
/** Reading goes on this long after the node went: senders that had not heard of it yet were still sending it messages. */
const FOLLOW_MS = 2000;

/**
 * The key naming the last entry of a node's inbox whose shared-subscription messages another node
 * redispatched: the node, back, gives those entries to its direct subscribers only.
 */
export function redispatchedKey(prefix: string, node: string): string {
  return `${prefix}:redispatched:${node}`;
}

/**
 * Messages for shared subscriptions that other nodes routed to a node that then died or stopped,
 * read from its inbox and given to the groups' other members. Each such message went to that
 * node alone for its groups, so no other member has it; the node's shares of the groups go to
 * the other members as soon as it is known gone, and what was waiting in its inbox for them, or
 * sent there before its senders heard, would otherwise reach no one.
 *
 * One node does it for each gone node (a lock in Redis). It reads the inbox from the start (what
 * the node handled is trimmed every 50 ms, so little is given twice) and on for FOLLOW_MS, and
 * records how far it went: the node, if it comes back (it was only stalled, or restarts with its
 * store within a day), does not give those messages to its own group members again. Between
 * nodes, delivery is at least once: the last page before a failure may go twice.
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

  private async run(node: string): Promise<void> {
    const { cmd, prefix, nodeId } = this.node;
    const lock = `${prefix}:redispatch-lock:${node}`;
    if ((await cmd.set(lock, nodeId, 'PX', LOCK_MS, 'NX')) !== 'OK') return;
    const began = this.node.core.now();
    let lastId = '';
    try {
      for (;;) {
        lastId = await this.readFrom(node, lastId);
        await cmd.pexpire(lock, LOCK_MS);
        const done = this.stopped || this.node.isLive(node) || this.node.core.now() - began >= FOLLOW_MS;
        if (done) return;
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    } finally {
      await cmd.del(lock).catch(() => undefined);
    }
  }

  /** Redispatches what the inbox holds after `lastId` ('' : from the start); resolves to the last id read. */
  private async readFrom(node: string, after: string): Promise<string> {
    const { cmd, prefix, core } = this.node;
    const key = inboxKeys(prefix, node)[0];
    let lastId = after;
    for (;;) {
      const page = await readInboxPage(cmd, key, lastId, READ_COUNT);
      lastId = page.lastId;
      for (const { at, frame } of page.messages) {
        if (frame.groups === null || frame.groups.length === 0) continue;
        try {
          // its expiry counts from when Redis took it
          this.node.redispatch(unpackMessage(frame.body, Math.min(core.now(), at)), frame.groups);
          this.node.counters.sharedRedispatched++;
        } catch (err) {
          core.reportFault(err, `redispatching a shared-subscription message left in the inbox of node ${node}`);
        }
      }
      // recorded after the messages went: the node, back, may give the last page again, not miss it
      if (page.entries > 0) await cmd.set(redispatchedKey(prefix, node), lastId, 'PX', INBOX_KEEP_MS);
      if (page.entries < READ_COUNT || this.stopped) return lastId;
    }
  }
}
