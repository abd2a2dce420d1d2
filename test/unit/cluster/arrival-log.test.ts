import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ArrivalLog } from '../../../src/cluster/arrival-log.js';

describe('ArrivalLog: forwarded messages taken since a session was adopted', () => {
  test('a message counts as taken since a mark only when it came after it, per sender', () => {
    const log = new ArrivalLog();
    const early = log.mark();
    log.record('a', 1);
    log.record('a', 5);
    const late = log.mark();
    log.record('a', 9);
    log.record('c', 2);
    assert.equal(log.takenSince(early, 'a', 5), true);
    assert.equal(log.takenSince(late, 'a', 5), false, 'taken before the mark');
    assert.equal(log.takenSince(late, 'a', 9), true);
    assert.equal(log.takenSince(late, 'a', 7), false, 'never taken here');
    assert.equal(log.takenSince(late, 'c', 2), true, 'a sender first seen after the mark');
    assert.equal(log.takenSince(late, 'x', 1), false);
  });

  test('releasing marks drops what no held mark reaches, and the last release empties the log', () => {
    const log = new ArrivalLog();
    const first = log.mark();
    for (let n = 1; n <= 1000; n++) log.record('a', n);
    const second = log.mark();
    log.record('a', 1001);
    log.release(first);
    assert.equal(log.takenSince(second, 'a', 1001), true);
    assert.equal(log.takenSince(second, 'a', 1000), false);
    assert.equal(log.active, true);
    log.release(second);
    assert.equal(log.active, false);
    const third = log.mark();
    assert.equal(log.takenSince(third, 'a', 1001), false);
  });

  test('a sender that restarts and numbers from 1 again is still told apart after a mark', () => {
    const log = new ArrivalLog();
    log.record('a', 100);
    const mark = log.mark();
    log.record('a', 101);
    log.record('a', 1);
    log.record('a', 2);
    assert.equal(log.takenSince(mark, 'a', 2), true);
    assert.equal(log.takenSince(mark, 'a', 1), true);
  });

  test('agrees with a plain list of what came after each mark (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.record({ op: fc.constant('take' as const), sender: fc.constantFrom('a', 'b', 'c'), step: fc.integer({ min: 1, max: 3 }) }), fc.record({ op: fc.constant('mark' as const) }), fc.record({ op: fc.constant('release' as const), which: fc.nat() })), { maxLength: 80 }),
        (ops) => {
          const log = new ArrivalLog();
          const next = new Map<string, number>();
          // the model: for each held mark, the (sender, n) taken after it
          const held: Array<{ mark: ReturnType<ArrivalLog['mark']>; after: Set<string> }> = [];
          const all: Array<[string, number]> = [];
          for (const op of ops) {
            if (op.op === 'take') {
              const n = (next.get(op.sender) ?? 0) + op.step;
              next.set(op.sender, n);
              log.record(op.sender, n);
              all.push([op.sender, n]);
              for (const h of held) h.after.add(`${op.sender}#${n}`);
            } else if (op.op === 'mark') {
              held.push({ mark: log.mark(), after: new Set() });
            } else if (held.length > 0) {
              const [h] = held.splice(op.which % held.length, 1);
              log.release(h!.mark);
            }
            for (const h of held) {
              for (const [sender, n] of all) assert.equal(log.takenSince(h.mark, sender, n), h.after.has(`${sender}#${n}`));
              for (const sender of ['a', 'b', 'c']) assert.equal(log.takenSince(h.mark, sender, (next.get(sender) ?? 0) + 1), false);
            }
          }
        },
      ),
    );
  });
});
