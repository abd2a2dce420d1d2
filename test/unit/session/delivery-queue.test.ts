import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { QoS } from '../../../src/codec/packets.js';
import { DeliveryQueue } from '../../../src/session/delivery-queue.js';
import { createMessage, type Delivery } from '../../../src/session/message.js';

const clock = { now: (): number => 0 };
const delivery = (n: number, qos: QoS): Delivery => ({
  message: createMessage(`t/${n}`, Buffer.alloc(n % 5), qos, false, undefined, clock, undefined),
  qos,
  retain: false,
  subscriptionIds: undefined,
  share: undefined,
});

type Op = { op: 'push'; qos: QoS } | { op: 'shift' } | { op: 'shiftLossy' };

const ops = fc.array(
  fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('push' as const), qos: fc.constantFrom<QoS>(0, 1) }), weight: 5 },
    { arbitrary: fc.constant({ op: 'shift' as const }), weight: 1 },
    { arbitrary: fc.constant({ op: 'shiftLossy' as const }), weight: 1 },
  ),
  { maxLength: 200 },
);

describe('delivery queue', () => {
  test('property: arrival order across QoS 0 and QoS 1 holds when tags are numbered again', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), ops, (tagLimit, list: Op[]) => {
        const q = new DeliveryQueue(tagLimit);
        const model: Delivery[] = [];
        let n = 0;
        for (const o of list) {
          if (o.op === 'push') {
            const d = delivery(n++, o.qos);
            q.push(d);
            model.push(d);
          } else if (o.op === 'shift') {
            assert.equal(q.peek(), model[0]);
            assert.equal(q.shift(), model.shift());
          } else {
            const i = model.findIndex((d) => d.qos === 0);
            assert.equal(q.shiftLossy(), i < 0 ? undefined : model.splice(i, 1)[0]);
          }
          assert.deepEqual([...q], model);
          assert.equal(q.length, model.length);
          assert.equal(q.bytes, model.reduce((sum, d) => sum + d.message.payload.length, 0));
        }
      }),
      { numRuns: 500 },
    );
  });
});
