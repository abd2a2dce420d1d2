import { INBOX_KEYS_LUA } from './inbox.js';
/*
 * What a node answers for in Redis, kept by it for the others should it die: its clients' wills
 * (`wills:<node>`, will-mirror.ts) and its persistent sessions (`sessions:<node>`: subscriptions and
 * expiry). When the node is gone, both become orphans: renamed to `orphan-wills:<member>` and
 * `orphan-sessions:<member>`, the member (`<ms>|<kind>|<node>`) added to the `orphans` sorted set.
 * Kind `d`: the node was found dead by another's heartbeat; it may only have lost Redis for a
 * while, so what it left waits a grace period and is not taken while it is live again (it takes it
 * back). Kind `g`: the node is gone for sure (it stopped, or started again).
 *
 * Orphan wills are sent when due (orphan-wills.ts). An orphan session is taken up by the node its
 * client connects to next (client-ownership.ts), by its own node when that comes back, or, if
 * neither happens first, by any node, to keep it offline with its will (orphan-sessions.ts).
 */

/** what an orphan set may hold, each in a hash of its own */
const KINDS_LUA = `local kinds = {'wills', 'sessions'}`;

/**
 * How long what a gone node left is kept for: a client that comes back later starts a new session
 * (its node, back with its store, still has it), and Redis does not fill with the sessions of
 * devices that never return.
 */
export const ORPHAN_KEEP_MS = 7 * 24 * 3600 * 1000;

/** Lua: renames what node `node` left to orphan sets of kind `kind`, stamped `now`; returns whether it left sessions. */
export const ORPHAN_LUA = `
${KINDS_LUA}
local function orphan(prefix, node, now, kind)
  local member = now .. '|' .. kind .. '|' .. node
  local any = false
  local sessions = false
  for _, what in ipairs(kinds) do
    local from = prefix .. ':' .. what .. ':' .. node
    if redis.call('EXISTS', from) == 1 then
      redis.call('RENAME', from, prefix .. ':orphan-' .. what .. ':' .. member)
      redis.call('PEXPIRE', prefix .. ':orphan-' .. what .. ':' .. member, ${ORPHAN_KEEP_MS})
      any = true
      if what == 'sessions' then sessions = true end
    end
  end
  if any then redis.call('ZADD', prefix .. ':orphans', now, member) end
  return sessions
end`;

/** Lua: the orphan sets still holding something (emptied ones are dropped from the list). */
export const LIST_ORPHANS_LUA = `
local function orphans(prefix)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
    if redis.call('EXISTS', prefix .. ':orphan-wills:' .. m, prefix .. ':orphan-sessions:' .. m) > 0 then table.insert(out, m)
    else redis.call('ZREM', prefix .. ':orphans', m) end
  end
  return out
end`;

const NOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Redis's clock now, in ms, as the master holding the key given (KEYS[1]) tells it: in a Redis
 * Cluster the one whose streams' entry ids the cluster's keys get (a plain TIME goes to any master).
 */
export const REDIS_NOW = `${NOW_LUA}
return now`;

/**
 * A node starting or stopping (ARGV[1] prefix, ARGV[2] node): what its previous run or this one
 * answered for is left to the cluster, and what another node found dead is no longer to be taken
 * back. (Starting, it has first withdrawn the sessions it brought back from its store.) Returns 1
 * when it left sessions, now or when it was found dead.
 */
export const NODE_GONE = `${ORPHAN_LUA}${NOW_LUA}${INBOX_KEYS_LUA}
local prefix, node = ARGV[1], ARGV[2]
local left = false
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local at, kind, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node and kind == 'd' then
    local gone = at .. '|g|' .. node
    for _, what in ipairs(kinds) do
      if redis.call('EXISTS', prefix .. ':orphan-' .. what .. ':' .. m) == 1 then
        redis.call('RENAME', prefix .. ':orphan-' .. what .. ':' .. m, prefix .. ':orphan-' .. what .. ':' .. gone)
        if what == 'sessions' then left = true end
      end
    end
    redis.call('ZREM', prefix .. ':orphans', m)
    redis.call('ZADD', prefix .. ':orphans', tonumber(at), gone)
  end
end
if orphan(prefix, node, now, 'g') then left = true end
if left then
  inboxKeysExist(prefix, node)
  return 1
end
return 0`;

/** A node that was found dead but is live (ARGV[2]): it takes back what it left, to write it again. */
export const RECLAIM = `${KINDS_LUA}
local prefix, node = ARGV[1], ARGV[2]
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local _, kind, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node and kind == 'd' then
    for _, what in ipairs(kinds) do redis.call('DEL', prefix .. ':orphan-' .. what .. ':' .. m) end
    redis.call('ZREM', prefix .. ':orphans', m)
  end
end
return 1`;

