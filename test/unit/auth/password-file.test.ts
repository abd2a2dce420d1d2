import assert from 'node:assert/strict';
import { createHash, pbkdf2Sync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LoginThrottle } from '../../../src/auth/login-throttle.js';
import { hashPassword, parseHash, PasswordFile, PasswordFileError } from '../../../src/auth/password-file.js';

function fileWith(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwords');
  writeFileSync(path, text);
  return path;
}

describe('password files (Mosquitto format)', () => {
  test('$7$ lines: PBKDF2-HMAC-SHA512 over the password and salt, with the iterations given', () => {
    const salt = Buffer.from('0123456789ab');
    const hash = pbkdf2Sync('s3cret', salt, 1000, 64, 'sha512');
    const pw = new PasswordFile(fileWith(`alice:$7$1000$${salt.toString('base64')}$${hash.toString('base64')}\n`));
    assert.equal(pw.verify('alice', Buffer.from('s3cret')), true);
    assert.equal(pw.verify('alice', Buffer.from('s3cret ')), false);
    assert.equal(pw.verify('alice', undefined), false);
    assert.equal(pw.verify('bob', Buffer.from('s3cret')), false);
  });

  test('$6$ lines: SHA-512 of the password followed by the salt', () => {
    const salt = Buffer.from('saltsaltsalt');
    const hash = createHash('sha512').update('old').update(salt).digest();
    const pw = new PasswordFile(fileWith(`# comment\n\nlegacy:$6$${salt.toString('base64')}$${hash.toString('base64')}\n`));
    assert.equal(pw.verify('legacy', Buffer.from('old')), true);
    assert.equal(pw.verify('legacy', Buffer.from('new')), false);
  });

  test('new hashes are $7$ with 101 iterations and a 12-byte salt, as mosquitto_passwd writes', () => {
    const h = parseHash(hashPassword('pw'));
    assert.equal(h?.kind, 7);
    assert.equal(h?.iterations, 101);
    assert.equal(h?.salt.length, 12);
    assert.equal(h?.hash.length, 64);
    assert.notEqual(hashPassword('pw'), hashPassword('pw'), 'a fresh salt each time');
  });

  test('a malformed line is refused with the file and line named', () => {
    assert.throws(() => new PasswordFile(fileWith('ok:$7$101$YWJj$ZGVm\nbroken line\n')), (e: Error) => e instanceof PasswordFileError && /passwords:2: expected "user:hash"/.test(e.message));
    assert.throws(() => new PasswordFile(fileWith('plain:text\n')), /not a \$7\$ or \$6\$ hash/);
    assert.throws(() => new PasswordFile('/nonexistent/pw'), /cannot read the password file/);
  });

  test('a reload with a mistake keeps the users already loaded', () => {
    const path = fileWith(`a:${hashPassword('x')}\n`);
    const pw = new PasswordFile(path);
    writeFileSync(path, 'garbage\n');
    assert.throws(() => pw.reload());
    assert.equal(pw.verify('a', Buffer.from('x')), true);
  });
});

describe('login throttle', () => {
  test('failures from one address wait longer and longer, up to the cap; a success clears them', () => {
    const t = new LoginThrottle(100, 1000, 60_000);
    assert.deepEqual([1, 2, 3, 4, 5].map(() => t.failed('10.0.0.1:5000', 0)), [100, 200, 400, 800, 1000]);
    assert.equal(t.failed('10.0.0.2:6000', 0), 100, 'other addresses are not affected');
    assert.equal(t.failed('10.0.0.1:7000', 0), 1000, 'the port does not matter');
    t.succeeded('10.0.0.1:1');
    assert.equal(t.failed('10.0.0.1:1', 0), 100);
    assert.equal(t.failed('10.0.0.2:1', 120_000), 100, 'forgotten after a quiet spell');
  });
});
