import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RouteIndex, type RoutePlan } from '../../../src/cluster/route-index.js';
import { topicMatches } from '../../../src/topic/match.js';

const NODES = ['self', 'n1', 'n2', 'n3'];
const LEVELS = ['a', 'b', '+'];

const filterArb = fc
  .tuple(fc.array(fc.constantFrom(...LEVELS), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.option(fc.constantFrom('g1', 'g2'), { nil: undefined }))
  .map(([levels, hash, group]) => {
    const filter = hash ? [...levels, '#'].join('/') : levels.join('/');
    return group === undefined ? filter : `$share/${group}/${filter}`;
  });
const opArb = fc.record({ add: fc.boolean(), node: fc.constantFrom(...NODES), filter: filterArb });
const topicArb = fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));

function newPlan(): RoutePlan {
  return { nodes: new Map(), localGroups: new Set() };
}

describe('RouteIndex: the cluster route table', () => {
  test('sends a topic to exactly the other nodes with a matching filter, and each matching shared group to one node that has members', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), fc.array(topicArb, { minLength: 1, maxLength: 5 }), (ops, topics) => {
        const index = new RouteIndex('self');
        const model = new Map<string, Set<string>>();
        for (const op of ops) {
          const set = model.get(op.node) ?? new Set<string>();
          model.set(op.node, set);
          if (op.add) {
            index.add(op.node, op.filter);
            set.add(op.filter);
          } else {
            index.remove(op.node, op.filter);
            set.delete(op.filter);
          }
        }
        const plan = newPlan();
        for (const topic of topics) {
          index.plan(topic, plan);
          const direct = new Set<string>();
          const groups = new Map<string, Set<string>>();
          for (const [node, filters] of model) {
            for (const f of filters) {
              const m = /^\$share\/([^/]+)\/(.*)$/.exec(f);
              if (m === null) {
                if (node !== 'self' && topicMatches(f, topic)) direct.add(node);
              } else if (topicMatches(m[2] as string, topic)) {
                const holders = groups.get(f) ?? new Set<string>();
                holders.add(node);
                groups.set(f, holders);
              }
            }
          }
          // every group goes to exactly one of its nodes
          const chosen = new Map<string, string>();
          for (const g of plan.localGroups) chosen.set(g, 'self');
          for (const [node, gs] of plan.nodes) {
            for (const g of gs) {
              assert.ok(!chosen.has(g), `${g} sent twice`);
              chosen.set(g, node);
            }
          }
          assert.deepEqual(new Set(chosen.keys()), new Set(groups.keys()));
          for (const [g, node] of chosen) assert.ok(groups.get(g)?.has(node), `${g} to ${node}, which has no member`);
          // nodes are sent the message for their direct subscribers, or for a group they take
          for (const [node, gs] of plan.nodes) assert.ok(direct.has(node) || gs.length > 0, `${node} sent a message it has no use for`);
          for (const node of direct) assert.ok(plan.nodes.has(node), `${node} missed`);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a shared group on three nodes takes turns among them', () => {
    const index = new RouteIndex('self');
    for (const n of ['self', 'n1', 'n2']) index.add(n, '$share/g/jobs/#');
    const plan = newPlan();
    const counts = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      index.plan('jobs/1', plan);
      const node = plan.localGroups.size > 0 ? 'self' : ([...plan.nodes.keys()][0] as string);
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { self: 10, n1: 10, n2: 10 });
  });

  test('a plan for some shared groups alone (a gone node\'s messages redispatched) leaves out the direct subscribers and the other groups', () => {
    const index = new RouteIndex('self');
    index.add('n1', 'jobs/#');
    index.add('n1', '$share/g/jobs/#');
    index.add('n2', '$share/h/jobs/#');
    index.add('self', '$share/k/jobs/+');
    const plan = newPlan();
    index.plan('jobs/1', plan, new Set(['$share/g/jobs/#', '$share/k/jobs/+']));
    assert.deepEqual([...plan.nodes], [['n1', ['$share/g/jobs/#']]]);
    assert.deepEqual([...plan.localGroups], ['$share/k/jobs/+']);
    index.plan('jobs/1', plan, new Set(['$share/x/jobs/#']));
    assert.equal(plan.nodes.size + plan.localGroups.size, 0, 'no such group');
  });

  test("replacing a node's routes drops what it no longer has", () => {
    const index = new RouteIndex('self');
    index.add('n1', 'a/#');
    index.add('n1', '$share/g/b');
    index.replaceNode('n1', ['c']);
    const plan = newPlan();
    index.plan('a/x', plan);
    assert.equal(plan.nodes.size, 0);
    index.plan('b', plan);
    assert.equal(plan.nodes.size, 0);
    index.plan('c', plan);
    assert.deepEqual([...plan.nodes.keys()], ['n1']);
    index.removeNode('n1');
    index.plan('c', plan);
    assert.equal(plan.nodes.size, 0);
    assert.deepEqual(index.nodes, []);
  });
});
