import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Deque } from '../../../src/session/deque.js';
import { LazyMap } from '../../../src/collections/lazy-map.js';

type Op = { op: 'push'; v: number } | { op: 'shift' | 'clear' } | { op: 'at'; i: number };

const ops = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant('push' as const), v: fc.nat(1000) }),
    fc.record({ op: fc.constantFrom('shift' as const, 'clear' as const) }),
    fc.record({ op: fc.constant('at' as const), i: fc.integer({ min: -1, max: 40 }) }),
  ),
  { maxLength: 400 },
);

describe('session collections', () => {
  test('property: the queue deque behaves as an array', () => {
    fc.assert(
      fc.property(ops, (list: Op[]) => {
        const d = new Deque<number>();
        const model: number[] = [];
        for (const o of list) {
          switch (o.op) {
            case 'push': d.push(o.v); model.push(o.v); break;
            case 'shift': assert.equal(d.shift(), model.shift()); break;
            case 'clear': d.clear(); model.length = 0; break;
            case 'at': assert.equal(d.at(o.i), model[o.i]); break;
          }
          assert.equal(d.length, model.length);
          assert.equal(d.peek(), model[0]);
        }
        assert.deepEqual([...d], model);
      }),
      { numRuns: 300 },
    );
  });

  test('the lazy map answers like a Map, before and after its first entry', () => {
    const m = new LazyMap<string, number>();
    assert.equal(m.size, 0);
    assert.equal(m.get('a'), undefined);
    assert.equal(m.has('a'), false);
    assert.equal(m.delete('a'), false);
    assert.deepEqual([...m], []);
    assert.deepEqual([...m.keys(), ...m.values()], []);
    m.set('a', 1).set('b', 2);
    assert.deepEqual([...m], [['a', 1], ['b', 2]]);
    assert.deepEqual([...m.keys()], ['a', 'b']);
    assert.deepEqual([...m.values()], [1, 2]);
    assert.equal(m.delete('a'), true);
    assert.equal(m.size, 1);
    m.clear();
    assert.equal(m.size, 0);
  });

  test('property: the lazy map answers like a Map through any sequence of sets, deletes and clears', () => {
    type MapOp = { op: 'set'; k: string; v: number } | { op: 'delete'; k: string } | { op: 'clear' };
    const key = fc.constantFrom('a', 'b', 'c', 'd');
    const mapOps = fc.array(
      fc.oneof(
        { arbitrary: fc.record({ op: fc.constant('set' as const), k: key, v: fc.nat(100) }), weight: 4 },
        { arbitrary: fc.record({ op: fc.constant('delete' as const), k: key }), weight: 3 },
        { arbitrary: fc.record({ op: fc.constant('clear' as const) }), weight: 1 },
      ),
      { maxLength: 60 },
    );
    fc.assert(
      fc.property(mapOps, (list: MapOp[]) => {
        const m = new LazyMap<string, number>();
        const model = new Map<string, number>();
        for (const o of list) {
          if (o.op === 'set') {
            assert.equal(m.set(o.k, o.v), m);
            model.set(o.k, o.v);
          } else if (o.op === 'delete') {
            assert.equal(m.delete(o.k), model.delete(o.k));
          } else {
            m.clear();
            model.clear();
          }
          assert.equal(m.size, model.size);
          for (const k of ['a', 'b', 'c', 'd']) {
            assert.equal(m.get(k), model.get(k));
            assert.equal(m.has(k), model.has(k));
          }
          assert.deepEqual([...m], [...model]);
          assert.deepEqual([...m.keys()], [...model.keys()]);
          assert.deepEqual([...m.values()], [...model.values()]);
          const out = [-1];
          assert.equal(m.copyValues(out, 1), model.size + 1);
          assert.deepEqual(out, [-1, ...model.values()]);
        }
      }),
      { numRuns: 500 },
    );
  });
});
