import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ExpirySchedule, MAX_DUE_PER_TURN } from '../../../src/broker/expiry-schedule.js';
import { Session } from '../../../src/session/session.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('session expiry schedule', () => {
  test('deadlines that fall together end a bounded number of sessions per turn, the rest in later turns, in order', async () => {
    const count = 2 * MAX_DUE_PER_TURN + 500;
    const ended: Session[] = [];
    const batches: number[] = [];
    let batch = 0;
    const schedule = new ExpirySchedule((session) => {
      if (batch === 0) {
        // runs once the turn that ended these sessions is over
        queueMicrotask(() => {
          batches.push(batch);
          batch = 0;
        });
      }
      batch++;
      ended.push(session);
    });
    const at = Date.now() + 20;
    const sessions: Session[] = [];
    for (let i = 0; i < count; i++) {
      const s = new Session(`c${i}`, 1);
      s.expiresAt = at + (i % 3 === 0 ? 0 : 1);
      sessions.push(s);
      schedule.add(s);
    }
    for (let waited = 0; ended.length < count && waited < 3000; waited += 10) await sleep(10);
    assert.equal(ended.length, count);
    assert.equal(new Set(ended).size, count, 'a session ended twice');
    for (let i = 1; i < count; i++) assert.ok((ended[i - 1]?.expiresAt as number) <= (ended[i]?.expiresAt as number), 'out of deadline order');
    assert.ok(batches.length >= 3, `ended in ${batches.length} turns: ${batches.join(', ')}`);
    assert.ok(Math.max(...batches) <= MAX_DUE_PER_TURN, `a turn ended ${Math.max(...batches)} sessions`);
    assert.equal(schedule.size, 0);
    schedule.clear();
  });

  test('clear() stops a schedule that is part way through a large batch of deadlines', async () => {
    let ended = 0;
    const schedule = new ExpirySchedule(() => {
      ended++;
      if (ended === MAX_DUE_PER_TURN) schedule.clear();
    });
    for (let i = 0; i < 3 * MAX_DUE_PER_TURN; i++) {
      const s = new Session(`c${i}`, 1);
      s.expiresAt = Date.now();
      schedule.add(s);
    }
    await sleep(50);
    assert.equal(ended, MAX_DUE_PER_TURN);
  });

  test('property: each scheduled session comes due once, not before its time; removed ones never do', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ delay: fc.integer({ min: 0, max: 60 }), removeAfter: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }), moveBy: fc.option(fc.integer({ min: -30, max: 30 }), { nil: undefined }) }), { maxLength: 40 }),
        async (plans) => {
          const due: Array<{ session: Session; at: number }> = [];
          const schedule = new ExpirySchedule((session) => due.push({ session, at: Date.now() }));
          const start = Date.now();
          const sessions = plans.map((p, i) => {
            const s = new Session(`c${i}`, 1);
            s.expiresAt = start + p.delay;
            schedule.add(s);
            return s;
          });
          // some are rescheduled (a later or earlier deadline), some leave (their client came back)
          plans.forEach((p, i) => {
            const s = sessions[i] as Session;
            if (p.moveBy !== undefined) {
              s.expiresAt = Math.max(start, (s.expiresAt as number) + p.moveBy);
              schedule.add(s);
            }
          });
          const removals = plans.map((p, i) =>
            p.removeAfter === undefined ? undefined : sleep(p.removeAfter).then(() => {
              const s = sessions[i] as Session;
              if (!due.some((d) => d.session === s)) schedule.remove(s);
            }),
          );
          await Promise.all(removals);
          await sleep(110);
          const seen = new Set<Session>();
          for (const d of due) {
            assert.ok(!seen.has(d.session), 'came due twice');
            seen.add(d.session);
            assert.ok(d.at >= (d.session.expiresAt as number), 'came due early');
            assert.equal(d.session.expirySlot, -1);
          }
          plans.forEach((p, i) => {
            const s = sessions[i] as Session;
            // one not removed, or removed only after it came due, came due
            if (p.removeAfter === undefined) assert.ok(seen.has(s), `c${i} never came due`);
          });
          for (const s of sessions) if (!seen.has(s)) assert.equal(s.expirySlot, -1, 'a removed session keeps no slot');
          assert.equal(schedule.size, 0);
          schedule.clear();
        },
      ),
      { numRuns: 25 },
    );
  });

  test('property: sessions come due in order of their deadlines, each once, whatever was added, moved or removed before', () => {
    type Op = { kind: 'add'; who: number; at: number } | { kind: 'remove'; who: number } | { kind: 'take'; until: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('add' as const), who: fc.nat(30), at: fc.nat(1000) }), weight: 4 },
      { arbitrary: fc.record({ kind: fc.constant('remove' as const), who: fc.nat(30) }), weight: 2 },
      { arbitrary: fc.record({ kind: fc.constant('take' as const), until: fc.nat(1000) }), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const schedule = new ExpirySchedule(() => assert.fail('no timer is due in this test'));
        const sessions = Array.from({ length: 31 }, (_, i) => new Session(`c${i}`, 1));
        // what is scheduled, and for when
        const model = new Map<Session, number>();
        for (const o of ops) {
          if (o.kind === 'add') {
            const s = sessions[o.who] as Session;
            // far in the future, so that the real timer stays out of it
            s.expiresAt = Date.now() + 3_600_000 + o.at;
            schedule.add(s);
            model.set(s, s.expiresAt);
          } else if (o.kind === 'remove') {
            const s = sessions[o.who] as Session;
            schedule.remove(s);
            model.delete(s);
          } else {
            const until = Date.now() + 3_600_000 + o.until;
            const due = schedule.takeDue(until);
            const expected = [...model].filter(([, at]) => at <= until).map(([s]) => s);
            assert.deepEqual(new Set(due), new Set(expected));
            assert.equal(due.length, expected.length);
            for (let i = 1; i < due.length; i++) assert.ok((due[i - 1] as Session).expiresAt as number <= ((due[i] as Session).expiresAt as number));
            for (const s of due) model.delete(s);
          }
          assert.equal(schedule.size, model.size);
        }
        schedule.clear();
      }),
      { numRuns: 300 },
    );
  });
});
