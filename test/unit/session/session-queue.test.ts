import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { QoS } from '../../../src/codec/packets.js';
import { createMessage, type Delivery } from '../../../src/session/message.js';
import { Session, type QueueDrops, type SessionTotals } from '../../../src/session/session.js';

const clock = { time: 0, now(): number {
  return this.time;
} };
const delivery = (size: number, qos: QoS, n: number, ttl?: number, retain = false, subscriptionIds?: number[]): Delivery => ({
  message: createMessage(`t/${n}`, Buffer.alloc(size, n % 256), qos, false, ttl === undefined ? undefined : { messageExpiryInterval: ttl }, clock, undefined),
  qos,
  retain,
  subscriptionIds,
  share: undefined,
});
/**
 * What the queue holds, as copies: the queue may reuse a dropped QoS 0 delivery object for the
 * message that replaces it, so deliveries are told apart by their message.
 */
const contents = (s: Session): Delivery[] => [...s.queue].map((d) => ({ ...d }));
const holds = (list: Delivery[], d: Delivery): boolean => list.some((x) => x.message === d.message);
const sizeOf = (list: Delivery[]): number => list.reduce((sum, d) => sum + d.message.payload.length, 0);
const isFull = (list: Delivery[], size: number, max: number, maxBytes: number): boolean =>
  list.length >= max || (maxBytes > 0 && list.length > 0 && sizeOf(list) + size > maxBytes);
const expired = (d: Delivery): boolean => d.message.expiresAt !== undefined && d.message.expiresAt <= clock.now();

/** Queues `d` and returns how many messages the queue refused or dropped for room. */
function enqueue(s: Session, d: Delivery, max: number, maxBytes = 0, drops: QueueDrops = { queueFull: 0, expired: 0 }, queueFullDrop: 'oldest' | 'new' = 'oldest'): number {
  const before = drops.queueFull;
  s.enqueue(d.message, d.qos, d.retain, d.subscriptionIds, d.share, { maxQueuedMessages: max, maxQueuedBytes: maxBytes, queueFullDrop }, clock, drops);
  return drops.queueFull - before;
}

type Op =
  | { kind: 'enqueue'; size: number; qos: QoS; ttl: number | undefined; retain: boolean; subscriptionIds: number[] | undefined }
  | { kind: 'dequeue' }
  | { kind: 'takeQos0' }
  | { kind: 'clear' }
  | { kind: 'tick'; seconds: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      size: fc.integer({ min: 0, max: 120 }),
      qos: fc.constantFrom<QoS>(0, 1, 2),
      ttl: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined, freq: 2 }),
      retain: fc.boolean(),
      subscriptionIds: fc.option(fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 2 }), { nil: undefined }),
    }),
    weight: 6,
  },
  { arbitrary: fc.constant({ kind: 'dequeue' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'takeQos0' as const }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'clear' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 1, max: 2 }) }), weight: 1 },
);

