/** Deliveries a broker dropped, by reason, as its Prometheus metrics count them. */
export type Drops = Record<string, number>;

/**
 * The drop counters in the text of Midge's /metrics: `midge_messages_dropped_total` by reason, and
 * a cluster node's forwards to other nodes dropped or failed. Undefined when the text has no
 * `midge_messages_dropped_total` at all (not Midge's metrics), so that "no drops" is never read
 * from a page that could not have said.
 */
export function parseDrops(text: string): Drops | undefined {
  if (!/^# TYPE midge_messages_dropped_total /m.test(text)) return undefined;
  const drops: Drops = {};
  const add = (reason: string, value: string): void => {
    const n = Number(value);
    if (Number.isFinite(n)) drops[reason] = (drops[reason] ?? 0) + n;
  };
  for (const m of text.matchAll(/^midge_messages_dropped_total\{reason="(\w+)"\} (\S+)/gm)) add(m[1] as string, m[2] as string);
  for (const m of text.matchAll(/^midge_cluster_forwards_dropped_total (\S+)/gm)) add('clusterForwardsDropped', m[1] as string);
  for (const m of text.matchAll(/^midge_cluster_forward_failures_total (\S+)/gm)) add('clusterForwardFailures', m[1] as string);
  return drops;
}

/** The drop counters of every broker (node) in `urls`, summed; rejects in one line when one cannot be read. */
export async function readDrops(urls: readonly string[]): Promise<Drops> {
  const sum: Drops = {};
  for (const url of urls) {
    let text: string;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (err) {
      // fetch says only "fetch failed"; what went wrong is in its cause
      const e = err as Error & { cause?: { code?: string; message?: string } };
      throw new Error(`cannot read the broker's metrics at ${url}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
    }
    const drops = parseDrops(text);
    if (drops === undefined) throw new Error(`${url} has no midge_messages_dropped_total: --metrics reads a Midge broker's /metrics`);
    for (const [reason, n] of Object.entries(drops)) sum[reason] = (sum[reason] ?? 0) + n;
  }
  return sum;
}

/** What the counters rose by between two readings. */
export function dropsBetween(before: Drops, after: Drops): Drops {
  const d: Drops = {};
  for (const [reason, n] of Object.entries(after)) d[reason] = n - (before[reason] ?? 0);
  return d;
}
