import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MIDGE_MAIN } from '../helpers/cli.js';

function midgePasswd(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MIDGE_MAIN, 'passwd', ...args], { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stderr: r.stderr };
}

/** exit code 2 and exactly `line` on stderr: no stack trace */
function refused(args: string[], line: string): void {
  const r = midgePasswd(...args);
  assert.equal(r.stderr, `${line}\n`);
  assert.equal(r.status, 2);
}

describe('midge passwd: a password file that cannot be read, used or written', () => {
  test('a file in a directory that does not exist cannot be written: one line, exit code 2, and no file left', () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-pw-'));
    const file = join(dir, 'missing', 'passwd');
    refused([file, 'alice', 's3cret'], `midge: passwd: cannot write ${file}: no directory ${join(dir, 'missing')}`);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a directory, or a path through a file, cannot be read: one line naming the file and why, exit code 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-pw-'));
    refused([dir, 'alice', 's3cret'], `midge: passwd: cannot read ${dir}: EISDIR`);
    const plain = join(dir, 'plain');
    writeFileSync(plain, '');
    refused([join(plain, 'passwd'), 'alice', 's3cret'], `midge: passwd: cannot read ${join(plain, 'passwd')}: ENOTDIR`);
    refused(['--delete', dir, 'alice'], `midge: passwd: cannot read ${dir}: EISDIR`);
  });

  test('a file that is not a password file is not overwritten: one line naming the line that is wrong, exit code 2', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'notes');
    writeFileSync(file, 'just some notes\n');
    refused([file, 'alice', 's3cret'], `midge: passwd: ${file}:1: expected "user:hash"`);
    assert.equal(readFileSync(file, 'utf8'), 'just some notes\n');
    writeFileSync(file, 'alice:plaintext\n');
    refused(['--delete', file, 'alice'], `midge: passwd: ${file}:1: the password of "alice" is not a $7$ or $6$ hash`);
    assert.equal(readFileSync(file, 'utf8'), 'alice:plaintext\n');
  });

  test('--delete on a file that does not exist says so, not that the user is missing', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    refused(['--delete', file, 'bob'], `midge: passwd: ${file} does not exist`);
    // with the file there, the missing user is what is said
    assert.equal(midgePasswd(file, 'alice', 's3cret').status, 0);
    refused(['--delete', file, 'bob'], `midge: passwd: no user "bob" in ${file}`);
  });
});
