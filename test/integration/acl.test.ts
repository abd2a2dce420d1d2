import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AclFileError } from '../../src/auth/acl-file.js';
import { createBroker } from '../../src/index.js';
import { drainFor, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

describe('ACL file enforcement', () => {
  test('subscribe, publish and delivery are checked; a reload applies to existing subscriptions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-acl-'));
    const path = join(dir, 'acl');
    writeFileSync(path, 'user reader\ntopic read news/#\ntopic read private/#\n\nuser writer\ntopic write news/#\ntopic write private/#\n');
    const broker = await createBroker({ aclFile: path, sysInterval: 0 });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });

    const r5 = await rawConnect(port, 5, { clientId: 'r5', username: 'reader' });
    const ack5 = await rawSubscribe(r5.raw, 5, 1, [{ topic: 'news/#', qos: 1 }, { topic: 'private/#', qos: 1 }, { topic: 'other/#', qos: 1 }]);
    assert.deepEqual(ack5.granted, [1, 1, 0x87]);
    const r4 = await rawConnect(port, 4, { clientId: 'r4', username: 'reader' });
    assert.deepEqual((await rawSubscribe(r4.raw, 4, 1, [{ topic: '#', qos: 0 }])).granted, [0x80]);

    const w5 = await rawConnect(port, 5, { clientId: 'w5', username: 'writer' });
    w5.raw.sendPacket({ cmd: 'publish', topic: 'news/today', payload: Buffer.from('ok'), qos: 1, messageId: 1 }, 5);
    assert.equal((await expectPacket(w5.raw, 'puback')).reasonCode ?? 0, 0);
    assert.equal((await expectPacket(r5.raw, 'publish')).topic, 'news/today');
    r5.raw.sendPacket({ cmd: 'puback', messageId: 1 }, 5);
    w5.raw.sendPacket({ cmd: 'publish', topic: 'elsewhere', payload: Buffer.from('no'), qos: 1, messageId: 2 }, 5);
    assert.equal((await expectPacket(w5.raw, 'puback')).reasonCode, 0x87);
    const w4 = await rawConnect(port, 4, { clientId: 'w4', username: 'reader' });
    w4.raw.sendPacket({ cmd: 'publish', topic: 'news/forged', payload: Buffer.from('no'), qos: 1, messageId: 3 }, 4);
    assert.equal((await expectPacket(w4.raw, 'puback')).messageId, 3, '3.1.1: acknowledged, then dropped');
    await drainFor(r5.raw, 200);

    // take away "private" from the reader: its existing subscription stops receiving
    writeFileSync(path, 'user reader\ntopic read news/#\n\nuser writer\ntopic write news/#\ntopic write private/#\n');
    broker.reload();
    w5.raw.sendPacket({ cmd: 'publish', topic: 'private/x', payload: Buffer.from('hidden'), qos: 0 }, 5);
    w5.raw.sendPacket({ cmd: 'publish', topic: 'news/y', payload: Buffer.from('visible'), qos: 0 }, 5);
    const got = (await drainFor(r5.raw, 300)).filter((p) => p.cmd === 'publish').map((p) => p.topic);
    assert.deepEqual(got, ['news/y']);
    for (const c of [r5, r4, w5, w4]) c.raw.close();
    await broker.close();
  });

  test('an ACL file with a rule that is not a valid filter is refused at start and on reload; the previous rules stay in force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-acl-'));
    const path = join(dir, 'acl');
    // taken as a/#, this would let anonymous clients read all of a/
    writeFileSync(path, 'topic read a/#/b\n');
    await assert.rejects(createBroker({ aclFile: path, sysInterval: 0 }), (e: Error) => e instanceof AclFileError && e.message === `${path}:1: invalid topic filter "a/#/b": '#' must be the last character`);

    writeFileSync(path, 'topic read a/+/b\n');
    const broker = await createBroker({ aclFile: path, sysInterval: 0 });
    try {
      const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
      writeFileSync(path, 'topic read a/#/b\n');
      assert.throws(() => broker.reload(), /acl:1: invalid topic filter "a\/#\/b"/);
      const { raw } = await rawConnect(port, 5, { clientId: 'anon' });
      assert.deepEqual((await rawSubscribe(raw, 5, 1, [{ topic: 'a/#', qos: 0 }, { topic: 'a/+/b', qos: 0 }])).granted, [0x87, 0]);
      for (const topic of ['a/secret/password', 'a/x/b']) await broker.publish({ topic, payload: 'x' });
      assert.deepEqual((await drainFor(raw, 200)).filter((p) => p.cmd === 'publish').map((p) => p.topic), ['a/x/b']);
      raw.close();
    } finally {
      await broker.close();
    }
  });

  test('a retained message on a topic the client may not read is not sent on subscribe, though the filter is one it may read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-acl-'));
    const path = join(dir, 'acl');
    writeFileSync(path, 'user reader\ntopic read plant/#\ntopic deny plant/secret/#\n');
    const broker = await createBroker({ aclFile: path, sysInterval: 0 });
    try {
      const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
      for (const topic of ['plant/a', 'plant/secret/key', 'plant/b']) await broker.publish({ topic, payload: topic, qos: 1, retain: true });
      for (const version of [4, 5] as const) {
        const { raw } = await rawConnect(port, version, { clientId: `rr${version}`, username: 'reader' });
        assert.deepEqual((await rawSubscribe(raw, version, 1, [{ topic: 'plant/#', qos: 0 }])).granted, [0]);
        const got = (await drainFor(raw, 300)).filter((p) => p.cmd === 'publish').map((p) => p.topic).sort();
        assert.deepEqual(got, ['plant/a', 'plant/b']);
        raw.close();
      }
    } finally {
      await broker.close();
    }
  });
});
