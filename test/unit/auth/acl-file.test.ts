import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AclFile, AclFileError, covers } from '../../../src/auth/acl-file.js';

function acl(text: string): AclFile {
  const path = join(mkdtempSync(join(tmpdir(), 'midge-acl-')), 'acl');
  writeFileSync(path, text);
  return new AclFile(path);
}

const alice = { username: 'alice', clientId: 'phone' };
const anon = { username: undefined, clientId: 'sensor-7' };

describe('ACL files (Mosquitto format)', () => {
  const rules = acl(`# anonymous clients
topic read public/#

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic write logs/alice
topic home/shared

pattern write devices/%c/telemetry
pattern read users/%u/inbox/#
`);

  test('user rules: readwrite, write only, the default readwrite, and deny over any grant', () => {
    assert.equal(rules.canWrite(alice, 'home/alice/lamp'), true);
    assert.equal(rules.canRead(alice, 'home/alice/lamp'), true);
    assert.equal(rules.canRead(alice, 'home/alice/secret'), false);
    assert.equal(rules.canWrite(alice, 'home/alice/secret'), false);
    assert.equal(rules.canWrite(alice, 'logs/alice'), true);
    assert.equal(rules.canRead(alice, 'logs/alice'), false);
    assert.equal(rules.canRead(alice, 'home/shared'), true);
    assert.equal(rules.canWrite(alice, 'home/shared'), true);
    assert.equal(rules.canRead(alice, 'public/news'), false, 'anonymous rules are not user rules');
  });

  test('rules before any user line are for clients without a user name', () => {
    assert.equal(rules.canRead(anon, 'public/news'), true);
    assert.equal(rules.canWrite(anon, 'public/news'), false);
    assert.equal(rules.canRead(anon, 'home/alice/lamp'), false);
  });

  test('patterns apply to everyone with %c and %u filled in; %u never matches a client without a user name', () => {
    assert.equal(rules.canWrite(anon, 'devices/sensor-7/telemetry'), true);
    assert.equal(rules.canWrite(anon, 'devices/sensor-8/telemetry'), false);
    assert.equal(rules.canRead(alice, 'users/alice/inbox/1'), true);
    assert.equal(rules.canRead(alice, 'users/bob/inbox/1'), false);
    assert.equal(rules.canRead(anon, 'users//inbox/1'), false);
  });

  test('a client id with wildcards does not widen a pattern', () => {
    assert.equal(rules.canWrite({ username: undefined, clientId: '+' }, 'devices/other/telemetry'), false);
    assert.equal(rules.canWrite({ username: undefined, clientId: '#' }, 'devices/x/telemetry'), false);
  });

  test('subscriptions must fall within what the client may read', () => {
    assert.equal(rules.canSubscribe(alice, 'home/alice/#'), true);
    assert.equal(rules.canSubscribe(alice, 'home/alice/+/state'), true);
    assert.equal(rules.canSubscribe(alice, 'home/#'), false);
    assert.equal(rules.canSubscribe(alice, 'home/alice/secret'), false);
    assert.equal(rules.canSubscribe(anon, '#'), false);
  });

  test('filter containment', () => {
    assert.equal(covers('a/#', 'a'), true);
    assert.equal(covers('a/#', 'a/b/+'), true);
    assert.equal(covers('a/+', 'a/b'), true);
    assert.equal(covers('a/+', 'a/+'), true);
    assert.equal(covers('a/+', 'a/#'), false);
    assert.equal(covers('a/b', 'a/+'), false);
    assert.equal(covers('#', '$SYS/x'), false);
    assert.equal(covers('+/x', '$SYS/x'), false);
    assert.equal(covers('$SYS/#', '$SYS/broker/load'), true);
  });

  test('mistakes name the file and line', () => {
    assert.throws(() => acl('user\n'), (e: Error) => e instanceof AclFileError && /acl:1: "user" needs a user name/.test(e.message));
    assert.throws(() => acl('topic read a\nallow x\n'), /acl:2: expected "user", "topic" or "pattern"/);
    assert.throws(() => acl('pattern\n'), /acl:1: "pattern" needs a topic filter/);
  });
});
