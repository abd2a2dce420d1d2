/**
 * Whether a topic name matches a topic filter (MQTT section 4.7): '+' matches exactly one level,
 * empty levels included; '#' matches the parent level and everything below it; names starting
 * with '$' are not matched by a filter starting with a wildcard ([MQTT-4.7.2-1]). The reference
 * matcher: simple and obviously right, used by tests and cold paths; the trie is the fast one.
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (filter.charCodeAt(0) === 0x2b || filter.charCodeAt(0) === 0x23)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
