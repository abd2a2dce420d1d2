import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HEAP_SHARE, MemoryGuard, type MemoryReading } from '../../../src/broker/memory-guard.js';

describe('memory guard', () => {
  test('over maxMemory (heap and buffers) it is full until use falls below 90% of it; each change is told once', () => {
    const reading: MemoryReading = { heapUsed: 0, external: 0, heapLimit: 1e12 };
    let max = 1000;
    const changes: boolean[] = [];
    const guard = new MemoryGuard(() => max, (full) => changes.push(full), () => reading);
    const at = (heapUsed: number, external = 0): boolean => {
      reading.heapUsed = heapUsed;
      reading.external = external;
      return guard.check();
    };
    assert.equal(at(999), false);
    assert.equal(at(1000), false, 'at the limit is not over it');
    assert.equal(at(1001), true);
    assert.equal(at(2000), true);
    assert.equal(at(950), true, 'between 90% and the limit it stays full');
    assert.equal(at(900), true);
    assert.equal(at(899), false);
    assert.equal(at(950), false, 'and back under the limit it stays open');
    assert.equal(at(500, 501), true, 'buffers count');
    max = 0;
    assert.equal(at(500, 501), false, 'without maxMemory only the heap counts, against V8s limit');
    max = 100;
    assert.equal(at(101), true);
    max = 1000;
    assert.equal(at(101), false, 'a raised limit frees it at the next check');
    assert.deepEqual(changes, [true, false, true, false, true, false]);
  });

  test('without maxMemory the heap is bounded at a share of V8s heap limit, buffers aside', () => {
    const reading: MemoryReading = { heapUsed: 0, external: 5e9, heapLimit: 1000 };
    const guard = new MemoryGuard(() => 0, () => undefined, () => reading);
    reading.heapUsed = 1000 * HEAP_SHARE;
    assert.equal(guard.check(), false);
    reading.heapUsed = 1000 * HEAP_SHARE + 1;
    assert.equal(guard.check(), true);
    reading.heapUsed = 1000 * HEAP_SHARE * 0.9 - 1;
    assert.equal(guard.check(), false);
  });

  test('start() checks every second until stop()', async () => {
    let checks = 0;
    const guard = new MemoryGuard(() => 10, () => undefined, () => {
      checks++;
      return { heapUsed: 0, external: 0, heapLimit: 1e12 };
    });
    guard.start();
    guard.start();
    await new Promise((r) => setTimeout(r, 2300));
    guard.stop();
    const seen = checks;
    assert.ok(seen >= 2 && seen <= 3, `${seen} checks in 2.3 s`);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(checks, seen, 'checked after stop()');
  });
});
