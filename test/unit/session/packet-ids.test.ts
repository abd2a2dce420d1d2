import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PacketIdAllocator } from '../../../src/session/packet-ids.js';

describe('packet identifiers', () => {
  test('[MQTT-2.3.1-4] (3.1.1) [MQTT-2.2.1-4] (5.0) ids are non-zero, unused while in flight, and wrap after 65535', () => {
    const ids = new PacketIdAllocator();
    ids.claim(3);
    assert.deepEqual([ids.allocate(), ids.allocate(), ids.allocate()], [1, 2, 4]);
    for (let i = 5; i <= 65535; i++) ids.allocate();
    ids.release(2);
    assert.equal(ids.allocate(), 2, 'after 65535 the search wraps to the first free id');
    assert.equal(ids.inUse, 65535);
    assert.throws(() => ids.allocate(), /all 65535 packet identifiers are in use/);
  });

  test('property: an id is never handed out while in use', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant('a' as const), fc.nat(200)), { maxLength: 500 }), (ops) => {
        const ids = new PacketIdAllocator();
        const live = new Set<number>();
        for (const op of ops) {
          if (op === 'a') {
            const id = ids.allocate();
            assert.ok(id >= 1 && id <= 65535);
            assert.ok(!live.has(id));
            live.add(id);
          } else {
            const victim = [...live][op % Math.max(1, live.size)];
            if (victim !== undefined) {
              ids.release(victim);
              live.delete(victim);
            }
          }
          assert.equal(ids.inUse, live.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});
