import type { Buffer } from 'node:buffer';
import type { Message } from '../session/message.js';
import type { RoutePlan } from './route-index.js';
import { packBatch, packFrame, packMessage } from './wire.js';

/** forwards waiting on Redis past this are dropped (counted), so a stalled Redis cannot exhaust memory */
const MAX_PENDING_FORWARDS = 100_000;

export interface ForwardCounters {
  /** messages sent to other nodes, one per node */
  forwarded: number;
  /** messages not sent to a node because Redis could not take them */
  forwardFailed: number;
}

/**
 * Messages on their way to other nodes. What a turn routes to a node goes as one PUBLISH (Redis's
 * cost is per command, not per byte), in routing order; a QoS 1/2 publisher's acknowledgement
 * waits for `sent()`.
 */
export class Forwarder {
  private readonly publish: (node: string, bytes: Buffer) => Promise<unknown>;
  private readonly counters: ForwardCounters;
  private pending = 0;
  /** messages routed to other nodes this turn, by node */
  private readonly outbox = new Map<string, Buffer[]>();
  private flushScheduled = false;
  /** settles once this turn's forwards are with Redis */
  private turnSent: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(publish: (node: string, bytes: Buffer) => Promise<unknown>, counters: ForwardCounters) {
    this.publish = publish;
    this.counters = counters;
  }

  /** Queues the message for every node of the plan, with the shared groups each takes it for. */
  send(message: Message, plan: RoutePlan, now: number): void {
    const body = packMessage(message, now);
    // the frame of nodes that take it for their direct subscribers only is the same for all of them
    let plain: Buffer | undefined;
    for (const [node, groups] of plan.nodes) {
      if (this.pending >= MAX_PENDING_FORWARDS) {
        this.counters.forwardFailed++;
        continue;
      }
      this.pending++;
      this.counters.forwarded++;
      let frames = this.outbox.get(node);
      if (frames === undefined) {
        frames = [];
        this.outbox.set(node, frames);
      }
      frames.push(groups.length === 0 ? (plain ??= packFrame({ kind: 'message', body, groups: null })) : packFrame({ kind: 'message', body, groups }));
    }
    if (!this.flushScheduled && this.outbox.size > 0) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Settles once what this turn sent is with Redis (never rejects: a failure is counted). */
  sent(): Promise<void> {
    if (this.turnSent === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.turnSent = { promise, resolve };
    }
    return this.turnSent.promise;
  }

  readonly flush = (): void => {
    this.flushScheduled = false;
    const sends: Array<Promise<unknown>> = [];
    for (const [node, frames] of this.outbox) {
      const n = frames.length;
      sends.push(this.publish(node, n === 1 ? (frames[0] as Buffer) : packBatch(frames)).then(
        () => (this.pending -= n),
        () => {
          this.pending -= n;
          this.counters.forwardFailed += n;
        },
      ));
    }
    this.outbox.clear();
    const turn = this.turnSent;
    this.turnSent = undefined;
    if (turn !== undefined) void Promise.all(sends).then(turn.resolve);
  };
}
