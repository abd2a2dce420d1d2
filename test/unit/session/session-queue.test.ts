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
        for (const o of ops) {
          if (o.kind === 'enqueue') {
            const before = [...s.queue];
            const d = delivery(o.size, o.qos, n++);
            const lost = s.enqueue(d, max, maxBytes);
            dropped += lost;
            const after = [...s.queue];
            const queued = after.includes(d);
            // what left the queue to make room was QoS 0, oldest first
            const gone = before.filter((x) => !after.includes(x));
            assert.equal(lost, gone.length + (queued ? 0 : 1));
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
          } else if (o.kind === 'dequeue') {
            s.dequeue();
          } else if (o.kind === 'takeQos0') {
            s.takeQueued((d) => d.qos === 0);
          } else {
            s.clearQueue();
          }
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
});
