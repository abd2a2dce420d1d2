import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropsBetween, parseDrops } from '../../../src/bench/broker-drops.js';

test("a cluster node's forwards it dropped or could not hand to Redis count with its deliveries dropped", () => {
  const text = [
    '# HELP midge_messages_dropped_total Deliveries not made, by reason',
    '# TYPE midge_messages_dropped_total counter',
    'midge_messages_dropped_total{reason="queueFull"} 12',
    'midge_messages_dropped_total{reason="memoryLimit"} 0',
    '# TYPE midge_cluster_forwards_dropped_total counter',
    'midge_cluster_forwards_dropped_total 3',
    'midge_cluster_forward_failures_total 1',
    'midge_messages_sent_total{qos="0"} 99',
  ].join('\n');
  assert.deepEqual(parseDrops(text), { queueFull: 12, memoryLimit: 0, clusterForwardsDropped: 3, clusterForwardFailures: 1 });
  assert.deepEqual(dropsBetween({ queueFull: 2, memoryLimit: 0 }, { queueFull: 12, memoryLimit: 0, clusterForwardsDropped: 3 }), { queueFull: 10, memoryLimit: 0, clusterForwardsDropped: 3 });
});

test('a page without Midge\'s drop counter is not read as "nothing dropped"', () => {
  assert.equal(parseDrops('# TYPE mosquitto_messages_dropped counter\nmosquitto_messages_dropped 5\n'), undefined);
  assert.equal(parseDrops('ok'), undefined);
});
