import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PacketIdMap } from '../../../src/session/packet-id-map.js';

type Op = { kind: 'set'; id: number; value: number } | { kind: 'delete'; id: number } | { kind: 'clear' };

// Ids from a few crowded neighbourhoods, multiples of the table sizes apart, so that they collide,
// probe past each other and wrap around the end of the table.
const id = fc.oneof(
  fc.integer({ min: 1, max: 40 }),
  fc.integer({ min: 0, max: 30 }).map((k) => 1 + k * 64),
  fc.integer({ min: 65500, max: 65535 }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), id, value: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('delete' as const), id }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

describe('packet id map', () => {
  test('property: answers as a Map does, and iterates in the order ids went in flight', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const w = new PacketIdMap<number>();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === 'set') {
            w.set(o.id, o.value);
            model.set(o.id, o.value);
          } else if (o.kind === 'delete') {
            assert.equal(w.delete(o.id), model.delete(o.id));
          } else {
            w.clear();
            model.clear();
          }
          assert.equal(w.size, model.size);
          for (const k of model.keys()) {
            assert.ok(w.has(k));
            assert.equal(w.get(k), model.get(k));
          }
        }
        assert.deepEqual([...w], [...model]);
        assert.deepEqual([...w.values()], [...model.values()]);
        assert.deepEqual([...w.keys()], [...model.keys()]);
        for (let k = 1; k <= 65535; k++) if (!model.has(k)) assert.equal(w.has(k), false, `id ${k} is not in flight`);
      }),
      { numRuns: 200 },
    );
  });

  test('a table grown for a burst of ids is given back once it empties, and works on from empty', () => {
    const w = new PacketIdMap<number>();
    for (let id = 1; id <= 1000; id++) w.set(id, id);
    const slots = (): number => (w as unknown as { ids: number[] | undefined }).ids?.length ?? 0;
    assert.equal(slots(), 2048);
    for (let id = 1000; id >= 1; id--) assert.equal(w.delete(id), true);
    assert.equal(w.size, 0);
    assert.equal(slots(), 0, 'the 2,048 slots are released');
    assert.equal(w.has(5), false);
    w.set(7, 70).set(3, 30);
    assert.deepEqual([...w], [[7, 70], [3, 30]]);
    w.delete(7);
    w.delete(3);
    assert.equal(slots(), 8, 'a small table is kept for the next id');
  });

  test('walking the window while ids are released sees each entry once, as of the start', () => {
    const w = new PacketIdMap<string>();
    for (let i = 1; i <= 20; i++) w.set(i * 16, `m${i}`);
    const seen: number[] = [];
    for (const [k] of w) {
      seen.push(k);
      w.delete(k);
      w.delete(k + 16);
    }
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => (i + 1) * 16));
    assert.equal(w.size, 0);
  });
});
