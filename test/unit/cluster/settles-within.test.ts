import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { settlesWithin } from '../../../src/cluster/settles-within.js';

describe('settlesWithin', () => {
  test('tells a promise that resolved, one that rejected, and one still pending at the deadline apart', async () => {
    const never = new Promise<void>(() => undefined);
    assert.deepEqual(await Promise.all([settlesWithin(Promise.resolve(1), 50), settlesWithin(Promise.reject(new Error('x')), 50), settlesWithin(never, 50)]), ['done', 'failed', 'late']);
  });

  test('a promise that settles after the deadline is still late, and its rejection is not left unhandled', async () => {
    let reject: (err: Error) => void = () => undefined;
    const later = new Promise<void>((_, rej) => (reject = rej));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      assert.equal(await settlesWithin(later, 20), 'late');
      reject(new Error('too late'));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
