import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MatchMemo, SubscriptionTrie } from '../../../src/topic/subscription-trie.js';

/** Section 4.7 matching, level by level, written apart from the trie so the two can disagree. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with '$'
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

// few distinct level names, so that filters and topics meet often; '' is an empty level
const level = fc.constantFrom('a', 'b', 'sensor', '', 'Sensor', 'é', '$SYS', '$x');
const topicOf = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
const filterOf = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels, '#'] : levels).join('/'));
const filtersOf = fc.array(fc.oneof(filterOf, fc.constantFrom('#', '+', '+/#', '$SYS/#')), { minLength: 1, maxLength: 12 });

describe('topic: subscription trie', () => {
  test('[MQTT-4.7.1-2] [MQTT-4.7.1-3] (3.1.1) [MQTT-4.7.1-2] (5.0) [MQTT-4.7.2-1] [MQTT-4.7.3-4] matches exactly the filters section 4.7 matches', () => {
    fc.assert(
      fc.property(filtersOf, fc.array(topicOf, { minLength: 1, maxLength: 6 }), (filters, topics) => {
        const trie = new SubscriptionTrie<string>();
        filters.forEach((f, i) => trie.set(f, `c${i}`, `${i}:${f}`));
        // one array for every lookup, as the router uses it
        const out: string[] = [];
        for (const topic of topics) {
          const n = trie.match(topic, out);
          const got = out.slice(0, n).sort();
          const want = filters.map((f, i) => `${i}:${f}`).filter((v) => matches(v.slice(v.indexOf(':') + 1), topic)).sort();
          assert.deepEqual(got, want, `topic ${JSON.stringify(topic)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('a reused array: the count returned is what this lookup found, whatever the array held before', () => {
    const trie = new SubscriptionTrie<string>();
    trie.set('a/#', 'x', 'hash');
    trie.set('a/+', 'y', 'plus');
    trie.set('a/b', 'z', 'exact');
    const out = ['stale1', 'stale2', 'stale3', 'stale4'];
    assert.equal(trie.match('a/b', out), 3);
    assert.deepEqual(out.slice(0, 3).sort(), ['exact', 'hash', 'plus']);
    assert.equal(out[3], 'stale4', 'past the count the array is left alone');
    assert.equal(trie.match('b', out), 0);
    assert.equal(trie.match('a', out), 1, '"a/#" matches "a" itself');
    assert.equal(out[0], 'hash');
  });

  test('property: a publisher\'s memo answers as a fresh walk does, while subscriptions come, change and go between its publishes', () => {
    type Op = { kind: 'publish'; topic: string } | { kind: 'set'; filter: string; key: string; value: number } | { kind: 'delete'; filter: string; key: string };
    const key = fc.constantFrom('k1', 'k2', 'k3');
    // a few topics, so that most publishes repeat the one before
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('publish' as const), topic: fc.constantFrom('a/b', 'a/b', 'a/b', 'sensor/a', '$SYS/a') }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('set' as const), filter: fc.oneof(filterOf, fc.constant('a/b')), key, value: fc.nat(9) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), filter: fc.oneof(filterOf, fc.constant('a/b')), key }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const trie = new SubscriptionTrie<string>();
        const memo = new MatchMemo();
        const out: string[] = [];
        const fresh: string[] = [];
        for (const o of ops) {
          if (o.kind === 'set') trie.set(o.filter, o.key, `${o.filter}:${o.key}:${o.value}`);
          else if (o.kind === 'delete') trie.delete(o.filter, o.key);
          else {
            const got = out.slice(0, trie.match(o.topic, out, memo)).sort();
            assert.deepEqual(got, fresh.slice(0, trie.match(o.topic, fresh)).sort(), `topic ${o.topic}`);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('a value replaced or deleted is no longer found, and pruning keeps other filters', () => {
    const trie = new SubscriptionTrie<string>();
    assert.equal(trie.set('a/b/c', 'k', 'v1'), true);
    assert.equal(trie.set('a/b/c', 'k', 'v2'), false);
    trie.set('a/+', 'k', 'w');
    assert.equal(trie.size, 2);
    const out: string[] = [];
    assert.deepEqual(out.slice(0, trie.match('a/b/c', out)), ['v2']);
    assert.equal(trie.delete('a/b/c', 'k'), true);
    assert.equal(trie.delete('a/b/c', 'k'), false);
    assert.equal(trie.match('a/b/c', out), 0);
    assert.deepEqual(out.slice(0, trie.match('a/b', out)), ['w']);
    assert.equal(trie.size, 1);
  });
});
