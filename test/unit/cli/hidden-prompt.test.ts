import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineEditor } from '../../../src/cli/hidden-prompt.js';

const typed = (...chunks: string[]): LineEditor => {
  const e = new LineEditor();
  for (const c of chunks) e.feed(c);
  return e;
};

test('Enter ends a line whether the terminal sends CR, LF or CR LF, and lines typed ahead are kept', () => {
  assert.deepEqual(typed('one\rtwo\r').lines, ['one', 'two']);
  assert.deepEqual(typed('one\r', '\ntwo\n').lines, ['one', 'two']);
  assert.deepEqual(typed('\r\r').lines, ['', '']);
  assert.deepEqual(typed('par', 'tial').lines, []);
});

test('Backspace takes back one character (a whole one, not half of it), Ctrl-U the line, Ctrl-D ends it', () => {
  assert.deepEqual(typed('ab\x7fc\bd\r').lines, ['ad']);
  assert.deepEqual(typed('pä😀\x7f\x7fa\r').lines, ['pa']);
  assert.deepEqual(typed('\x7f\x7fx\r').lines, ['x']);
  assert.deepEqual(typed('wrong\x15right\x04').lines, ['right']);
});

test('arrow keys and other escape sequences, and control characters, are no part of the password', () => {
  assert.deepEqual(typed('a\x1b[Db\x1b[1;5Cc\x1bOAd\x1b[3~e\x01\t\r').lines, ['abcde']);
  assert.deepEqual(typed('a\x1b', '[', 'D', 'b\r').lines, ['ab']);
});

test('Ctrl-C gives up, and nothing typed after it counts', () => {
  const e = typed('first\rsec\x03ond\r');
  assert.equal(e.cancelled, true);
  assert.deepEqual(e.lines, ['first']);
});
