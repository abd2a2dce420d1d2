import type { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClusterHost } from '../broker/cluster-port.js';
import type { ClientInfo } from '../hooks/types.js';
import { unpackWillEntry, type WillEntry } from './wire.js';

/*
 * A node's wills (`wills:<node>`, will-mirror.ts) become orphans when the node is gone: the hash is
 * renamed to `orphan-wills:<member>` and its member (`<ms>|<kind>|<node>`) added to the `orphans`
 * sorted set. Kind `d`: the node was found dead by another's heartbeat; it may only have lost Redis
 * for a while, so its wills wait a grace period and are not sent while it is live again (it takes
 * them back). Kind `g`: the node is gone for sure (it stopped, or started again): they are due.
 */

/** Lua: renames the wills of node `node` to an orphan set of kind `kind`, stamped `now`. */
export const ORPHAN_LUA = `
local function orphan(prefix, node, now, kind)
  local from = prefix .. ':wills:' .. node
  if redis.call('EXISTS', from) == 0 then return end
  local member = now .. '|' .. kind .. '|' .. node
  redis.call('RENAME', from, prefix .. ':orphan-wills:' .. member)
  redis.call('ZADD', prefix .. ':orphans', now, member)
end`;

/** Lua: the orphan sets still holding wills (emptied ones are dropped from the list). */
export const LIST_ORPHANS_LUA = `
local function orphans(prefix)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
    if redis.call('EXISTS', prefix .. ':orphan-wills:' .. m) == 1 then table.insert(out, m)
    else redis.call('ZREM', prefix .. ':orphans', m) end
  end
  return out
end`;

const NOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * A node starting or stopping (ARGV[1] prefix, ARGV[2] node): the wills its previous run or this
 * one answered for are due, and those another node found dead are no longer to be taken back.
 */
export const WILLS_GONE = `${ORPHAN_LUA}${NOW_LUA}
local prefix, node = ARGV[1], ARGV[2]
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local at, kind, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node and kind == 'd' then
    local gone = at .. '|g|' .. node
    if redis.call('EXISTS', prefix .. ':orphan-wills:' .. m) == 1 then
      redis.call('RENAME', prefix .. ':orphan-wills:' .. m, prefix .. ':orphan-wills:' .. gone)
      redis.call('ZADD', prefix .. ':orphans', tonumber(at), gone)
    end
    redis.call('ZREM', prefix .. ':orphans', m)
  end
end
orphan(prefix, node, now, 'g')
return 1`;

/** A node that was found dead but is live (ARGV[2]): it takes back its wills, to write them again. */
export const RECLAIM_WILLS = `
local prefix, node = ARGV[1], ARGV[2]
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local _, kind, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node and kind == 'd' then
    redis.call('DEL', prefix .. ':orphan-wills:' .. m)
    redis.call('ZREM', prefix .. ':orphans', m)
  end
end
return 1`;

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

/**
 * A client connects here whose id node ARGV[2], no longer live, held: its will, kept or orphaned,
 * is taken out ({entry, orphaned at}; orphaned at is -1 for a will not yet orphaned), or nil.
 */
export const CLAIM_WILL = `
local prefix, node, clientId = ARGV[1], ARGV[2], ARGV[3]
local own = prefix .. ':wills:' .. node
local v = redis.call('HGET', own, clientId)
if v then
  redis.call('HDEL', own, clientId)
  return {v, '-1'}
end
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local at, _, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node then
    local key = prefix .. ':orphan-wills:' .. m
    v = redis.call('HGET', key, clientId)
    if v then
      redis.call('HDEL', key, clientId)
      return {v, at}
    end
  end
end
return nil`;

/**
 * The scripts above, as the command connection defines them. Each is given the `orphans` key, so
 * that a Redis Cluster runs it on the master of the cluster's slot, where all its keys are.
 */
export interface OrphanScripts {
  midgeWillsGone(orphansKey: string, prefix: string, node: string): Promise<number>;
  midgeReclaimWills(orphansKey: string, prefix: string, node: string): Promise<number>;
  midgeTakeOrphanWills(orphansKey: string, prefix: string, member: string, ...idAndDelayed: string[]): Promise<number[]>;
  midgeClaimWillBuffer(orphansKey: string, prefix: string, node: string, clientId: string): Promise<[Buffer, Buffer] | null>;
}

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

interface Member {
  at: number;
  kind: 'd' | 'g';
  node: string;
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

function parseMember(member: string): Member | undefined {
  const m = /^(\d+)\|([dg])\|(.*)$/s.exec(member);
  if (m === null) return undefined;
  return { at: Number(m[1]), kind: m[2] as 'd' | 'g', node: m[3] as string };
}

/**
 * Sends the wills of nodes that are gone. Every node schedules every orphan will and the first to
 * take it out of Redis when it is due sends it: a node that dies meanwhile leaves it to the others.
 */
export class OrphanWills {
  /** orphan sets read, by member */
  private readonly read = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly node: OrphanNode;
  /** how long wills of a node found dead wait for it to show it is live after all */
  private readonly graceMs: number;
  private stopped = false;

  constructor(node: OrphanNode, graceMs: number) {
    this.node = node;
    this.graceMs = graceMs;
  }

  /** The orphan sets Redis lists now (each heartbeat): those not read yet are read and scheduled. */
  listed(members: readonly string[]): void {
    if (this.stopped) return;
    for (const m of this.read) if (!members.includes(m)) this.read.delete(m);
    for (const m of members) {
      if (this.read.has(m)) continue;
      this.read.add(m);
      this.load(m).catch((err: Error) => {
        // read again at the next heartbeat
        this.read.delete(m);
        this.node.logger.warn({ err: err.message, orphans: m }, 'cluster: wills of a gone node not read');
      });
    }
  }

  private async load(member: string): Promise<void> {
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
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.send(member, group);
      }, Math.min(Math.max(0, slot - now), 2 ** 31 - 1));
      timer.unref();
      this.timers.add(timer);
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
        this.read.delete(member);
        this.node.logger.warn({ err: (err as Error).message, orphans: member }, 'cluster: wills of a gone node not sent; tried again');
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
  async claimed(node: string, clientId: string, cleanStart: boolean): Promise<void> {
    const found = await this.node.scripts.midgeClaimWillBuffer(`${this.node.prefix}:orphans`, this.node.prefix, node, clientId);
    if (found === null) return;
    const entry = unpackWillEntry(found[0]);
    const orphanedAt = Number(found[1].toString());
    const now = this.node.core.now();
    const due = 'at' in entry.due ? entry.due.at : entry.due.afterS === 0 ? now : orphanedAt < 0 ? Infinity : orphanedAt + entry.due.afterS * 1000;
    if (cleanStart || due <= now) this.publish(clientId, entry);
  }

  private publish(clientId: string, entry: WillEntry): void {
    const client: ClientInfo = { id: clientId, username: entry.username, remoteAddress: '', protocolVersion: 5, connectedAt: 0, keepAlive: 0 };
    try {
      this.node.core.publishWill(client, entry.will);
      this.node.counters.orphanWillsSent++;
    } catch (err) {
      this.node.core.reportFault(err, `sending the will of ${clientId}, left by a gone node`);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
