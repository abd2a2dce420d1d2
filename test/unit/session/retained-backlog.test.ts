import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { QoS } from '../../../src/codec/packets.js';
import { createMessage, type Delivery, type Message } from '../../../src/session/message.js';
import { Session, type SessionTotals } from '../../../src/session/session.js';

const clock = { now: (): number => 0 };
const message = (topic: string, size: number, qos: QoS): Message => createMessage(topic, Buffer.alloc(size), qos, true, undefined, clock, undefined);

const op = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('owe' as const), filter: fc.constantFrom('a/#', 'b/#', '#'), sizes: fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.constantFrom<QoS>(0, 1, 2)), { maxLength: 12 }), qos: fc.constantFrom<QoS>(0, 1, 2) }), weight: 3 },
  { arbitrary: fc.constant({ kind: 'take' as const }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('forget' as const), filter: fc.constantFrom('a/#', 'b/#', '#') }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'clear' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('journal' as const), max: fc.integer({ min: 0, max: 8 }) }), weight: 2 },
);

describe('retained messages owed to a session', () => {
  test('property: owed messages leave in the order owed at the lower of their QoS and the granted one, a filter owed again or forgotten loses what it still owed, the limit holds, and the totals and the journal follow', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.array(op, { maxLength: 60 }), (limit, ops) => {
        const totals: SessionTotals = { queued: 0, queuedBytes: 0, inflight: 0 };
        const s = new Session('c', 0, totals);
        // a persistent session's journal holds the QoS 1/2 ones owed, like queued messages
        const journaled = new Set<Delivery>();
        s.journal = {
          queued: (d) => journaled.add(d),
          unqueued: (d) => assert.ok(journaled.delete(d), 'unqueued what was never queued'),
          inflight: () => undefined,
          inflightDone: () => undefined,
          incomingQos2: () => undefined,
          journalLater: () => {
            later = true;
          },
          owedStored: () => Promise.resolve(),
        };
        let later = false;
        // what is owed, in order, with the filter and QoS it is owed for
        let model: Array<{ m: Message; filter: string; qos: QoS }> = [];
        let n = 0;
        for (const o of ops) {
          if (o.kind === 'owe') {
            const messages = o.sizes.map(([size, qos]) => message(`t/${n++}`, size, qos));
            const offered = [...messages];
            model = model.filter((e) => e.filter !== o.filter);
            const refused = s.oweRetained(o.filter, messages, o.qos, undefined, limit);
            const room = Math.max(0, limit - model.length);
            assert.equal(refused, Math.max(0, offered.length - room));
            for (const m of offered.slice(0, offered.length - refused)) model.push({ m, filter: o.filter, qos: o.qos });
          } else if (o.kind === 'take') {
            const owed = s.retained;
            const next = model.shift();
            if (next === undefined) {
              assert.equal(owed, undefined);
              continue;
            }
            const d = owed?.peek();
            assert.equal(d?.message, next.m);
            assert.equal(d?.qos, Math.min(next.m.qos, next.qos));
            assert.equal(d?.retain, true);
            assert.equal(s.takeRetained(), d);
          } else if (o.kind === 'forget') {
            model = model.filter((e) => e.filter !== o.filter);
            s.forgetRetained(o.filter);
          } else if (o.kind === 'journal') {
            s.journalOwed(o.max);
          } else {
            model = [];
            s.clear();
            // the session ended: its store rows go with it, not one by one
            journaled.clear();
          }
          assert.equal(s.retained?.count ?? 0, model.length);
          assert.equal(s.waiting, model.length);
          assert.ok(model.length <= Math.max(limit, 0));
          assert.equal(totals.queued, model.length, 'the broker-wide count drifted');
          // the journal holds the oldest of what is owed, in order: all of it once asked for all
          const owedQos12 = model.filter((e) => Math.min(e.m.qos, e.qos) > 0).map((e) => e.m);
          const inJournal = [...journaled].map((d) => d.message);
          assert.deepEqual(inJournal, owedQos12.slice(0, inJournal.length), 'the journal is not the front of what is owed');
          if (inJournal.length < owedQos12.length) assert.ok(later, 'owed messages left out of the journal with no later turn asked for');
          // what a SUBACK waits for (retainedStored) is over only once all that is owed is journaled
          if (s.retained === undefined || s.retained.journaledUpTo(s.retained.mark)) assert.equal(inJournal.length, owedQos12.length, 'said to be journaled with some still out');
          assert.equal(totals.queuedBytes, model.reduce((a, e) => a + e.m.payload.length, 0), 'the broker-wide byte count drifted');
        }
        s.journalOwed(Infinity);
        assert.deepEqual([...journaled].map((d) => d.message), model.filter((e) => Math.min(e.m.qos, e.qos) > 0).map((e) => e.m));
      }),
      { numRuns: 300 },
    );
  });
});
