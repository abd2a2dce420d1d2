import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { QoS } from '../../../src/codec/packets.js';
import { createMessage, type Delivery } from '../../../src/session/message.js';
import { Session } from '../../../src/session/session.js';

const clock = { now: () => 0 };
const delivery = (size: number, qos: QoS, n: number): Delivery => ({
  message: createMessage(`t/${n}`, Buffer.alloc(size, n % 256), qos, false, undefined, clock, undefined),
  qos,
  retain: false,
  subscriptionIds: undefined,
  share: undefined,
});

type Op = { kind: 'enqueue'; size: number; qos: QoS } | { kind: 'dequeue' } | { kind: 'takeQos0' } | { kind: 'clear' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('enqueue' as const), size: fc.integer({ min: 0, max: 120 }), qos: fc.constantFrom<QoS>(0, 1, 2) }), weight: 6 },
  { arbitrary: fc.constant({ kind: 'dequeue' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'takeQos0' as const }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'clear' as const }), weight: 1 },
);

describe('session queue bounds', () => {
  test('queued bytes always equal the payloads queued; the message and byte bounds hold; drops are counted and QoS 0 goes first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 300 }), fc.array(op, { maxLength: 80 }), (max, maxBytes, ops) => {
        const s = new Session('c', 0);
        let n = 0;
        let dropped = 0;
        const model: Delivery[] = [];
        for (const o of ops) {
          if (o.kind === 'enqueue') {
            const before = [...s.queue];
            assert.deepEqual(before, model);
            const d = delivery(o.size, o.qos, n++);
            const lost = s.enqueue(d, max, maxBytes);
            dropped += lost;
            const after = [...s.queue];
            const queued = after.includes(d);
            // what left the queue to make room was QoS 0, oldest first
            const gone = before.filter((x) => !after.includes(x));
            assert.equal(lost, gone.length + (queued ? 0 : 1));
            if (queued) assert.deepEqual(after, [...before.filter((x) => !gone.includes(x)), d]);
            for (const g of gone) assert.equal(g.qos, 0);
            const qos0Before = before.filter((x) => x.qos === 0);
            assert.deepEqual(gone, qos0Before.slice(0, gone.length));
            // a QoS 0 message is not thrown out for a newcomer that is then refused anyway
            if (!queued) assert.equal(gone.length, 0);
            // and none is thrown out while the newcomer fits without it
            if (queued && gone.length > 0) {
              const kept = after.filter((x) => x !== d);
              const withOneMore = [gone[gone.length - 1] as Delivery, ...kept];
              const bytesWith = withOneMore.reduce((sum, x) => sum + x.message.payload.length, 0) + o.size;
              assert.ok(withOneMore.length + 1 > max || (maxBytes > 0 && bytesWith > maxBytes), 'one QoS 0 message too many made room');
            }
            if (queued) model.splice(0, model.length, ...after);
            else assert.deepEqual(after, before);
          } else if (o.kind === 'dequeue') {
            assert.equal(s.queue.peek(), model[0]);
            assert.equal(s.dequeue(), model.shift());
          } else if (o.kind === 'takeQos0') {
            s.takeQueued((d) => d.qos === 0);
            model.splice(0, model.length, ...model.filter((d) => d.qos !== 0));
          } else {
            s.clearQueue();
            model.length = 0;
          }
          // the queue keeps arrival order across QoS levels, whatever left it
          assert.deepEqual([...s.queue], model);
          const bytes = [...s.queue].reduce((sum, d) => sum + d.message.payload.length, 0);
          assert.equal(s.queuedBytes, bytes);
          assert.ok(s.queue.length <= max);
          if (maxBytes > 0 && s.queue.length > 1) assert.ok(bytes <= maxBytes, `${bytes} bytes queued over ${maxBytes}`);
        }
        assert.equal(s.dropped, dropped);
      }),
      { numRuns: 500 },
    );
  });

  // Quadratic behaviour in these two would take minutes; what they do in O(1) per message takes
  // milliseconds.
  test('a queue full of 100,000 QoS 1 messages refuses each newcomer without walking the queue', { timeout: 20_000 }, () => {
    const s = new Session('c', 0);
    for (let i = 0; i < 100_000; i++) s.enqueue(delivery(1, 1, i), 100_000);
    for (let i = 0; i < 100_000; i++) assert.equal(s.enqueue(delivery(1, 1, i), 100_000), 1);
    assert.equal(s.queue.length, 100_000);
    assert.equal(s.dropped, 100_000);
  });

  test('the oldest QoS 0 message behind 100,000 QoS 1 messages makes room without a scan', { timeout: 20_000 }, () => {
    const s = new Session('c', 0);
    const max = 150_000;
    for (let i = 0; i < 100_000; i++) s.enqueue(delivery(1, 1, i), max);
    for (let i = 0; i < 50_000; i++) s.enqueue(delivery(1, 0, i), max);
    let last: Delivery | undefined;
    for (let i = 0; i < 100_000; i++) assert.equal(s.enqueue((last = delivery(1, 0, 50_000 + i)), max), 1);
    assert.equal(s.queue.length, max);
    const order = [...s.queue];
    assert.equal(order[0]?.qos, 1);
    assert.equal(order[100_000]?.message.topic, 't/100000');
    assert.equal(order[max - 1], last);
  });
});
