import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import { absentClient } from '../hooks/absent-client.js';
import { ORPHAN_KEEP_MS, parseMember, type OrphanScripts } from './orphans.js';
import { unpackWillEntry, type WillEntry } from './wire.js';

/**
 * Takes orphan wills to send (ARGV: prefix, member, then client id and delayed flag for each):
 * for each, 1 once, to one node, and never while its node is live again (kind d) or, for a
 * delayed will, once its client is held by another node (it came back within the delay,
 * [MQTT-3.1.3-9]).
 */
export const TAKE_ORPHAN_WILLS = `
local prefix, member = ARGV[1], ARGV[2]
local _, kind, node = string.match(member, '^(%d+)|(%a)|(.*)$')
local out = {}
if kind == 'd' and redis.call('ZSCORE', prefix .. ':nodes', node) then return out end
local key = prefix .. ':orphan-wills:' .. member
for i = 3, #ARGV, 2 do
  local clientId = ARGV[i]
  local taken = redis.call('HDEL', key, clientId)
  if taken == 1 and ARGV[i + 1] == '1' then
    local holder = redis.call('GET', prefix .. ':client:' .. clientId)
    if holder and holder ~= node then taken = 0 end
  end
  table.insert(out, taken)
end
return out`;

/** What the orphan wills need of their node. */
export interface OrphanNode {
  readonly core: Pick<ClusterHost, 'now' | 'publishWill' | 'reportFault'>;
  readonly scripts: OrphanScripts;
  readonly logger: Logger;
  readonly prefix: string;
  readonly counters: { orphanWillsSent: number };
  /** every field of a hash, read a slice at a time: a dead node's wills may be many, and Redis serves everyone else meanwhile */
  scanHash(key: string, each: (field: string, value: Buffer) => void): Promise<void>;
}

interface Orphan {
  clientId: string;
  entry: WillEntry;
  /** sent only if its client has not connected to another node meanwhile */
  delayed: boolean;
}

/** wills due within this much of each other are taken from Redis together */
const DUE_STEP_MS = 100;
/** wills taken from Redis per script call: a longer call would hold up every other client of Redis */
const TAKE_BATCH = 500;

/**
 * Sends the wills of nodes that are gone. Every node schedules every orphan will and the first to
 * take it out of Redis when it is due sends it: a node that dies meanwhile leaves it to the others.
 */
export class OrphanWills {
  /** orphan sets read, by member, with the timers of the wills they hold */
  private readonly read = new Map<string, Set<NodeJS.Timeout>>();
  /** takes from Redis under way: a node stopping waits for them, then sends what they took */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly node: OrphanNode;
  /** how long wills of a node found dead wait for it to show it is live after all */
  private readonly graceMs: number;
  private stopped = false;
  private members: readonly string[] = [];

  constructor(node: OrphanNode, graceMs: number) {
    this.node = node;
    this.graceMs = graceMs;
  }

  /** The orphan sets Redis listed last: whether any is of `node`'s. */
  hasOrphansOf(node: string): boolean {
    return this.members.some((m) => parseMember(m)?.node === node);
  }

  /**
   * The orphan sets Redis lists now (each heartbeat): those not read yet are read and scheduled,
   * once `load` (the node has joined: a will sent before would reach its own subscribers only).
   */
  listed(members: readonly string[], load: boolean): void {
    this.members = members;
    if (this.stopped || !load) return;
    for (const m of this.read.keys()) if (!members.includes(m)) this.forget(m);
    for (const m of members) {
      if (this.read.has(m)) continue;
      const timers = new Set<NodeJS.Timeout>();
      this.read.set(m, timers);
      this.load(m, timers).catch((err: Error) => {
        // read again at the next heartbeat
        this.forget(m);
        this.node.logger.warn({ err: err.message, orphans: m }, 'cluster: wills of a gone node not read');
      });
    }
  }

  /** An orphan set to read again at the next heartbeat (or gone): its timers go with it. */
  private forget(member: string): void {
    const timers = this.read.get(member);
    if (timers === undefined) return;
    for (const t of timers) clearTimeout(t);
    this.read.delete(member);
  }

