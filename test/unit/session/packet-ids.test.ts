import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createMessage } from '../../../src/session/message.js';
import { Session, type InflightEntry } from '../../../src/session/session.js';

const entry = (): InflightEntry => ({
  delivery: { message: createMessage('t', Buffer.from('x'), 1, false, undefined, { now: () => 0 }, 'sender'), qos: 1, retain: false, subscriptionIds: undefined, share: undefined },
  state: 'publish',
});

describe('packet identifiers', () => {
  test('[MQTT-2.3.1-4] (3.1.1) [MQTT-2.2.1-4] (5.0) ids are non-zero, unused while in flight, and wrap after 65535', () => {
    const s = new Session('ids', 0);
    s.inflight.set(3, entry()); // as restored from the store
    const start = (): number => s.startInflight(entry());
    assert.deepEqual([start(), start(), start()], [1, 2, 4]);
    for (let i = 5; i <= 65535; i++) start();
    s.endInflight(2);
    assert.equal(start(), 2, 'after 65535 the search wraps to the first free id');
    assert.equal(s.inflight.size, 65535);
    assert.throws(() => start(), /all 65535 packet identifiers are in use/);
  });

  test('property: an id is never handed out while in flight', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant('a' as const), fc.nat(200)), { maxLength: 500 }), (ops) => {
        const s = new Session('ids', 0);
        const live = new Set<number>();
        for (const op of ops) {
          if (op === 'a') {
            const id = s.startInflight(entry());
            assert.ok(id >= 1 && id <= 65535);
            assert.ok(!live.has(id));
            live.add(id);
          } else {
            const victim = [...live][op % Math.max(1, live.size)];
            if (victim !== undefined) {
              s.endInflight(victim);
              live.delete(victim);
            }
          }
          assert.equal(s.inflight.size, live.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});
