import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Durability } from '../../../src/broker/durability.js';
import { MemoryStore } from '../../../src/persistence/memory-store.js';
import type { Store } from '../../../src/persistence/store.js';

/**
 * A store on a "disk" whose batches finish when the test says, and whose commit() answers as the
 * LMDB store's does: the batch being filled if there is one, else the last one sent (or a settled
 * promise when that one is done).
 */
function scriptedStore(): { store: Store; endTurn(): void; finish(): void } {
  const inner = new MemoryStore();
  let filling: { promise: Promise<void>; resolve: () => void } | undefined;
  let sent: { promise: Promise<void>; resolve: () => void } | undefined;
  const batch = (): { promise: Promise<void>; resolve: () => void } => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };
  const store = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'kind') return 'lmdb';
      if (key === 'commit') return (): Promise<void> => (filling ?? sent)?.promise ?? Promise.resolve();
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        filling ??= batch();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Store;
  return {
    store,
    endTurn: () => {
      if (filling !== undefined) sent = filling;
      filling = undefined;
    },
    finish: () => sent?.resolve(),
  };
}

async function settled(p: Promise<void> | undefined): Promise<boolean> {
  if (p === undefined) return true;
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 5));
  return done;
}

test('[MQTT-4.3.2-1] a commit asked for after writes that asked for none is not reused for later writes of the same turn: their acknowledgement waits for their own batch', async () => {
  const s = scriptedStore();
  const d = new Durability(s.store);
  // a turn that wrote and asked for no commit (a persistent session connecting, say)
  d.changed().sessionSaved({ clientId: 'early', expiryInterval: 60, expiresAt: undefined });
  s.endTurn();
  s.finish();
  // the next turn: the first publish finds those writes done, and a later publish of the same
  // turn writes rows of its own: its commit is the new batch's
  const early = d.commit();
  d.changed().sessionSaved({ clientId: 'late', expiryInterval: 60, expiresAt: undefined });
  const late = d.commit();
  assert.equal(await settled(early), true);
  assert.equal(await settled(late), false, 'acknowledged before its rows are on disk');
  s.endTurn();
  s.finish();
  assert.equal(await settled(late), true);
});

test('publishes of one turn share one commit', async () => {
  const s = scriptedStore();
  const d = new Durability(s.store);
  d.changed().sessionSaved({ clientId: 'a', expiryInterval: 60, expiresAt: undefined });
  const first = d.commit();
  d.changed().sessionSaved({ clientId: 'b', expiryInterval: 60, expiresAt: undefined });
  assert.equal(d.commit(), first);
  s.endTurn();
  s.finish();
  assert.equal(await settled(first), true);
});
