import type { Buffer } from 'node:buffer';
import { deferred, type Deferred } from '../collections/deferred.js';
import type { Message } from '../session/message.js';
import type { RoutePlan } from './route-index.js';
import { packBatch, packFrame, packMessage } from './wire.js';

/** forwards waiting on Redis past this are dropped (counted), so a stalled Redis cannot exhaust memory */
const MAX_PENDING_FORWARDS = 100_000;
/** how often the inboxes of nodes that are behind are looked at again */
const POLL_MS = 20;

export interface ForwardCounters {
  /** messages sent to other nodes, one per node */
  forwarded: number;
  /** messages not sent to a node because Redis could not take them */
  forwardFailed: number;
  /** QoS 0 messages not sent to a node whose inbox was full */
  forwardDropped: number;
  /** turns whose QoS 1/2 acknowledgements waited for a node to catch up */
  backlogWaits: number;
  /** turns of QoS 1/2 messages that fewer Redis replicas than required had in time */
  replicaWaitsFailed: number;
}

/** The other nodes' inboxes, as the forwarder sees them. */
export interface InboxLink {
  /** Appends a batch to a node's inbox; resolves to the bytes waiting there after it. */
  append(node: string, batch: Buffer): Promise<number>;
  /** The bytes waiting in a node's inbox. */
  backlog(node: string): Promise<number>;
  isLive(node: string): boolean;
  /**
   * Settles true once the required Redis replicas have everything appended so far (true at once
   * when none are required), false when fewer had it in time. Undefined: none are required.
   */
  replicated?(): Promise<boolean>;
}

type Turn = Deferred<Error>;

/**
 * Messages on their way to other nodes. What a turn routes to a node goes as one inbox entry
 * (Redis's cost is per command, not per byte), in routing order.
 *
 * Flow control: a node whose inbox holds more than `maxBacklog` bytes is behind. Until it is back
 * under half of that, QoS 0 messages for it are dropped (as a full subscriber queue drops them)
 * and the acknowledgements of QoS 1/2 publishers wait, so that they slow to the pace of the
 * slowest node that takes their messages instead of filling Redis's memory.
 */
export class Forwarder {
  private readonly link: InboxLink;
  private readonly counters: ForwardCounters;
  private readonly maxBacklog: number;
  private pending = 0;
  /** frames for other nodes this turn, by node, with how many of them are messages */
  private readonly outbox = new Map<string, { frames: Buffer[]; messages: number }>();
  private flushScheduled = false;
  /** a QoS 1/2 message of this turn could not be queued for Redis */
  private failedInTurn = false;
  /** settles when this turn's forwards (and every earlier waited-on turn's) are with Redis; made when a QoS 1/2 publisher asks */
  private current: Turn | undefined;
  /** the waited-on turn flushed last, until it settles */
  private last: Turn | undefined;
  /** settles (true: nothing of it failed) when the waited-on turn flushed last and all such before it have */
  private chain: Promise<boolean> | undefined;
  /** nodes that are behind, with the bytes last seen waiting */
  private readonly behind = new Map<string, number>();
  private waiters: Array<{ nodes: string[]; resolve: () => void }> = [];
  /** this turn's writes to Redis other than forwards, which its acknowledgements wait for too: whether each was taken */
  private writes: Array<Promise<boolean>> = [];
  private poll: NodeJS.Timeout | undefined;

  constructor(link: InboxLink, counters: ForwardCounters, maxBacklog: number) {
    this.link = link;
    this.counters = counters;
    this.maxBacklog = maxBacklog;
  }

  /**
   * Queues the message (this node's `n`th forwarded) for every node of the plan, with the shared
   * groups each takes it for (`sharedOnly`: for those alone, not its direct subscribers).
   */
  send(message: Message, plan: RoutePlan, now: number, n: number, sharedOnly = false): void {
    const body = packMessage(message, now);
    // the frame of nodes that take it for their direct subscribers only is the same for all of them
    let plain: Buffer | undefined;
    for (const [node, groups] of plan.nodes) {
      if (message.qos === 0 && this.behind.size > 0 && this.behind.has(node)) {
        this.counters.forwardDropped++;
        continue;
      }
      if (this.pending >= MAX_PENDING_FORWARDS) {
        this.counters.forwardFailed++;
        if (message.qos > 0) this.failedInTurn = true;
        continue;
      }
      this.pending++;
      this.counters.forwarded++;
      const out = this.outboxOf(node);
      out.messages++;
      out.frames.push(groups.length === 0 ? (plain ??= packFrame({ kind: 'message', body, groups: null, n })) : packFrame({ kind: 'message', body, groups, n, sharedOnly }));
    }
    this.scheduleFlush();
  }

  /** Queues a frame other than a message for a node, in order with the messages routed to it. */
  sendFrame(node: string, frame: Buffer): void {
    this.pending++;
    this.outboxOf(node).frames.push(frame);
    this.scheduleFlush();
  }