  private async load(member: string, timers: Set<NodeJS.Timeout>): Promise<void> {
    const parsed = parseMember(member);
    if (parsed === undefined) return;
    const earliest = parsed.kind === 'd' ? parsed.at + this.graceMs : 0;
    // a node that dies with 100,000 clients leaves as many wills: one timer per tenth of a second they fall due in
    const byDue = new Map<number, Orphan[]>();
    await this.node.scanHash(`${this.node.prefix}:orphan-wills:${member}`, (clientId, bytes) => {
      let entry: WillEntry;
      try {
        entry = unpackWillEntry(bytes);
      } catch {
        return;
      }
      const due = Math.max('at' in entry.due ? entry.due.at : parsed.at + entry.due.afterS * 1000, earliest);
      const slot = Math.ceil(due / DUE_STEP_MS) * DUE_STEP_MS;
      const delayed = 'at' in entry.due || entry.due.afterS > 0;
      let group = byDue.get(slot);
      if (group === undefined) byDue.set(slot, (group = []));
      group.push({ clientId, entry, delayed });
    });
    const now = this.node.core.now();
    for (const [slot, group] of byDue) {
      // past the 7 days Redis keeps them for, they will be gone
      if (slot > parsed.at + ORPHAN_KEEP_MS || this.stopped || this.read.get(member) !== timers) continue;
      const timer = setTimeout(() => {
        timers.delete(timer);
        const sending = this.send(member, group);
        this.inFlight.add(sending);
        void sending.finally(() => this.inFlight.delete(sending));
      }, Math.max(0, slot - now));
      timer.unref();
      timers.add(timer);
    }
  }

  private async send(member: string, group: Orphan[]): Promise<void> {
    for (let i = 0; i < group.length && !this.stopped; i += TAKE_BATCH) {
      const batch = group.slice(i, i + TAKE_BATCH);
      const args: string[] = [];
      for (const o of batch) args.push(o.clientId, o.delayed ? '1' : '0');
      let taken: number[];
      try {
        taken = await this.node.scripts.midgeTakeOrphanWills(`${this.node.prefix}:orphans`, this.node.prefix, member, ...args);
      } catch (err) {
        // they stay in Redis: read again at the next heartbeat, here or by another node
        this.forget(member);
        this.node.logger.warn({ err: (err as Error).message, orphans: member }, 'cluster: wills of a gone node not sent; tried again');
        return;
      }
      if (taken.length === 0) {
        // its node is live again and has not taken them back yet: looked at again at the next heartbeat
        this.forget(member);
        return;
      }
      batch.forEach((o, k) => {
        if (taken[k] === 1) this.publish(o.clientId, o.entry);
      });
    }
  }

  /**
   * A client connects here whose id a node no longer live held: its will, if that node left one,
   * goes now when it was due already (at the node's death, or its delay has run out) or when the
   * client starts clean (its old session ends, [MQTT-3.1.3-9]); it is dropped when the client is
   * back within its delay.
   */
  async claimed(node: string, clientId: string, cleanStart: boolean, orphansOnly: boolean): Promise<void> {
    const found = await this.node.scripts.midgeClaimOrphanedBuffer(`${this.node.prefix}:orphans`, this.node.prefix, 'wills', node, clientId, orphansOnly ? '1' : '0');
    if (found === null) return;
    const entry = unpackWillEntry(found[0]);
    const orphanedAt = Number(found[1].toString());
    const now = this.node.core.now();
    const due = 'at' in entry.due ? entry.due.at : entry.due.afterS === 0 ? now : orphanedAt < 0 ? Infinity : orphanedAt + entry.due.afterS * 1000;
    if (cleanStart || due <= now) this.publish(clientId, entry);
  }

  private publish(clientId: string, entry: WillEntry): void {
    try {
      // counted once its client's ACL let it through
      const sent = this.node.core.publishWill(absentClient(clientId, entry.username), entry.will);
      if (sent === true) this.node.counters.orphanWillsSent++;
      else if (sent !== false) void sent.then((ok) => void (ok && this.node.counters.orphanWillsSent++), () => undefined);
    } catch (err) {
      this.node.core.reportFault(err, `sending the will of ${clientId}, left by a gone node`);
    }
  }

  /** Stops taking wills; resolves once those already taken are sent (while the node is still in the cluster). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const m of [...this.read.keys()]) this.forget(m);
    await Promise.allSettled([...this.inFlight]);
  }
}
