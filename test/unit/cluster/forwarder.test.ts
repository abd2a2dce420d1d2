import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { Forwarder, type ForwardCounters, type InboxLink } from '../../../src/cluster/forwarder.js';
import type { RoutePlan } from '../../../src/cluster/route-index.js';
import type { QoS } from '../../../src/codec/packets.js';
import { createMessage } from '../../../src/session/message.js';
import { packBatch, packFrame, unpackFrames } from '../../../src/cluster/wire.js';
import { Packr } from 'msgpackr';

const MAX = 1000;
const clock = { now: () => 0 };

/** Inboxes kept in memory: what each node was sent, and the bytes waiting there as a test sets them. */
class Inboxes implements InboxLink {
  readonly appended = new Map<string, Buffer[]>();
  readonly waiting = new Map<string, number>();
  readonly live = new Set(['b', 'c']);
  failNext = false;

  async append(node: string, batch: Buffer): Promise<number> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('Redis is gone');
    }
    const list = this.appended.get(node) ?? [];
    list.push(batch);
    this.appended.set(node, list);
    return this.waiting.get(node) ?? 0;
  }

  async backlog(node: string): Promise<number> {
    return this.waiting.get(node) ?? 0;
  }

  isLive(node: string): boolean {
    return this.live.has(node);
  }

  messagesFor(node: string): number {
    return (this.appended.get(node) ?? []).reduce((n, batch) => n + unpackFrames(batch).length, 0);
  }
}

function setup(): { fwd: Forwarder; inboxes: Inboxes; counters: ForwardCounters } {
  const inboxes = new Inboxes();
  const counters = { forwarded: 0, forwardFailed: 0, forwardDropped: 0, backlogWaits: 0, replicaWaitsFailed: 0 };
  return { fwd: new Forwarder(inboxes, counters, MAX), inboxes, counters };
}

function planFor(...nodes: string[]): RoutePlan {
  return { nodes: new Map(nodes.map((n) => [n, []])), localGroups: new Set() };
}

/** Forwards one message, as BrokerCore does: route, then ask when its acknowledgement may go. */
function forward(fwd: Forwarder, qos: QoS, ...nodes: string[]): Promise<void> | undefined {
  if (nodes.length > 0) fwd.send(createMessage('t', Buffer.from('x'), qos, false, undefined, clock, 'pub'), planFor(...nodes), 0, 1);
  return qos === 0 ? undefined : fwd.sent();
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const settled = (p: Promise<unknown>): Promise<boolean> => Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 60))]);

