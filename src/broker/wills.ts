import type { Will } from '../codec/packets.js';
import type { ClientInfo } from '../hooks/types.js';

interface Pending {
  readonly client: ClientInfo;
  readonly will: Will;
  readonly fireAt: number;
  timer: NodeJS.Timeout;
}

/** the longest a Node timer waits: a will due later is waited for in steps */
const LONGEST_WAIT_MS = 2 ** 31 - 1;

/** Told of wills that wait, so that they can outlive a restart. */
export interface WillObserver {
  pending(client: ClientInfo, will: Will, fireAt: number): void;
  done(clientId: string): void;
}

/**
 * Wills waiting out their Will Delay Interval (5.0). A will is published when its delay passes or
 * when its session ends, whichever is first, and never if the client reconnects in time
 * ([MQTT-3.1.3-9]).
 */
export class WillScheduler {
  private readonly pending = new Map<string, Pending>();
  private readonly publish: (client: ClientInfo, will: Will) => void;
  private readonly onFault: (err: unknown, task: string) => void;
  observer: WillObserver | undefined;

  constructor(publish: (client: ClientInfo, will: Will) => void, onFault: (err: unknown, task: string) => void) {
    this.publish = publish;
    this.onFault = onFault;
  }

  get size(): number {
    return this.pending.size;
  }

  schedule(client: ClientInfo, will: Will, delaySeconds: number): void {
    const clientId = client.id;
    this.cancel(clientId);
    if (delaySeconds <= 0) {
      this.publish(client, will);
      return;
    }
    this.scheduleAt(client, will, Date.now() + delaySeconds * 1000);
  }

  /** A will due at an absolute time (also one restored from the store). */
  scheduleAt(client: ClientInfo, will: Will, fireAt: number): void {
    const clientId = client.id;
    this.cancel(clientId);
    this.pending.set(clientId, { client, will, fireAt, timer: this.wait(clientId, fireAt) });
    this.observer?.pending(client, will, fireAt);
  }

  /** The client reconnected to its session in time: the will is not sent. */
  cancel(clientId: string): void {
    const p = this.pending.get(clientId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(clientId);
    this.observer?.done(clientId);
  }

  /** The delay passed or the session ended: publish now if still pending. */
  fire(clientId: string): void {
    const p = this.pending.get(clientId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(clientId);
    this.observer?.done(clientId);
    this.publish(p.client, p.will);
  }

  private wait(clientId: string, fireAt: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.fireDue(clientId), Math.max(0, Math.min(fireAt - Date.now(), LONGEST_WAIT_MS)));
    timer.unref();
    return timer;
  }

  private fireDue(clientId: string): void {
    const p = this.pending.get(clientId);
    // a delay beyond what one timer waits (24.8 days; a Will Delay Interval may be 136 years)
    if (p !== undefined && p.fireAt > Date.now()) {
      p.timer = this.wait(clientId, p.fireAt);
      return;
    }
    try {
      this.fire(clientId);
    } catch (err) {
      this.onFault(err, `the delayed will of ${clientId}`);
    }
  }

  clear(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