/**
 * A client connects here whose id node ARGV[3], no longer live, held: its will or session (ARGV[2]
 * 'wills' or 'sessions'), kept or orphaned, is taken out: {entry, orphaned at} (orphaned at is -1
 * when not orphaned yet), or nil. With ARGV[5] '1' only the orphan sets of kind g are looked in: the
 * node is this one, and what it keeps now, or takes back, is its own business.
 */
export const CLAIM_ORPHANED = `
local prefix, what, node, clientId = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local own = prefix .. ':' .. what .. ':' .. node
local v = ARGV[5] ~= '1' and redis.call('HGET', own, clientId)
if v then
  redis.call('HDEL', own, clientId)
  return {v, '-1'}
end
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local at, kind, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  -- this node's own sets of kind d are still this run's (it is taking them back)
  if owner == node and (ARGV[5] ~= '1' or kind == 'g') then
    local key = prefix .. ':orphan-' .. what .. ':' .. m
    v = redis.call('HGET', key, clientId)
    if v then
      redis.call('HDEL', key, clientId)
      return {v, at}
    end
  end
end
return nil`;

/**
 * A node starting (ARGV[2]) brought these sessions (ARGV[3...]) back from its store: they are no
 * longer orphans, and each is its own again unless its client went to another node meanwhile
 * (whose claim may still be on its way: the record is left for it). Returns the node holding each.
 */
export const WITHDRAW_SESSIONS = `
local prefix, node = ARGV[1], ARGV[2]
local sets = {prefix .. ':sessions:' .. node}
for _, m in ipairs(redis.call('ZRANGE', prefix .. ':orphans', 0, -1)) do
  local _, _, owner = string.match(m, '^(%d+)|(%a)|(.*)$')
  if owner == node then table.insert(sets, prefix .. ':orphan-sessions:' .. m) end
end
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local ck = prefix .. ':client:' .. id
  local holder = redis.call('GET', ck)
  if not holder then
    redis.call('SET', ck, node)
    holder = node
  end
  if holder == node then
    for _, key in ipairs(sets) do redis.call('HDEL', key, id) end
  end
  table.insert(out, holder)
end
return out`;

/**
 * Takes orphan sessions up to keep here offline (ARGV: prefix, member, this node, client ids...):
 * those whose client no other node holds now, each once, never while their node is live again
 * (kind d). Each comes with its will, if it left one, which goes with the session from now on.
 * Returns {client id, will or ''} for each taken.
 */
export const TAKE_ORPHAN_SESSIONS = `
local prefix, member, me = ARGV[1], ARGV[2], ARGV[3]
local _, kind, node = string.match(member, '^(%d+)|(%a)|(.*)$')
local out = {}
if kind == 'd' and redis.call('ZSCORE', prefix .. ':nodes', node) then return out end
local sessions = prefix .. ':orphan-sessions:' .. member
local wills = prefix .. ':orphan-wills:' .. member
for i = 4, #ARGV do
  local id = ARGV[i]
  local ck = prefix .. ':client:' .. id
  local holder = redis.call('GET', ck)
  -- a client held elsewhere is being claimed there (or was): its record is left for that claim
  if (not holder or holder == node) and redis.call('HDEL', sessions, id) == 1 then
    redis.call('SET', ck, me)
    local w = redis.call('HGET', wills, id)
    if w then redis.call('HDEL', wills, id) else w = '' end
    table.insert(out, id)
    table.insert(out, w)
  end
end
return out`;

export interface OrphanMember {
  /** when it was made an orphan (Redis's clock, ms) */
  at: number;
  kind: 'd' | 'g';
  node: string;
}

export function parseMember(member: string): OrphanMember | undefined {
  const m = /^(\d+)\|([dg])\|(.*)$/s.exec(member);
  if (m === null) return undefined;
  return { at: Number(m[1]), kind: m[2] as 'd' | 'g', node: m[3] as string };
}

/**
 * The scripts above, as the command connection defines them. Each is given the `orphans` key, so
 * that a Redis Cluster runs it on the master of the cluster's slot, where all its keys are.
 */
export interface OrphanScripts {
  midgeNodeGone(orphansKey: string, prefix: string, node: string): Promise<number>;
  midgeNow(orphansKey: string): Promise<number>;
  midgeReclaim(orphansKey: string, prefix: string, node: string): Promise<number>;
  midgeClaimOrphanedBuffer(orphansKey: string, prefix: string, what: 'wills' | 'sessions', node: string, clientId: string, orphansOnly: '0' | '1'): Promise<[Buffer, Buffer] | null>;
  midgeWithdrawSessions(orphansKey: string, prefix: string, node: string, ...clientIds: string[]): Promise<string[]>;
  midgeTakeOrphanWills(orphansKey: string, prefix: string, member: string, ...idAndDelayed: string[]): Promise<number[]>;
  midgeTakeOrphanSessionsBuffer(orphansKey: string, prefix: string, member: string, node: string, ...clientIds: string[]): Promise<Buffer[]>;
}
