const PREFIX = '$share/';

/**
 * Splits a `$share/{ShareName}/{filter}` subscription (MQTT 5 section 4.8.2). Returns null for an
 * ordinary filter, a reason string for a malformed share, else the group and the inner filter
 * (which the caller validates as a topic filter).
 * [MQTT-4.8.2-1] the ShareName is at least one character; [MQTT-4.8.2-2] it holds no '/', '+' or '#'.
 */
export function parseSharedFilter(filter: string): { group: string; filter: string } | null | string {
  if (!filter.startsWith(PREFIX)) {
    return filter === '$share' ? 'a shared subscription needs a share name and a filter' : null;
  }
  const slash = filter.indexOf('/', PREFIX.length);
  if (slash < 0) return 'a shared subscription needs a share name and a filter';
  const group = filter.slice(PREFIX.length, slash);
  if (group.length === 0) return 'the share name is empty';
  if (group.includes('+') || group.includes('#')) return 'the share name contains a wildcard';
  const inner = filter.slice(slash + 1);
  if (inner.length === 0) return 'the shared subscription has no topic filter';
  return { group, filter: inner };
}
