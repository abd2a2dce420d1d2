import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import type { ClusterHost } from '../../../src/broker/cluster-port.js';
import { GoneInboxes } from '../../../src/cluster/gone-inboxes.js';
import type { RedisClient } from '../../../src/cluster/redis-target.js';
import { packFrame, packMessage } from '../../../src/cluster/wire.js';
import { createMessage, type Message } from '../../../src/session/message.js';
import { Session } from '../../../src/session/session.js';
import { topicMatches } from '../../../src/topic/match.js';

type StreamEntry = [Buffer, Buffer[]];

/**
 * A gone node's inbox as a stream the test appends to, a node routing to the sessions it holds
 * (each subscribed to `<client id>/#`), and what each session was given.
 */
function setup(): {
  gone: GoneInboxes;
  inbox: StreamEntry[];
  append: (from: string, n: number, topic: string, run?: string) => void;
  given: Map<string, string[]>;
  sessions: Map<string, Session>;
  state: { live: boolean; routed: boolean; failing: boolean; reads: number; routeCalls: number; handled: string };
} {
  const inbox: StreamEntry[] = [];
  const given = new Map<string, string[]>();
  const sessions = new Map<string, Session>();
  const state = { live: false, routed: true, failing: false, reads: 0, routeCalls: 0, handled: '0-0' };
  let seq = 0;
  const clock = { now: () => Date.now() };
  const append = (from: string, n: number, topic: string, run = 'r1'): void => {
    const message = createMessage(topic, Buffer.from(`${from}:${n}`), 1, false, undefined, clock, 'pub');
    const frame = packFrame({ kind: 'message', body: packMessage(message, Date.now()), groups: null, n });
    inbox.push([Buffer.from(`${Date.now()}-${seq++}`), [Buffer.from('m'), frame, Buffer.from('f'), Buffer.from(from), Buffer.from('r'), Buffer.from(run)]]);
  };
  const idOf = (e: StreamEntry): [number, number] => e[0].toString().split('-').map(Number) as [number, number];
  const cmd = {
    xrangeBuffer: async (_key: string, start: string, end: string): Promise<StreamEntry[]> => {
      state.reads++;
      if (state.failing) throw new Error('Redis is out of reach');
      const [ms, s] = start === '-' ? [0, 0] : (start.split('-').map(Number) as [number, number]);
      const [endMs, endS] = end === '+' ? [Infinity, Infinity] : (end.split('-').map(Number) as [number, number]);
      return inbox.filter((e) => {
        const [ems, es] = idOf(e);
        return (ems > ms || (ems === ms && es >= s)) && (ems < endMs || (ems === endMs && es <= endS));
      });
    },
  } as unknown as RedisClient;
  const core = {
    now: () => Date.now(),
    routeRemote: (message: Message, _shared: unknown, only?: (s: Session) => boolean): number => {
      state.routeCalls++;
      let reached = 0;
      for (const s of sessions.values()) {
        if (!topicMatches(`${s.clientId}/#`, message.topic) || (only !== undefined && !only(s))) continue;
        given.set(s.clientId, [...(given.get(s.clientId) ?? []), message.payload.toString()]);
        reached++;
      }
      return reached;
    },
    reportFault: (err: unknown) => {
      throw err;
    },
  } as unknown as ClusterHost;
  const gone = new GoneInboxes({
    nodeId: 'here',
    prefix: 'p',
    core,
    cmd,
    logger: pino({ level: 'silent' }),
    counters: { goneInboxMessages: 0 },
    isLive: () => state.live,
    routesTo: () => state.routed,
    routesShared: () => undefined,
    ownHandled: () => state.handled,
    noteRoute: () => undefined,
  });
  return { gone, inbox, append, given, sessions, state };
}

function take(sessions: Map<string, Session>, id: string): Session {
  const s = new Session(id, 3600);
  sessions.set(id, s);
  return s;
}

