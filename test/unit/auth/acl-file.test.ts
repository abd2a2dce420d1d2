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

  test('a rule whose filter is not a valid topic filter is refused, naming the line', () => {
    for (const [rule, why] of [
      ['topic read a/#/b', "'#' must be the last character"],
      ['topic read c#', "'#' must occupy a whole level"],
      ['topic f+/g', "'+' must occupy a whole level"],
      ['topic deny h/+x', "'+' must occupy a whole level"],
      ['pattern write dev/%c#', "'#' must occupy a whole level"],
      ['pattern read a/#/%u', "'#' must be the last character"],
    ] as const) {
      assert.throws(() => acl(`topic read ok/#\n${rule}\n`), (e: Error) => e instanceof AclFileError && e.message.endsWith(`acl:2: invalid topic filter "${rule.replace(/^\S+ (read |write |deny )?/, '')}": ${why}`), rule);
    }
  });

  test('after "topic" or "pattern", more than one word starts with the access: an unknown one is refused, not taken into the filter', () => {
    assert.throws(() => acl('topic raed foo/#\n'), /acl:1: unknown access "raed": expected read, write, readwrite or deny before the topic filter/);
    assert.throws(() => acl('user u\npattern rw dev/%c\n'), /acl:2: unknown access "rw"/);
    // a filter with a space needs its access, as in Mosquitto
    assert.throws(() => acl('topic my room/#\n'), /acl:1: unknown access "my"/);
    const spaced = acl('topic read my room/#\ntopic read\n');
    assert.equal(spaced.canRead(anon, 'my room/lamp'), true);
    assert.equal(spaced.canRead(anon, 'my/lamp'), false);
    // one word is the filter, whatever it spells
    assert.equal(spaced.canRead(anon, 'read'), true);
  });

  test('a comment after a rule is refused: it would be part of the filter', () => {
    assert.throws(() => acl('topic read a/# # sensors\n'), /acl:1: invalid topic filter "a\/# # sensors": '#' must be the last character \(a comment must be on a line of its own\)/);
    assert.throws(() => acl('topic read a # sensors\n'), /acl:1: invalid topic filter "a # sensors": .*\(a comment must be on a line of its own\)/);
  });

  test('tabs separate words as spaces do; %c and %u stand for one whole level', () => {
    const rules = acl('topic\tread\tnews/#\npattern readwrite dev/%c/#\npattern read inbox/%u\n');
    assert.equal(rules.canRead(anon, 'news/x'), true);
    assert.equal(rules.canWrite(anon, 'news/x'), false);
    assert.equal(rules.canWrite(anon, 'dev/sensor-7/t'), true);
    assert.equal(rules.canRead(alice, 'inbox/alice'), true);
  });
});
