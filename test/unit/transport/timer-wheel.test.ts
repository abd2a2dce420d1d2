import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { TimerWheel } from '../../../src/transport/timer-wheel.js';

describe('timer wheel', () => {
  test('an entry whose deadline falls late in the current tick still expires on a later advance', () => {
    const w = new TimerWheel<{ deadline: number }>(250);
    const start = 1_000_000_000; // a tick boundary
    const e = { deadline: start + 200 };
    w.add(e);
    const expired: number[] = [];
    w.advance(start + 10, () => expired.push(start + 10));
    assert.equal(expired.length, 0);
    w.advance(start + 260, () => expired.push(start + 260));
    assert.deepEqual(expired, [start + 260]);
    assert.equal(w.size, 0);
  });

  test('a deadline moved sooner by add() fires at the sooner time', () => {
    const w = new TimerWheel<{ deadline: number }>(250);
    let now = 5_000_123;
    const e = { deadline: now + 10_000 };
    w.add(e);
    e.deadline = now + 1_500;
    w.add(e);
    let firedAt = -1;
    while (firedAt < 0 && now < 5_000_123 + 20_000) {
      now += 250;
      w.advance(now, () => (firedAt = now));
    }
    assert.ok(firedAt >= 5_000_123 + 1_500 && firedAt < 5_000_123 + 1_500 + 500, `fired at +${firedAt - 5_000_123}`);
  });

  test('a deadline moved later without telling the wheel is not expired early', () => {
    const w = new TimerWheel<{ deadline: number }>(100);
    let now = 0;
    const e = { deadline: 500 };
    w.add(e);
    e.deadline = 2_000;
    let firedAt = -1;
    for (; now <= 3_000 && firedAt < 0; now += 100) w.advance(now, () => (firedAt = now));
    assert.equal(firedAt, 2_000);
  });

  test('property: every entry expires once, never before its deadline and within two ticks after it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 200_000 }), { minLength: 1, maxLength: 50 }),
        fc.integer({ min: 0, max: 999 }),
        fc.integer({ min: 17, max: 400 }),
        (deadlines, offset, step) => {
          const tick = 250;
          const w = new TimerWheel<{ deadline: number; fired: number[] }>(tick);
          const start = 1_000_000 + offset;
          const entries = deadlines.map((d) => ({ deadline: start + d, fired: [] as number[] }));
          for (const e of entries) w.add(e);
          for (let now = start; now <= start + 200_000 + 3 * tick; now += step) {
            w.advance(now, (e) => e.fired.push(now));
          }
          for (const e of entries) {
            assert.equal(e.fired.length, 1);
            const at = e.fired[0] as number;
            assert.ok(at >= e.deadline, 'not early');
            assert.ok(at < e.deadline + 2 * tick + step, `late by ${at - e.deadline}`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