describe('GoneInboxes: what a gone node was sent, for the sessions taken from it', () => {
  test('a session is given what its node was sent for it, in order, and then what arrives there while it is still routed to', async () => {
    const { gone, append, given, sessions } = setup();
    append('x', 1, 'a/1');
    append('x', 2, 'other/1');
    append('x', 3, 'a/2');
    await gone.took('dead', take(sessions, 'a'));
    assert.deepEqual(given.get('a'), ['x:1', 'x:3']);
    append('x', 4, 'a/3');
    await delay(450);
    assert.deepEqual(given.get('a'), ['x:1', 'x:3', 'x:4']);
    gone.stop();
  });

  test('sessions taken in one turn are given what was read in one pass; one taken later is given it too', async () => {
    const { gone, append, given, sessions, state } = setup();
    append('x', 1, 'a/1');
    append('x', 2, 'b/1');
    await gone.took('dead', take(sessions, 'a'));
    const calls = state.routeCalls;
    const ids = Array.from({ length: 50 }, (_, i) => `s${i}`);
    for (const id of ids) append('x', 10 + ids.indexOf(id), `${id}/1`);
    await Promise.all(ids.map((id) => gone.took('dead', take(sessions, id))));
    for (const id of ids) assert.deepEqual(given.get(id), [`x:${10 + ids.indexOf(id)}`], id);
    // the first session's pass and the reads, not one replay per session taken
    assert.ok(state.routeCalls - calls < 3 * 52, `route calls: ${state.routeCalls - calls}`);
    await gone.took('dead', take(sessions, 'b'));
    assert.deepEqual(given.get('b'), ['x:2']);
    assert.deepEqual(given.get('a'), ['x:1'], 'nothing twice to the first');
    gone.stop();
  });

  test("this node's own inbox (a session of its earlier run) is read only as far as its reader has handled it: the reader gives the session the rest, once", async () => {
    const { gone, inbox, append, given, sessions, state } = setup();
    for (let n = 1; n <= 4; n++) append('x', n, `a/${n}`);
    state.handled = (inbox[1] as StreamEntry)[0].toString();
    await gone.took('here', take(sessions, 'a'));
    assert.deepEqual(given.get('a'), ['x:1', 'x:2'], 'what the reader handled before the session was here');
    // the reader goes on and gives the session the rest itself
    for (const n of [3, 4]) assert.equal(gone.arrived('x', 'r1', n), undefined);
    state.handled = (inbox[3] as StreamEntry)[0].toString();
    await delay(450);
    assert.deepEqual(given.get('a'), ['x:1', 'x:2'], 'not again from the inbox');
    gone.stop();
  });

  test('what reached this node itself after a session was taken is skipped in the inbox, and what the inbox gave it first is told to the direct copy', async () => {
    const { gone, append, given, sessions } = setup();
    const a = take(sessions, 'a');
    await gone.took('dead', a);
    // a direct copy first: the inbox copy is skipped
    assert.equal(gone.arrived('y', 'r1', 7), undefined);
    append('y', 7, 'a/1');
    // the inbox copy first: the direct copy is told which sessions had it
    append('y', 8, 'a/2');
    await delay(450);
    assert.deepEqual(given.get('a'), ['y:8']);
    assert.deepEqual([...(gone.arrived('y', 'r1', 8) ?? [])], [a]);
    gone.stop();
    assert.equal(gone.following, false, 'nothing is logged once nothing is followed');
  });

  test('a sender restarted numbers its messages from 1 again: its messages are told from those of its earlier run with the same numbers, both ways', async () => {
    const { gone, append, given, sessions } = setup();
    const a = take(sessions, 'a');
    await gone.took('dead', a);
    // the earlier run's 5th came through the inbox; the new run's 5th, straight here, is another message
    append('y', 5, 'a/1', 'r1');
    await delay(450);
    assert.equal(gone.arrived('y', 'r2', 5), undefined, 'not taken for the one the inbox gave');
    assert.deepEqual([...(gone.arrived('y', 'r1', 5) ?? [])], [a], 'the same run and number is the same message');
    // the earlier run's 3rd came straight here; the new run's 3rd in the inbox is another message
    assert.equal(gone.arrived('z', 'r1', 3), undefined);
    append('z', 3, 'a/2', 'r2');
    await delay(450);
    assert.deepEqual(given.get('a'), ['y:5', 'z:3']);
    gone.stop();
  });

  test('reading ends 2 s after the node is no longer routed to; not while reads fail; at once when the node is back', async () => {
    const { gone, append, given, sessions, state } = setup();
    await gone.took('dead', take(sessions, 'a'));
    state.routed = false;
    state.failing = true;
    await delay(2600);
    assert.equal(gone.following, true, 'still following while nothing could be read');
    append('x', 1, 'a/1');
    state.failing = false;
    await delay(450);
    assert.deepEqual(given.get('a'), ['x:1'], 'read once Redis answers');
    await delay(400);
    assert.equal(gone.following, false, 'then it ends');

    await gone.took('back', take(sessions, 'b'));
    state.routed = true;
    await delay(300);
    state.live = true;
    await delay(450);
    assert.equal(gone.following, false, 'a node seen gone and live again reads its inbox itself');
    const reads = state.reads;
    await delay(450);
    assert.equal(state.reads, reads, 'no more reads');
    gone.stop();
  });
});
