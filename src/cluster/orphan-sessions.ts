import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import { absentClient } from '../hooks/absent-client.js';
import { parseMember, type OrphanScripts } from './orphans.js';
import { adoptOffline } from './session-handover.js';
import { unpackSessionEntry, unpackWillEntry, type SessionEntry } from './wire.js';

/** What the orphan sessions need of their node. */
export interface OrphanSessionNode {
  readonly nodeId: string;
  readonly core: ClusterHost;
  readonly scripts: OrphanScripts;
  readonly logger: Logger;
  readonly prefix: string;
  readonly counters: { orphanSessionsAdopted: number };
  scanHash(key: string, each: (field: string, value: Buffer) => void): Promise<void>;
  /** a session taken up here: what the other nodes keep of it is written */
  sessionChanged(clientId: string): void;
  /** a session was taken from `node`: what waits for it in that node's inbox is delivered */
  tookFrom(node: string, clientId: string): Promise<void>;
}

/** sessions taken from Redis per script call */
const TAKE_BATCH = 500;

/**
 * Takes up the sessions of nodes that are gone and whose clients have not come back: they wait
 * here offline, so that what is published for them meanwhile is kept (and what waits for them in
 * their node's inbox, gone-inboxes.ts; not what their node held: that is in its store, and follows
 * if it comes back), with their wills. A node found dead leaves
 * them for the grace period (it may only have lost Redis); one that stopped, a while longer (it
 * may be restarting, and take them back).
 */
export class OrphanSessions {
  /** orphan sets seen, by member, with the timer of their taking up */
  private readonly read = new Map<string, NodeJS.Timeout | undefined>();
  /** takes from Redis under way: a node stopping waits for them, then keeps what they took */
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  /** the wills of sessions taken back as this node starts, scheduled once it has joined (before, a will due would reach its own subscribers only) */
  private heldWills: Array<() => void> | undefined;

  constructor(
    private readonly node: OrphanSessionNode,
    private readonly graceMs: number,
    private readonly returnWaitMs: number,
  ) {}

  /** The orphan sets Redis lists now: each not seen yet is taken up once its wait is over. */
  listed(members: readonly string[]): void {
    if (this.stopped) return;
    for (const m of this.read.keys()) if (!members.includes(m)) this.forget(m);
    for (const m of members) {
      if (this.read.has(m)) continue;
      const parsed = parseMember(m);
      if (parsed === undefined) continue;
      const due = parsed.at + (parsed.kind === 'd' ? this.graceMs : this.returnWaitMs);
      const timer = setTimeout(() => {
        this.read.set(m, undefined);
        const taking = this.take(m, parsed.at, parsed.node).catch((err: Error) => {
          // looked at again at the next heartbeat, here or by another node
          this.forget(m);
          this.node.logger.warn({ err: err.message, orphans: m }, 'cluster: sessions of a gone node not taken up');
        });
        this.inFlight.add(taking);
        void taking.finally(() => this.inFlight.delete(taking));
      }, Math.max(0, due - this.node.core.now()));
      timer.unref();
      this.read.set(m, timer);
    }
  }

  /**
   * This node's own orphan sets, left by its earlier runs, are taken up at once (their node is
   * back), before it announces its routes: what is published for those sessions from then on is
   * routed here and waits for their clients, instead of reaching no one until the wait for their
   * node's return is over.
   */
  async takeBack(members: readonly string[]): Promise<void> {
    this.heldWills ??= [];
    for (const m of members) {
      const parsed = parseMember(m);
      if (parsed === undefined || parsed.node !== this.node.nodeId || this.read.has(m)) continue;
      this.read.set(m, undefined);
      await this.take(m, parsed.at, parsed.node).catch((err: Error) => {
        this.forget(m);
        this.node.logger.warn({ err: err.message, orphans: m }, 'cluster: sessions of this node\'s earlier run not taken back; taken up after the wait');
      });
    }
  }

  /** This node has joined: the wills of the sessions it took back are scheduled. */
  releaseWills(): void {
    const held = this.heldWills ?? [];
    this.heldWills = undefined;
    for (const schedule of held) schedule();
  }

  /** An orphan set to look at again at the next heartbeat (or gone). */
  private forget(member: string): void {
    const timer = this.read.get(member);
    if (timer !== undefined) clearTimeout(timer);
    this.read.delete(member);
  }

  private async take(member: string, wentAt: number, node: string): Promise<void> {
    const entries = new Map<string, Buffer>();
    await this.node.scanHash(`${this.node.prefix}:orphan-sessions:${member}`, (id, bytes) => entries.set(id, bytes));
    const ids = [...entries.keys()];
    for (let i = 0; i < ids.length && !this.stopped; i += TAKE_BATCH) {
      const taken = await this.node.scripts.midgeTakeOrphanSessionsBuffer(`${this.node.prefix}:orphans`, this.node.prefix, member, this.node.nodeId, ...ids.slice(i, i + TAKE_BATCH));
      // none taken: their node may be live again without having taken them back yet (or their
      // clients are elsewhere): looked at again at the next heartbeat
      if (taken.length === 0) this.forget(member);
      for (let k = 0; k + 1 < taken.length; k += 2) {
        const id = (taken[k] as Buffer).toString();
        try {
          this.adopt(id, unpackSessionEntry(entries.get(id) as Buffer), taken[k + 1] as Buffer, wentAt, node);
        } catch (err) {
          this.node.core.reportFault(err, `taking up the session of ${id}, left by a gone node`);
        }
      }
    }
  }

  private adopt(clientId: string, entry: SessionEntry, willBytes: Buffer, wentAt: number, node: string): void {
    const { core } = this.node;
    const adopted = adoptOffline(core, clientId, entry, wentAt);
    if (adopted === 'adopted') {
      this.node.counters.orphanSessionsAdopted++;
      this.node.sessionChanged(clientId);
      // errors are the reader's to log
      void this.node.tookFrom(node, clientId);
    }
    // a session of that client id is here already: the client is back, and its will is not sent
    if (willBytes.length === 0 || adopted === 'present') return;
    const will = unpackWillEntry(willBytes);
    const client = absentClient(clientId, will.username);
    const due = 'at' in will.due ? will.due.at : wentAt + will.due.afterS * 1000;
    // the session it waited on has expired: the will goes now, as a session's end sends it
    const schedule = (): void => core.wills.scheduleAt(client, will.will, adopted === 'adopted' ? due : core.now());
    if (this.heldWills === undefined) schedule();
    else this.heldWills.push(schedule);
  }

  /** Stops taking sessions up; resolves once those already taken are kept here (while the node is still in the cluster). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const m of [...this.read.keys()]) this.forget(m);
    await Promise.allSettled([...this.inFlight]);
  }
}