  /**
   * A write to Redis other than a forward (a QoS 1/2 retained message) that this turn's
   * acknowledgements wait for, and that the replicas waited for must have as well.
   */
  include(write: Promise<unknown>): void {
    this.writes.push(write.then(
      () => true,
      () => false,
    ));
    this.scheduleFlush();
  }

  private outboxOf(node: string): { frames: Buffer[]; messages: number } {
    let out = this.outbox.get(node);
    if (out === undefined) {
      out = { frames: [], messages: 0 };
      this.outbox.set(node, out);
    }
    return out;
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled && (this.outbox.size > 0 || this.failedInTurn || this.writes.length > 0)) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /**
   * Settles once everything forwarded (or included) so far is with Redis and no node it went to
   * is behind; rejects when a QoS 1/2 message of the turn could not be forwarded, or an included
   * write failed. Undefined when nothing is on its way. Turns settle in order, so
   * acknowledgements leave in the order messages came.
   */
  sent(): Promise<void> | undefined {
    if (this.flushScheduled) return (this.current ??= deferred<Error>()).promise;
    return this.last?.promise;
  }

  readonly flush = (): void => {
    this.flushScheduled = false;
    let failed = this.failedInTurn;
    this.failedInTurn = false;
    const sends: Array<Promise<unknown>> = [];
    const nodes: string[] = [];
    for (const [node, { frames, messages }] of this.outbox) {
      const n = frames.length;
      nodes.push(node);
      sends.push(this.link.append(node, n === 1 ? (frames[0] as Buffer) : packBatch(frames)).then(
        (backlog) => {
          this.pending -= n;
          this.observed(node, backlog);
        },
        () => {
          this.pending -= n;
          this.counters.forwardFailed += messages;
          failed = true;
        },
      ));
    }
    this.outbox.clear();
    let reason = 'a message could not be forwarded to another node';
    if (this.writes.length > 0) {
      for (const write of this.writes) {
        sends.push(write.then((taken) => {
          if (taken) return;
          failed = true;
          reason = 'a retained message could not be shared with the other nodes';
        }));
      }
      this.writes = [];
    }
    const turn = this.current;
    this.current = undefined;
    // no acknowledgement waits on this turn (QoS 0 only): nothing later has to be ordered after it
    if (turn === undefined) return;
    // a publisher is acknowledged once its messages would survive a Redis failover, when asked to
    const own = Promise.all(sends)
      .then(() => (failed || this.link.replicated === undefined ? true : this.link.replicated()))
      .then((replicated) => {
        if (!replicated) {
          this.counters.replicaWaitsFailed++;
          failed = true;
          reason = 'fewer Redis replicas than clusterWaitReplicas had it in time';
        }
        return this.whenCaughtUp(nodes);
      });
    const before = this.chain;
    const chain = (before === undefined ? own : Promise.all([before, own])).then(() => !failed);
    this.chain = chain;
    this.last = turn;
    void chain.then((ok) => {
      if (this.chain === chain) this.chain = undefined;
      if (this.last === turn) this.last = undefined;
      if (ok) turn.resolve();
      else turn.reject(new Error(`cluster: ${reason}`));
    });
  };

  /** Lets everything waiting go (the node is leaving the cluster). */
  stop(): void {
    clearTimeout(this.poll);
    this.poll = undefined;
    this.behind.clear();
    this.wake();
  }

  private observed(node: string, backlog: number): void {
    // a node gone whose routes are kept a while reads nothing: its publishers are not held for it
    if (backlog > this.maxBacklog && this.link.isLive(node)) {
      this.behind.set(node, backlog);
      this.poll ??= setTimeout(this.recheck, POLL_MS);
    } else if (backlog <= this.maxBacklog / 2 && this.behind.delete(node)) {
      this.wake();
    }
  }

  private whenCaughtUp(nodes: string[]): Promise<void> | undefined {
    if (this.behind.size === 0 || !nodes.some((n) => this.behind.has(n))) return undefined;
    this.counters.backlogWaits++;
    return new Promise((resolve) => this.waiters.push({ nodes, resolve }));
  }

  private readonly recheck = (): void => {
    const nodes = [...this.behind.keys()];
    void Promise.all(
      nodes.map((node) =>
        this.link.isLive(node)
          ? this.link.backlog(node).then(
              (b) => this.observed(node, b),
              // Redis cannot say: the node stays behind until it can
              () => undefined,
            )
          : // a node that left reads nothing more: waiting for it would hold its publishers for good
            void this.behind.delete(node),
      ),
    ).then(() => {
      this.poll = undefined;
      this.wake();
      if (this.behind.size > 0) this.poll = setTimeout(this.recheck, POLL_MS);
    });
  };

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.nodes.some((n) => this.behind.has(n))) still.push(w);
      else w.resolve();
    }
    this.waiters = still;
  }
}
