import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { dueCount, publisherOf } from '../../../src/bench/pacing.js';

test('publishers at a fixed rate are spread over the interval, not sent in one burst', () => {
  // 4 publishers at 500 msg/s each: one message every 2 ms, each publisher's 0.5 ms after the last's
  const firstDue = [0, 1, 2, 3].map((p) => {
    let ms = 0;
    while (dueCount(ms, 500, p, 4) < 1) ms += 0.01;
    return ms;
  });
  for (let p = 0; p < 4; p++) assert.ok(Math.abs((firstDue[p] as number) - 2 * (1 - p / 4)) < 0.02, `publisher ${p}: ${firstDue[p]}`);
});

test('over any run the publishers together send the target rate, each within one message', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 60_000 }), (publishers, rate, elapsedMs) => {
      const per = rate / publishers;
      let total = 0;
      for (let p = 0; p < publishers; p++) {
        const n = dueCount(elapsedMs, per, p, publishers);
        assert.ok(Math.abs(n - (elapsedMs / 1000) * per) <= 1);
        total += n;
      }
      assert.ok(Math.abs(total - (elapsedMs / 1000) * rate) <= publishers);
    }),
  );
});

test('the run\'s j-th message is due from publisherOf(j): its due count, and only its, goes up at j / rate', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 1, max: 500 }), (publishers, rate, j) => {
      const at = (j / rate) * 1000;
      const per = rate / publishers;
      const p = publisherOf(j, publishers);
      // just before and just after the instant (a nanosecond either side: past float rounding)
      const before = (q: number): number => dueCount(at - 1e-6, per, q, publishers);
      const after = (q: number): number => dueCount(at + 1e-6, per, q, publishers);
      for (let q = 0; q < publishers; q++) assert.equal(after(q) - before(q), q === p ? 1 : 0, `publisher ${q} of ${publishers}, message ${j}`);
    }),
  );
});
