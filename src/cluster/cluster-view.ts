import type { RedisClient } from './redis-target.js';
import { inboxKeys } from './inbox.js';
import { parseMember } from './orphans.js';

/** One node of the cluster, as the admin API shows it. */
export interface ClusterNodeView {
  id: string;
  /** the node answering */
  self: boolean;
  /** ms since its last heartbeat, by Redis's clock */
  lastSeenMs: number;
  /** topic filters it has subscribers for */
  filters: number;
  /** bytes of messages waiting in Redis for it to read */
  inboxBytes: number;
}

/** Every live node of the cluster under `prefix`, as Redis holds it now. */
export async function describeCluster(cmd: RedisClient, prefix: string, self: string): Promise<ClusterNodeView[]> {
  const [members, time] = await Promise.all([cmd.zrange(`${prefix}:nodes`, 0, -1, 'WITHSCORES'), cmd.time()]);
  // heartbeats are scored with Redis's clock, so ages are read against it too
  const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  const ids = members.filter((_, i) => i % 2 === 0);
  const [filters, waiting] = await Promise.all([
    Promise.all(ids.map((id) => cmd.scard(`${prefix}:routes:${id}`))),
    Promise.all(ids.map((id) => cmd.get(inboxKeys(prefix, id)[1]))),
  ]);
  return ids.map((id, i) => ({
    id,
    self: id === self,
    lastSeenMs: Math.max(0, now - Number(members[2 * i + 1])),
    filters: filters[i] ?? 0,
    inboxBytes: Number(waiting[i] ?? 0),
  }));
}

/** What a gone node left in Redis and no node has sent or taken up yet, as the admin API shows it. */
export interface OrphanView {
  node: string;
  /** 'found dead' (its wills and sessions wait the grace, and go back to it if it is live again) or 'gone' (it stopped or started again) */
  kind: 'found dead' | 'gone';
  /** ms since, by Redis's clock */
  sinceMs: number;
  /** wills not sent yet */
  wills: number;
  /** sessions whose clients have not come back, not taken up yet */
  sessions: number;
}

/** The orphan sets of the cluster under `prefix` (orphans.ts). */
export async function describeOrphans(cmd: RedisClient, prefix: string): Promise<OrphanView[]> {
  const [members, time] = await Promise.all([cmd.zrange(`${prefix}:orphans`, 0, -1), cmd.time()]);
  const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  const views = await Promise.all(
    members.map(async (m): Promise<OrphanView | undefined> => {
      const parsed = parseMember(m);
      if (parsed === undefined) return undefined;
      const [wills, sessions] = await Promise.all([cmd.hlen(`${prefix}:orphan-wills:${m}`), cmd.hlen(`${prefix}:orphan-sessions:${m}`)]);
      if (wills === 0 && sessions === 0) return undefined;
      return { node: parsed.node, kind: parsed.kind === 'd' ? 'found dead' : 'gone', sinceMs: Math.max(0, now - parsed.at), wills, sessions };
    }),
  );
  return views.filter((v): v is OrphanView => v !== undefined);
}
