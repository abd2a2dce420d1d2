import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { pageOf } from '../../../src/admin/page-of.js';

describe('admin listing pages', () => {
  test('property: a page is the slice of the sorted keys, whatever the offset and limit', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 300 }), fc.nat(320), fc.nat(120), (keys, offset, limit) => {
        const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        assert.deepEqual(pageOf(keys, offset, limit), sorted.slice(offset, offset + limit));
      }),
      { numRuns: 500 },
    );
  });

  test('property: keys in any order, sorted or reversed ones included, give the same pages', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2000 }), fc.constantFrom('sorted', 'reversed', 'shuffled'), fc.nat(2100), fc.integer({ min: 1, max: 200 }), (n, order, offset, limit) => {
        const sorted = Array.from({ length: n }, (_, i) => `k${String(i).padStart(5, '0')}`);
        const keys = order === 'sorted' ? sorted : order === 'reversed' ? [...sorted].reverse() : sorted.map((k, i) => sorted[(i * 7919) % n] ?? k);
        assert.deepEqual(pageOf(keys, offset, limit), sorted.slice(offset, offset + limit));
      }),
      { numRuns: 200 },
    );
  });
});
