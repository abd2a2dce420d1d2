import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { Membership, type MembershipScripts } from '../../../src/cluster/membership.js';
import { RouteIndex } from '../../../src/cluster/route-index.js';

const TIMEOUT = 5000;
const LINGER = 150;
const MAX_LINGER = 60_000;

/** A node's membership against a heartbeat script whose answers the test sets. */
function setup(): {
  members: Membership;
  index: RouteIndex;
  clock: { t: number };
  answer: { added: number; live: string[]; fail: boolean; untaken: string[] };
  joined: string[];
  readmitted: { count: number };
  gone: string[];
} {
  const clock = { t: 0 };
  const answer = { added: 0, live: ['self'], fail: false, untaken: [] as string[] };
  const scripts: MembershipScripts = {
    midgeHeartbeat: async () => {
      if (answer.fail) throw new Error('Redis is gone');
      return [answer.added, [...answer.live], [], [...answer.untaken]];
    },
  };
  const index = new RouteIndex('self');
  const joined: string[] = [];
  const readmitted = { count: 0 };
  const gone: string[] = [];
  const members = new Membership({} as Redis, scripts, { nodeId: 'self', prefix: 'p', nodeTimeoutMs: TIMEOUT, routeLingerMs: LINGER, maxRouteLingerMs: MAX_LINGER, now: () => clock.t }, index, {
    joined: (node) => joined.push(node),
    readmitted: async () => void readmitted.count++,
    orphans: () => undefined,
    gone: (node) => gone.push(node),
  });
  return { members, index, clock, answer, joined, readmitted, gone };
}