describe('session queue bounds', () => {
  test('[MQTT-3.3.2-5] (5.0) queued bytes equal the payloads queued; the bounds hold; a full queue lets expired messages go, then the oldest QoS 0 ones (queueFullDrop oldest) or the new message (new); order is kept', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 300 }), fc.constantFrom<'oldest' | 'new'>('oldest', 'new'), fc.array(op, { maxLength: 80 }), (max, maxBytes, policy, ops) => {
        clock.time = 0;
        // two sessions share the totals, as a broker's do; the other one holds a message throughout
        const totals: SessionTotals = { queued: 0, queuedBytes: 0, inflight: 0 };
        const other = new Session('other', 0, totals);
        const kept = delivery(7, 1, 1000, undefined);
        other.enqueue(kept.message, kept.qos, kept.retain, kept.subscriptionIds, kept.share, { maxQueuedMessages: 10, maxQueuedBytes: 0, queueFullDrop: 'oldest' }, clock, { queueFull: 0, expired: 0 });
        const s = new Session('c', 0, totals);
        const drops: QueueDrops = { queueFull: 0, expired: 0 };
        let n = 0;
        let dropped = 0;
        let expiredCount = 0;
        // what the queue holds, in order
        const model: Delivery[] = [];
        for (const o of ops) {
          if (o.kind === 'enqueue') {
            const before = contents(s);
            assert.deepEqual(before, model);
            const d = delivery(o.size, o.qos, n++, o.ttl, o.retain, o.subscriptionIds);
            const wasFull = isFull(before, o.size, max, maxBytes);
            const lost = enqueue(s, d, max, maxBytes, drops, policy);
            dropped += lost;
            const after = contents(s);
            const queued = holds(after, d);
            const gone = before.filter((x) => !holds(after, x));
            // a full queue lets every expired message go; a queue with room keeps them for now
            const expiredGone = gone.filter(expired);
            assert.deepEqual(expiredGone, wasFull ? before.filter(expired) : []);
            expiredCount += expiredGone.length;
            // what else left to make room was QoS 0, oldest first
            const evicted = gone.filter((x) => !holds(expiredGone, x));
            const live = before.filter((x) => !holds(expiredGone, x));
            assert.equal(lost, evicted.length + (queued ? 0 : 1));
            assert.deepEqual(evicted, live.filter((x) => x.qos === 0).slice(0, evicted.length));
            // a QoS 0 message is not thrown out for a newcomer that is then refused anyway
            if (!queued) assert.equal(evicted.length, 0);
            if (policy === 'new') {
              // nothing queued makes room: the newcomer stays out while the queue is full without the expired
              assert.equal(evicted.length, 0);
              assert.equal(queued, !isFull(live, o.size, max, maxBytes));
            }
            // and none is thrown out while the newcomer fits without it
            if (queued && evicted.length > 0) {
              const kept = after.filter((x) => x.message !== d.message);
              assert.ok(isFull([evicted[evicted.length - 1] as Delivery, ...kept], o.size, max, maxBytes), 'one QoS 0 message too many made room');
            }
            const stayed = before.filter((x) => !holds(gone, x));
            assert.deepEqual(after, queued ? [...stayed, d] : stayed);
            model.splice(0, model.length, ...after);
          } else if (o.kind === 'dequeue') {
            assert.deepEqual(s.queue.peek(), model[0]);
            assert.deepEqual(s.dequeue(), model.shift());
          } else if (o.kind === 'takeQos0') {
            s.takeQueued((d) => d.qos === 0);
            model.splice(0, model.length, ...model.filter((d) => d.qos !== 0));
          } else if (o.kind === 'clear') {
            s.clear();
            model.length = 0;
          } else {
            clock.time += o.seconds * 1000;
          }
          // the queue keeps arrival order across QoS levels, whatever left it
          assert.deepEqual(contents(s), model);
          assert.equal(s.queuedBytes, sizeOf(model));
          assert.equal(totals.queued, model.length + 1, 'the broker-wide count drifted');
          assert.equal(totals.queuedBytes, sizeOf(model) + 7, 'the broker-wide byte count drifted');
          assert.ok(s.queue.length <= max);
          if (maxBytes > 0 && s.queue.length > 1) assert.ok(sizeOf(model) <= maxBytes, `${sizeOf(model)} bytes queued over ${maxBytes}`);
        }
        assert.equal(s.dropped, dropped);
        assert.equal(drops.queueFull, dropped);
        assert.equal(drops.expired, expiredCount);
      }),
      { numRuns: 500 },
    );
  });

  test('[MQTT-3.3.2-5] (5.0) a message that outlives one clean-up of a full queue goes at the next once it has expired', () => {
    clock.time = 0;
    const s = new Session('c', 0);
    const drops = { queueFull: 0, expired: 0 };
    const [a, b, c, d] = [delivery(1, 1, 0, 1), delivery(1, 1, 1, 3), delivery(1, 1, 2), delivery(1, 1, 3)];
    enqueue(s, a as Delivery, 2, 0, drops);
    enqueue(s, b as Delivery, 2, 0, drops);
    clock.time = 1000;
    enqueue(s, c as Delivery, 2, 0, drops);
    assert.deepEqual([...s.queue], [b, c]);
    clock.time = 3000;
    enqueue(s, d as Delivery, 2, 0, drops);
    assert.deepEqual([...s.queue], [c, d]);
    assert.deepEqual(drops, { queueFull: 0, expired: 2 });
  });

  // Quadratic behaviour in these three would take minutes; what they do in O(1) per message takes
  // milliseconds.
  test('a queue full of 100,000 QoS 1 messages refuses each newcomer without walking the queue', { timeout: 20_000 }, () => {
    clock.time = 0;
    const s = new Session('c', 0);
    for (let i = 0; i < 100_000; i++) enqueue(s, delivery(1, 1, i), 100_000);
    for (let i = 0; i < 100_000; i++) assert.equal(enqueue(s, delivery(1, 1, i), 100_000), 1);
    assert.equal(s.queue.length, 100_000);
    assert.equal(s.dropped, 100_000);
  });

  test('a full queue of 100,000 messages that expire later refuses newcomers without walking the queue', { timeout: 20_000 }, () => {
    clock.time = 0;
    const s = new Session('c', 0);
    for (let i = 0; i < 100_000; i++) enqueue(s, delivery(1, 1, i, 60), 100_000);
    for (let i = 0; i < 100_000; i++) assert.equal(enqueue(s, delivery(1, 1, i), 100_000), 1);
    clock.time += 60_000;
    const drops = { queueFull: 0, expired: 0 };
    assert.equal(enqueue(s, delivery(1, 1, 0), 100_000, 0, drops), 0);
    assert.deepEqual(drops, { queueFull: 0, expired: 100_000 });
    assert.equal(s.queue.length, 1);
  });

  test('the oldest QoS 0 message behind 100,000 QoS 1 messages makes room without a scan', { timeout: 20_000 }, () => {
    clock.time = 0;
    const s = new Session('c', 0);
    const max = 150_000;
    for (let i = 0; i < 100_000; i++) enqueue(s, delivery(1, 1, i), max);
    for (let i = 0; i < 50_000; i++) enqueue(s, delivery(1, 0, i), max);
    let last: Delivery | undefined;
    for (let i = 0; i < 100_000; i++) assert.equal(enqueue(s, (last = delivery(1, 0, 50_000 + i)), max), 1);
    assert.equal(s.queue.length, max);
    const order = [...s.queue];
    assert.equal(order[0]?.qos, 1);
    assert.equal(order[100_000]?.message.topic, 't/100000');
    assert.equal(order[max - 1]?.message, last?.message);
  });
});
