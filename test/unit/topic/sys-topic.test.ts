import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSysTopic } from '../../../src/topic/sys-topic.js';

test('$SYS and the topics below it are the broker\'s; other $ topics, and look-alikes, are not', () => {
  for (const t of ['$SYS', '$SYS/', '$SYS/broker/uptime']) assert.equal(isSysTopic(t), true, t);
  for (const t of ['$SYSTEM', '$SYSx/a', '$sys/broker', 'SYS/x', '$aws/things/x', '$', '', 'a/$SYS']) assert.equal(isSysTopic(t), false, t);
});
