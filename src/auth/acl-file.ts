import { readFileSync } from 'node:fs';
import { topicMatches } from '../topic/match.js';
import { checkTopicFilter } from '../topic/validate.js';

/**
 * Mosquitto's acl_file format:
 *
 *     topic read $SYS/#            # lines before any "user" line: clients without a user name
 *     user alice
 *     topic readwrite home/alice/#
 *     topic deny home/alice/secret
 *     pattern write devices/%c/telemetry   # every client; %c client id, %u user name
 *
 * The access is read, write, readwrite (the default) or deny; deny wins over any grant. As in
 * Mosquitto, a line with more than one word after "topic" or "pattern" starts with the access, so
 * a filter with a space needs one; every filter must be a valid topic filter. A comment after a
 * filter is part of it, and refused as such.
 */
type Access = 'read' | 'write' | 'readwrite' | 'deny';

interface Rule {
  access: Access;
  filter: string;
}

export interface AclIdentity {
  readonly username: string | undefined;
  readonly clientId: string;
}

export class AclFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AclFileError';
  }
}

interface Parsed {
  anonymous: Rule[];
  users: Map<string, Rule[]>;
  patterns: Rule[];
}

const ACCESS = new Set(['read', 'write', 'readwrite', 'deny']);

export function parseAclFile(text: string, path: string): Parsed {
  const parsed: Parsed = { anonymous: [], users: new Map(), patterns: [] };
  let current: Rule[] = parsed.anonymous;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${path}:${i + 1}`;
    const [keyword] = line.split(/\s+/, 1) as [string];
    const rest = line.slice(keyword.length).trim();
    if (keyword === 'user') {
      if (rest === '') throw new AclFileError(`${where}: "user" needs a user name`);
      current = parsed.users.get(rest) ?? [];
      parsed.users.set(rest, current);
      return;
    }
    if (keyword !== 'topic' && keyword !== 'pattern') throw new AclFileError(`${where}: expected "user", "topic" or "pattern", got "${keyword}"`);
    const split = /^(\S+)\s+(.*)$/.exec(rest);
    const word = split?.[1];
    if (word !== undefined && !ACCESS.has(word)) {
      throw new AclFileError(`${where}: unknown access "${word}": expected read, write, readwrite or deny before the topic filter (a filter with a space needs one)`);
    }
    const access = (word ?? 'readwrite') as Access;
    const filter = split?.[2] ?? rest;
    if (filter === '') throw new AclFileError(`${where}: "${keyword}" needs a topic filter`);
    const invalid = checkFilter(keyword === 'pattern' ? filter.replace(/%[uc]/g, 'x') : filter);
    if (invalid !== null) {
      // a "#" after a space can only be a comment, which this format does not have after a rule
      const hint = /\s#/.test(filter) ? ' (a comment must be on a line of its own)' : '';
      throw new AclFileError(`${where}: invalid topic filter "${filter}": ${invalid}${hint}`);
    }
    (keyword === 'pattern' ? parsed.patterns : current).push({ access, filter });
  });
  return parsed;
}

/** The filter rules of MQTT alone: how long and how deep a topic may be is the listener's business. */
function checkFilter(filter: string): string | null {
  return checkTopicFilter(filter, { maxTopicLength: 65535, maxTopicLevels: Infinity });
}

/** An ACL file loaded for checks; `reload()` reads it again and applies to existing subscriptions too. */
export class AclFile {
  private parsed: Parsed = { anonymous: [], users: new Map(), patterns: [] };
  /** rules by client, with %u and %c filled in; emptied on reload */
  private readonly compiled = new Map<string, Rule[]>();

  constructor(readonly path: string) {
    this.reload();
  }

  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new AclFileError(`cannot read the ACL file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    this.parsed = parseAclFile(text, this.path);
    this.compiled.clear();
  }

  /** May the client publish to `topic`? */
  canWrite(who: AclIdentity, topic: string): boolean {
    return this.decide(who, (f) => topicMatches(f, topic), 'write');
  }

  /** May the client receive a message on `topic`? Checked at every delivery. */
  canRead(who: AclIdentity, topic: string): boolean {
    return this.decide(who, (f) => topicMatches(f, topic), 'read');
  }

  /** May the client subscribe to `filter`: is it within what it may read? */
  canSubscribe(who: AclIdentity, filter: string): boolean {
    return this.decide(who, (f) => covers(f, filter), 'read');
  }

  private decide(who: AclIdentity, matches: (ruleFilter: string) => boolean, want: 'read' | 'write'): boolean {
    let granted = false;
    for (const rule of this.rulesOf(who)) {
      if (!matches(rule.filter)) continue;
      if (rule.access === 'deny') return false;
      if (rule.access === 'readwrite' || rule.access === want) granted = true;
    }
    return granted;
  }

  private rulesOf(who: AclIdentity): Rule[] {
    const key = `${who.username ?? ''}\u0000${who.clientId}`;
    let rules = this.compiled.get(key);
    if (rules !== undefined) return rules;
    const own = who.username === undefined ? this.parsed.anonymous : (this.parsed.users.get(who.username) ?? []);
    // a pattern with %u does not apply to a client without a user name
    const patterns = this.parsed.patterns
      .filter((p) => who.username !== undefined || !p.filter.includes('%u'))
      .map((p) => ({ access: p.access, filter: substitute(p.filter, who) }));
    rules = [...own, ...patterns];
    if (this.compiled.size > 100_000) this.compiled.clear();
    this.compiled.set(key, rules);
    return rules;
  }
}

function substitute(filter: string, who: AclIdentity): string {
  // a substituted value with wildcards or separators must not widen the rule
  const safe = (v: string): string => v.replace(/[+#/]/g, '\u0000');
  return filter.replace(/%u/g, safe(who.username ?? '')).replace(/%c/g, safe(who.clientId));
}

/** True when every topic `sub` can match is matched by `rule` (filter-by-filter containment). */
export function covers(rule: string, sub: string): boolean {
  const r = rule.split('/');
  const s = sub.split('/');
  for (let i = 0; i < r.length; i++) {
    const rl = r[i] as string;
    if (rl === '#') return !(i === 0 && s[0]?.startsWith('$') === true && rule !== sub);
    const sl = s[i];
    if (sl === undefined) return false;
    if (sl === '#') return false;
    if (rl === '+') {
      if (i === 0 && sl.startsWith('$')) return false;
      continue;
    }
    if (sl === '+' || rl !== sl) return false;
  }
  return r.length === s.length;
}
