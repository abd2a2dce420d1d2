import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { INBOX_KEEP_MS } from '../../src/cluster/inbox.js';
import { HEARTBEAT } from '../../src/cluster/membership.js';
import { NODE_GONE } from '../../src/cluster/orphans.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';

interface Scripts {
  heartbeat(key: string, node: string, timeoutMs: number, prefix: string, keepMs: number, publish: string): Promise<[number, string[], string[], string[]]>;
  nodeGone(key: string, prefix: string, node: string): Promise<number>;
}

/**
 * The scripts that run as a node goes, against a real Redis: whether they say the node left
 * sessions (the others then keep its routes a while), and that its inbox then expires even if
 * nothing was ever sent to it before.
 */
describe('Redis scripts of a node that goes', { skip: skipWithoutRedis }, () => {
  let redis: TestRedis;
  let cmd: Redis & Scripts;
  let sub: Redis;
  const announced: string[] = [];
  before(async () => {
    redis = await startRedis();
    cmd = new Redis(redis.url) as Redis & Scripts;
    cmd.defineCommand('heartbeat', { numberOfKeys: 1, lua: HEARTBEAT });
    cmd.defineCommand('nodeGone', { numberOfKeys: 1, lua: NODE_GONE });
    sub = new Redis(redis.url);
    await sub.subscribe('p:nodes');
    sub.on('message', (_channel, text: string) => announced.push(text));
  });
  after(async () => {
    cmd.disconnect();
    sub.disconnect();
    await redis.stop();
  });

  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

  test("a node found dead is announced 'down <node> sessions' when it left persistent sessions, plain 'down' when not; its inbox keys exist and expire", async () => {
    await cmd.zadd('p:nodes', 0, 'quiet', 0, 'keeper');
    await cmd.hset('p:sessions:keeper', 'c1', 'x');
    await cmd.hset('p:wills:quiet', 'c2', 'x');
    const [, , orphans, untaken] = await cmd.heartbeat('p:nodes', 'self', 5000, 'p', INBOX_KEEP_MS, 'PUBLISH');
    await settle();
    assert.deepEqual(announced.splice(0).sort(), ['down keeper sessions', 'down quiet']);
    assert.equal(orphans.length, 2);
    assert.deepEqual(untaken, ['keeper'], 'the nodes whose sessions are still to be taken up (their routes are kept meanwhile)');
    const keeperSet = orphans.find((m) => m.endsWith('|keeper')) as string;
    await cmd.del(`p:orphan-sessions:${keeperSet}`);
    assert.deepEqual((await cmd.heartbeat('p:nodes', 'self', 5000, 'p', INBOX_KEEP_MS, 'PUBLISH'))[3], [], 'all taken up');
    for (const node of ['keeper', 'quiet']) {
      assert.ok((await cmd.pttl(`p:inbox:${node}`)) > 0, `${node}: the inbox expires`);
      assert.ok((await cmd.pttl(`p:inbox-bytes:${node}`)) > 0);
      assert.equal(await cmd.xlen(`p:inbox:${node}`), 0, 'empty');
    }
    // a message sent while its routes are kept does not make the inbox lasting
    await cmd.xadd('p:inbox:keeper', '*', 'm', 'x');
    assert.ok((await cmd.pttl('p:inbox:keeper')) > 0);
  });

  test('NODE_GONE says whether the node left sessions: its own, or those of its found-dead sets it makes gone', async () => {
    assert.equal(await cmd.nodeGone('p:orphans', 'p', 'nothing'), 0);
    await cmd.hset('p:wills:willing', 'c', 'x');
    assert.equal(await cmd.nodeGone('p:orphans', 'p', 'willing'), 0, 'wills only');
    await cmd.hset('p:sessions:holder', 'c', 'x');
    assert.equal(await cmd.nodeGone('p:orphans', 'p', 'holder'), 1);
    assert.equal(await cmd.exists('p:inbox:holder'), 1, 'its inbox exists, to be given an expiry');
    // found dead earlier (kind d), then stopping without sessions of its own now
    await cmd.zadd('p:orphans', 5, '5|d|stalled');
    await cmd.hset('p:orphan-sessions:5|d|stalled', 'c', 'x');
    assert.equal(await cmd.nodeGone('p:orphans', 'p', 'stalled'), 1);
    assert.equal(await cmd.exists('p:orphan-sessions:5|g|stalled'), 1, 'made gone');
  });
});
