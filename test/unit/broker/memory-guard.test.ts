import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryGuard } from '../../../src/broker/memory-guard.js';

describe('memory guard', () => {
  test('over the limit it is full until use falls below 90% of it; no limit is never full; each change is told once', () => {
    let used = 0;
    let limit = 1000;
    const changes: boolean[] = [];
    const guard = new MemoryGuard(() => limit, (full) => changes.push(full), () => used);
    const at = (bytes: number): boolean => {
      used = bytes;
      guard.check();
      return guard.full;
    };
    assert.equal(at(999), false);
    assert.equal(at(1000), false, 'at the limit is not over it');
    assert.equal(at(1001), true);
    assert.equal(at(2000), true);
    assert.equal(at(950), true, 'between 90% and the limit it stays full');
    assert.equal(at(900), true);
    assert.equal(at(899), false);
    assert.equal(at(950), false, 'and back under the limit it stays open');
    assert.equal(at(5000), true);
    limit = 0;
    assert.equal(at(5000), false, 'a limit taken away frees it');
    assert.equal(at(1e12), false);
    limit = 100;
    assert.equal(at(101), true);
    limit = 1000;
    assert.equal(at(101), false, 'a raised limit frees it at the next check');
    assert.deepEqual(changes, [true, false, true, false, true, false]);
  });

  test('start() checks every second until stop()', async () => {
    let checks = 0;
    const guard = new MemoryGuard(() => 10, () => undefined, () => {
      checks++;
      return 0;
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
