import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { hashPassword } from '../../src/auth/password-file.js';
import { createBroker } from '../../src/index.js';
import { killMidges, runMidge } from '../helpers/cli.js';
import { eventually, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

after(killMidges);

/** A password file with `users` (name, password) and an ACL file, in a fresh directory. */
function authFiles(users: Array<[string, string]>, acl: string): { passwordFile: string; aclFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'midge-reload-'));
  const passwordFile = join(dir, 'passwd');
  const aclFile = join(dir, 'acl');
  writeFileSync(passwordFile, users.map(([u, p]) => `${u}:${hashPassword(p)}\n`).join(''));
  writeFileSync(aclFile, acl);
  return { passwordFile, aclFile };
}

async function subscribeGrant(port: number, username: string, password: string, filter: string): Promise<number | undefined> {
  const { raw, connack } = await rawConnect(port, 5, { clientId: `${username}-${filter}`, username, password });
  assert.equal(connack.reasonCode, 0, `${username} may connect`);
  const ack = await rawSubscribe(raw, 5, 1, [{ topic: filter, qos: 1 }]);
  raw.close();
  return ack.granted?.[0];
}

describe('reload: each file on its own', () => {
  test('a password file with a mistake keeps its previous version, and a valid ACL change is applied all the same', async () => {
    const { passwordFile, aclFile } = authFiles([['alice', 'apw']], 'user alice\ntopic read public/#\n');
    const broker = await createBroker({ passwordFile, aclFile, sysInterval: 0 });
    try {
      const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
      assert.equal(await subscribeGrant(port, 'alice', 'apw', 'other/#'), 0x87);
      writeFileSync(aclFile, 'user alice\ntopic read public/#\ntopic read other/#\n');
      appendFileSync(passwordFile, 'broken line\n');
      assert.throws(() => broker.reload(), {
        message: new RegExp(`^the password file ${passwordFile} was refused and keeps its previous version \\(.*\\); the ACL file ${aclFile} was reloaded$`),
      });
      assert.equal(await subscribeGrant(port, 'alice', 'apw', 'other/#'), 1, 'the new ACL is in force');
      assert.equal(await subscribeGrant(port, 'alice', 'apw', 'public/#'), 1, 'and the previous password file');

      // the other way round: the new users come in, under the previous ACL
      writeFileSync(passwordFile, `alice:${hashPassword('apw')}\nbob:${hashPassword('bpw')}\n`);
      writeFileSync(aclFile, 'user alice\nfrobnicate public/#\n');
      assert.throws(() => broker.reload(), { message: new RegExp(`^the ACL file ${aclFile} was refused and keeps its previous version \\(.*\\); the password file ${passwordFile} was reloaded$`) });
      assert.equal(await subscribeGrant(port, 'bob', 'bpw', 'x'), 0x87);
      assert.equal(await subscribeGrant(port, 'alice', 'apw', 'other/#'), 1);
    } finally {
      await broker.close();
    }
  });

  test('SIGHUP: the log names the file refused and says the others and the configuration were applied', async () => {
    const { passwordFile, aclFile } = authFiles([['alice', 'apw']], 'user alice\ntopic read public/#\n');
    const midge = runMidge(['--port', '0', '--persistence', 'memory', '--log-level', 'info', '--password-file', passwordFile, '--acl-file', aclFile]);
    assert.ok(await eventually(() => /listening on mqtt:/.test(midge.stderr()), 10_000), midge.stderr());
    const port = Number(/listening on mqtt:\/\/[^\s]+:(\d+)/.exec(midge.stderr())?.[1]);
    writeFileSync(aclFile, 'user alice\ntopic read public/#\ntopic read other/#\n');
    appendFileSync(passwordFile, 'broken line\n');
    midge.child.kill('SIGHUP');
    assert.ok(await eventually(() => /"level":50/.test(midge.stdout()), 3000), midge.stdout());
    const line = midge.stdout().split('\n').find((l) => l.includes('"level":50')) ?? '';
    const msg = (JSON.parse(line) as { msg: string }).msg;
    assert.match(msg, new RegExp(`^reloaded, but the password file ${passwordFile} was refused and keeps its previous version .*; the ACL file ${aclFile} was reloaded$`));
    assert.doesNotMatch(midge.stdout(), /the previous configuration stays in force/);
    assert.equal(await subscribeGrant(port, 'alice', 'apw', 'other/#'), 1, 'the new ACL is in force');
    midge.child.kill('SIGTERM');
    await midge.exit;
  });
});