describe('Forwarder: messages to other nodes, with flow control', () => {
  test("a turn's messages for a node go as one inbox entry, in order; acknowledgements wait until Redis has them", async () => {
    const { fwd, inboxes, counters } = setup();
    const acks = [forward(fwd, 1, 'b'), forward(fwd, 1, 'b', 'c'), forward(fwd, 0, 'b')];
    assert.equal(acks[0], acks[1], 'one promise per turn, not per message');
    await acks[1];
    assert.equal(inboxes.appended.get('b')?.length, 1);
    assert.equal(inboxes.messagesFor('b'), 3);
    assert.equal(inboxes.messagesFor('c'), 1);
    assert.equal(counters.forwarded, 4);
    assert.equal(fwd.sent(), undefined, 'nothing on its way once it settled');
  });

  test('past maxBacklog a node holds the acknowledgements of every later turn, even of messages that did not go to it, until it is under half, so acknowledgements keep the order messages came in', async () => {
    const { fwd, inboxes, counters } = setup();
    inboxes.waiting.set('b', MAX + 1);
    const first = forward(fwd, 1, 'b') as Promise<void>;
    await turn();
    // a message for a node that is keeping up, and one that went nowhere but must not be acknowledged first
    const second = forward(fwd, 1, 'c') as Promise<void>;
    await turn();
    const third = forward(fwd, 1) as Promise<void>;
    assert.ok(third !== undefined);
    const order: number[] = [];
    for (const [i, p] of [first, second, third].entries()) void p.then(() => order.push(i + 1));
    assert.equal(await settled(first), false, 'held while the node is behind');
    assert.equal(counters.backlogWaits, 1);
    inboxes.waiting.set('b', MAX / 2 + 1);
    assert.equal(await settled(first), false, 'still held above half');
    inboxes.waiting.set('b', MAX / 2);
    await third;
    assert.deepEqual(order, [1, 2, 3]);
  });

  test('QoS 0 for a node that is behind is dropped and counted; QoS 1 still goes', async () => {
    const { fwd, inboxes, counters } = setup();
    inboxes.waiting.set('b', MAX * 2);
    void forward(fwd, 1, 'b');
    await turn();
    await turn();
    forward(fwd, 0, 'b', 'c');
    void forward(fwd, 1, 'b');
    await turn();
    await turn();
    assert.equal(counters.forwardDropped, 1);
    assert.equal(inboxes.messagesFor('b'), 2);
    assert.equal(inboxes.messagesFor('c'), 1);
    fwd.stop();
  });

  test('a node that leaves the cluster releases the publishers waiting for it', async () => {
    const { fwd, inboxes } = setup();
    inboxes.waiting.set('b', MAX + 1);
    const held = forward(fwd, 1, 'b') as Promise<void>;
    assert.equal(await settled(held), false);
    inboxes.live.delete('b');
    assert.equal(await settled(held), true);
  });

  test('a gone node whose routes are kept a while (it left persistent sessions) is sent messages, and holds no publisher however much waits for it', async () => {
    const { fwd, inboxes, counters } = setup();
    inboxes.live.delete('b');
    inboxes.waiting.set('b', MAX + 1);
    await forward(fwd, 1, 'b');
    assert.equal(await settled(forward(fwd, 1, 'b') as Promise<void>), true);
    forward(fwd, 0, 'b');
    await turn();
    assert.equal(inboxes.messagesFor('b'), 3);
    assert.equal(counters.backlogWaits, 0);
    assert.equal(counters.forwardDropped, 0);
  });

  test('a frame other than a message goes in the same inbox entry as the messages around it, in its place; it is not counted as a message', async () => {
    const { fwd, inboxes, counters } = setup();
    forward(fwd, 0, 'b');
    fwd.sendFrame('b', packFrame({ kind: 'adopted', from: 'a', clientId: 'dev' }));
    await forward(fwd, 1, 'b');
    const frames = unpackFrames((inboxes.appended.get('b') ?? [])[0] as Buffer);
    assert.deepEqual(frames.map((f) => f.kind), ['message', 'adopted', 'message']);
    assert.deepEqual(frames.map((f) => (f.kind === 'message' ? f.n : undefined)), [1, undefined, 1], "a message frame carries the message's number at its sender");
    assert.equal(counters.forwarded, 2);
    inboxes.failNext = true;
    fwd.sendFrame('b', packFrame({ kind: 'release', from: 'a', clientId: 'dev' }));
    await turn();
    await turn();
    assert.equal(counters.forwardFailed, 0, 'a frame lost with Redis is not a message lost');
  });

  test('with replicas required, a turn settles once they have it, and rejects (counted) when they did not in time', async () => {
    const { inboxes, counters } = setup();
    let answer = true;
    const fwd = new Forwarder(Object.assign(inboxes, { replicated: async () => answer }), counters, MAX);
    await forward(fwd, 1, 'b');
    answer = false;
    await assert.rejects(forward(fwd, 1, 'b') as Promise<void>, /^Error: cluster: fewer Redis replicas than clusterWaitReplicas had it in time$/);
    assert.equal(counters.replicaWaitsFailed, 1);
    assert.equal(forward(fwd, 0, 'b'), undefined, 'QoS 0 does not wait');
  });

  test("a frame of a kind this version does not know (a newer node's) is left out of its batch, and the messages with it still arrive; bytes that are no frame are refused", () => {
    const message = packFrame({ kind: 'message', body: Buffer.from('x'), groups: null, n: 7 });
    const newer = new Packr({ useRecords: false }).pack(['Z', 'from a later version']);
    const frames = unpackFrames(packBatch([message, newer, message]));
    assert.deepEqual(frames.map((f) => f.kind), ['message', 'message']);
    assert.throws(() => unpackFrames(new Packr().pack('hello')), /not a cluster frame/);
  });

  test('a message redispatched to shared groups alone says so; other messages do not carry the mark', () => {
    const [shared, plain] = unpackFrames(
      packBatch([packFrame({ kind: 'message', body: Buffer.from('x'), groups: ['$share/g/t'], n: 3, sharedOnly: true }), packFrame({ kind: 'message', body: Buffer.from('y'), groups: ['$share/g/t'], n: 4 })]),
    );
    assert.deepEqual(shared, { kind: 'message', body: Buffer.from('x'), groups: ['$share/g/t'], n: 3, sharedOnly: true });
    assert.deepEqual(plain, { kind: 'message', body: Buffer.from('y'), groups: ['$share/g/t'], n: 4 });
  });

  test('a write included in a turn (a QoS 1/2 retained message) holds its acknowledgements until Redis has it, then the replicas; one Redis refused rejects them', async () => {
    const { inboxes, counters } = setup();
    const replicaChecks: number[] = [];
    let written = false;
    const fwd = new Forwarder(Object.assign(inboxes, { replicated: async () => replicaChecks.push(written ? 1 : 0) > 0 }), counters, MAX);
    let land: () => void = () => undefined;
    fwd.include(new Promise<void>((resolve) => (land = resolve)).then(() => void (written = true)));
    // no node takes the message: the retained write alone is waited for
    const acked = forward(fwd, 1) as Promise<void>;
    let settled = false;
    void acked.then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'acknowledged before Redis had the retained message');
    land();
    await acked;
    assert.deepEqual(replicaChecks, [1], 'the replicas were asked once the write was done');
    fwd.include(Promise.reject(new Error('Redis is gone')));
    await assert.rejects(forward(fwd, 1) as Promise<void>, /^Error: cluster: a retained message could not be shared with the other nodes$/);
    await forward(fwd, 1, 'b');
  });

  test('a turn Redis did not take rejects its acknowledgements, counted; the next turn goes on', async () => {
    const { fwd, inboxes, counters } = setup();
    inboxes.failNext = true;
    const failed = forward(fwd, 1, 'b') as Promise<void>;
    await assert.rejects(failed, /cluster: a message could not be forwarded/);
    assert.equal(counters.forwardFailed, 1);
    await forward(fwd, 2, 'b');
    assert.equal(inboxes.messagesFor('b'), 1);
  });
});