describe('Membership: which nodes are in the cluster', () => {
  test("a node missing from the heartbeat's live set keeps its routes for a node timeout (Redis may have come back empty), then loses them", async () => {
    const { members, index, clock, answer } = setup();
    answer.live = ['self', 'b'];
    await members.heartbeat(true);
    index.replaceNode('b', ['t/#']);
    answer.live = ['self'];
    await members.heartbeat();
    assert.equal(members.isLive('b'), false);
    clock.t = TIMEOUT - 1;
    await members.heartbeat();
    assert.deepEqual([...index.filtersOf('b')], ['t/#'], 'kept within the timeout');
    // it registers again in time: nothing is lost, and the clock starts over next time it goes missing
    answer.live = ['self', 'b'];
    await members.heartbeat();
    answer.live = ['self'];
    clock.t = TIMEOUT + 10;
    await members.heartbeat();
    assert.deepEqual([...index.filtersOf('b')], ['t/#']);
    clock.t = 2 * TIMEOUT + 10;
    await members.heartbeat();
    assert.equal(index.filtersOf('b').size, 0, 'dropped after a timeout missing');
  });

  test("a node that says it left ('down') loses its routes at once; one that says it came ('up') has them read", () => {
    const { members, index, joined } = setup();
    members.nodeEvent('up b');
    assert.equal(members.isLive('b'), true);
    assert.deepEqual(joined, ['b']);
    index.replaceNode('b', ['x']);
    members.nodeEvent('down b');
    assert.equal(members.isLive('b'), false);
    assert.equal(index.filtersOf('b').size, 0);
    members.nodeEvent('down self');
    members.nodeEvent('up self');
    assert.deepEqual(joined, ['b'], "this node's own events are not news");
  });

  test("a node that left persistent sessions ('down <node> sessions') keeps its direct routes for the linger, through missed and stale heartbeats, then loses them; back within it, it keeps them", async () => {
    const { members, index, clock, answer, gone } = setup();
    members.nodeEvent('up b');
    index.replaceNode('b', ['s/#', '$share/g/s/#']);
    members.nodeEvent('down b sessions');
    assert.deepEqual(gone, ['b'], 'told, after its shares went (its shared-subscription messages are redispatched)');
    assert.equal(members.isLive('b'), false);
    assert.equal(members.routesTo('b'), true);
    assert.deepEqual([...index.filtersOf('b')], ['s/#'], "its shares of shared groups go to the groups' other members at once");
    // a heartbeat answered just before it left does not bring it back
    answer.live = ['self', 'b'];
    await members.heartbeat();
    assert.equal(members.isLive('b'), false);
    answer.live = ['self'];
    // missing from the live set for longer than a node timeout does not drop them early
    await members.heartbeat();
    clock.t = 2 * TIMEOUT;
    await members.heartbeat();
    assert.deepEqual([...index.filtersOf('b')], ['s/#'], 'kept while lingering');
    await delay(LINGER + 50);
    assert.equal(index.filtersOf('b').size, 0, 'dropped after the linger');
    assert.equal(members.routesTo('b'), false);

    members.nodeEvent('up c');
    index.replaceNode('c', ['c/#']);
    members.nodeEvent('down c sessions');
    members.nodeEvent('up c');
    await delay(LINGER + 50);
    assert.deepEqual([...index.filtersOf('c')], ['c/#'], 'back within the linger: its routes are its own again');
    assert.equal(members.routesTo('c'), true);
  });

  test('the routes of a gone node are kept past the linger while the heartbeat lists sessions it left that are not taken up yet, up to a bound', async () => {
    const { members, index, clock, answer } = setup();
    members.nodeEvent('up d');
    index.replaceNode('d', ['d/#']);
    members.nodeEvent('down d sessions');
    answer.untaken = ['d'];
    await members.heartbeat();
    await delay(LINGER + 50);
    assert.deepEqual([...index.filtersOf('d')], ['d/#'], 'kept: its sessions are still being taken up');
    assert.equal(members.routesTo('d'), true);
    answer.untaken = [];
    await members.heartbeat();
    await delay(LINGER + 50);
    assert.equal(index.filtersOf('d').size, 0, 'dropped once they are all taken up');

    members.nodeEvent('up e');
    index.replaceNode('e', ['e/#']);
    members.nodeEvent('down e sessions');
    answer.untaken = ['e'];
    await members.heartbeat();
    clock.t += MAX_LINGER;
    await delay(LINGER + 50);
    assert.equal(index.filtersOf('e').size, 0, 'not kept past the bound');
    assert.equal(members.routesTo('e'), false);
  });

  test("a node the heartbeat lists but that was never heard of (its 'up' was missed) has its routes read", async () => {
    const { members, answer, joined } = setup();
    await members.heartbeat(true);
    answer.live = ['self', 'late'];
    await members.heartbeat();
    assert.deepEqual(joined, ['late']);
    await members.heartbeat();
    assert.deepEqual(joined, ['late'], 'once');
  });

  test('a node registered again after it was declared dead publishes its routes again; a failed heartbeat changes nothing, except at joining', async () => {
    const { members, answer, readmitted } = setup();
    answer.added = 1;
    await members.heartbeat(true);
    assert.equal(readmitted.count, 0, 'joining registers the routes itself');
    await members.heartbeat();
    assert.equal(readmitted.count, 1);
    answer.added = 0;
    answer.live = ['self', 'b'];
    await members.heartbeat();
    answer.fail = true;
    await members.heartbeat();
    assert.equal(members.isLive('b'), true);
    assert.equal(members.size, 2);
    await assert.rejects(members.heartbeat(true), /Redis is gone/);
  });

  test('a readmission is made once, whichever heartbeat finds this node registered again (the periodic one or the resync after a reconnection); heartbeats go on meanwhile, the inbox gate opens after it, and a node found missing again meanwhile is readmitted again', async () => {
    const clock = { t: 0 };
    const answers = [1, 1, 0, 0, 1];
    let release: () => void = () => undefined;
    let readmissions = 0;
    const scripts: MembershipScripts = { midgeHeartbeat: async () => [answers.shift() ?? 0, ['self'], []] };
    const members = new Membership({} as Redis, scripts, { nodeId: 'self', prefix: 'p', nodeTimeoutMs: TIMEOUT, routeLingerMs: LINGER, maxRouteLingerMs: MAX_LINGER, now: () => clock.t }, new RouteIndex('self'), {
      joined: () => undefined,
      readmitted: () => {
        readmissions++;
        return new Promise<void>((resolve) => (release = resolve));
      },
      orphans: () => undefined,
      gone: () => undefined,
    });
    await members.heartbeat(true);
    assert.equal(readmissions, 0, 'joining is no readmission');
    clock.t = TIMEOUT;
    assert.equal(members.maybeDropped, true);
    let gateOpen = false;
    void members.nextBeat().then(() => (gateOpen = true));
    // neither heartbeat waits for the readmission: this node must not be found dead again meanwhile
    await Promise.all([members.heartbeat(), members.heartbeat(true)]);
    await members.heartbeat();
    assert.equal(readmissions, 1, 'once');
    assert.equal(gateOpen, false, 'the gate waits for the readmission');
    assert.equal(members.maybeDropped, true);
    // found missing again while it runs: its routes were dropped again
    await members.heartbeat();
    release();
    await delay(10);
    assert.equal(readmissions, 2, 'made again');
    assert.equal(gateOpen, false);
    release();
    await delay(10);
    assert.equal(gateOpen, true);
    assert.equal(members.maybeDropped, false);
    assert.equal(readmissions, 2);
  });
});
