import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PasswordFile } from '../../src/auth/password-file.js';
import { createBroker } from '../../src/index.js';
import { rawConnect } from '../helpers/raw-session.js';
import { killMidges, MIDGE_MAIN, spawnMidge } from '../helpers/cli.js';


function midgePasswd(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MIDGE_MAIN, 'passwd', ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

const quoted = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;

/**
 * `midge passwd ARGS` at a pseudo-terminal, as a user at a terminal runs it (util-linux `script`
 * gives it one), followed by `after` in the same shell: each step's keys are typed once the
 * screen ends with its text. Resolves with the exit code and all the terminal showed.
 */
async function atTerminal(args: string[], steps: Array<[string, string]>, after = ''): Promise<{ status: number | null; screen: string }> {
  const command = `${[process.execPath, MIDGE_MAIN, 'passwd', ...args].map(quoted).join(' ')}; s=$?; ${after} exit $s`;
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, SHELL: '/bin/sh' } });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  try {
    for (const [shown, keys] of steps) {
      const deadline = Date.now() + 10_000;
      while (!screen.endsWith(shown)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the terminal showed ${JSON.stringify(screen)}, not ${JSON.stringify(shown)} at its end`);
        await new Promise((r) => setTimeout(r, 10));
      }
      child.stdin.write(keys);
    }
    const status = await exited;
    return { status, screen };
  } finally {
    child.kill('SIGKILL');
  }
}

function serve(args: string[]): ReturnType<typeof spawnMidge> {
  return spawnMidge(['--port', '0', '--persistence', 'memory', '--log-level', 'silent', ...args]);
}

describe('password files and anonymous access', () => {
  after(killMidges);

  test('midge passwd writes $7$ entries, updates and deletes users; the broker checks them', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    assert.equal(midgePasswd(file, 'alice', 'wonderland').status, 0);
    assert.equal(midgePasswd(file, 'bob', 'first').status, 0);
    assert.equal(midgePasswd(file, 'bob', 'second').status, 0);
    assert.equal(midgePasswd(file, 'carol', 'c').status, 0);
    assert.equal(midgePasswd('--delete', file, 'carol').status, 0);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^alice:\$7\$101\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\nbob:\$7\$/);
    assert.doesNotMatch(text, /carol/);
    const missing = midgePasswd('--delete', file, 'nobody');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /no user "nobody"/);

    const { child, port } = await serve(['--password-file', file]);
    const ok = await rawConnect(port, 4, { clientId: 'a', username: 'alice', password: 'wonderland' });
    assert.equal(ok.connack.returnCode, 0);
    const bob = await rawConnect(port, 5, { clientId: 'b', username: 'bob', password: 'second' });
    assert.equal(bob.connack.reasonCode, 0);
    const old = await rawConnect(port, 5, { clientId: 'b2', username: 'bob', password: 'first' });
    assert.equal(old.connack.reasonCode, 0x86);
    const deleted = await rawConnect(port, 4, { clientId: 'c', username: 'carol', password: 'c' });
    assert.equal(deleted.connack.returnCode, 4);
    const anonymous = await rawConnect(port, 4, { clientId: 'anon' });
    assert.notEqual(anonymous.connack.returnCode, 0, 'with a password file, anonymous access is off');
    for (const c of [ok, bob]) c.raw.close();
    child.kill('SIGTERM');
  });

  test('--allow-anonymous true lets clients without a user name in, alongside the password file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    midgePasswd(file, 'u', 'p');
    const { child, port } = await serve(['--password-file', file, '--allow-anonymous', 'true']);
    const anonymous = await rawConnect(port, 4, { clientId: 'anon' });
    assert.equal(anonymous.connack.returnCode, 0);
    const wrong = await rawConnect(port, 4, { clientId: 'w', username: 'u', password: 'x' });
    assert.equal(wrong.connack.returnCode, 4, 'a user name given must still match');
    anonymous.raw.close();
    child.kill('SIGTERM');
  });

  test('allowAnonymous false with no password file: a user name alone is refused (5.0: 0x86, 3.1.1: 4); an authenticate hook decides instead when there is one', async () => {
    const locked = await createBroker({ allowAnonymous: false });
    const hooked = await createBroker({ allowAnonymous: false, hooks: { authenticate: (_c, { username, password }) => username === 'alice' && password?.toString() === 'secret' } });
    // anonymous access is on by default without a password file; a listener turns it off for itself
    const open = await createBroker({});
    try {
      const lockedPort = (await locked.listen({ port: 0, host: '127.0.0.1' })).port;
      const hookedPort = (await hooked.listen({ port: 0, host: '127.0.0.1' })).port;
      const listenerPort = (await open.listen({ port: 0, host: '127.0.0.1', allowAnonymous: false })).port;
      // each broker answers an address's refusals later and later: the two are asked side by side
      await Promise.all(
        [lockedPort, listenerPort].map(async (port) => {
          assert.equal((await rawConnect(port, 5, { clientId: 'a', username: 'whoever', password: 'anything' })).connack.reasonCode, 0x86);
          assert.equal((await rawConnect(port, 4, { clientId: 'b', username: 'whoever' })).connack.returnCode, 4);
          assert.equal((await rawConnect(port, 4, { clientId: 'c' })).connack.returnCode, 4);
        }),
      );
      const alice = await rawConnect(hookedPort, 5, { clientId: 'alice', username: 'alice', password: 'secret' });
      assert.equal(alice.connack.reasonCode, 0);
      assert.equal((await rawConnect(hookedPort, 4, { clientId: 'e', username: 'alice', password: 'wrong' })).connack.returnCode, 4);
      assert.equal((await rawConnect(hookedPort, 4, { clientId: 'f' })).connack.returnCode, 4, 'anonymous access stays off');
      alice.raw.close();
      const anonymousElsewhere = await rawConnect((await open.listen({ port: 0, host: '127.0.0.1' })).port, 4, { clientId: 'g', username: 'whoever' });
      assert.equal(anonymousElsewhere.connack.returnCode, 0, 'where anonymous access is on, a user name is let in as none would be');
      anonymousElsewhere.raw.close();
    } finally {
      for (const b of [locked, hooked, open]) await b.close();
    }
  });

  test('a listener may have its own anonymous policy', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    midgePasswd(file, 'u', 'p');
    const broker = await createBroker({ passwordFile: file });
    const closed = await broker.listen({ port: 0, host: '127.0.0.1' });
    const open = await broker.listen({ port: 0, host: '127.0.0.1', allowAnonymous: true });
    const refused = await rawConnect(closed.port, 4, { clientId: 'anon-1' });
    assert.notEqual(refused.connack.returnCode, 0);
    const let_in = await rawConnect(open.port, 4, { clientId: 'anon-2' });
    assert.equal(let_in.connack.returnCode, 0);
    const user = await rawConnect(open.port, 4, { clientId: 'u', username: 'u', password: 'p' });
    assert.equal(user.connack.returnCode, 0);
    for (const c of [let_in, user]) c.raw.close();
    await broker.close();
  });

  test('SIGHUP reloads the password file: a user added while running can connect', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    midgePasswd(file, 'first', 'one');
    const { child, port } = await serve(['--password-file', file]);
    midgePasswd(file, 'later', 'two');
    const before = await rawConnect(port, 4, { clientId: 'l1', username: 'later', password: 'two' });
    assert.equal(before.connack.returnCode, 4);
    child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    const afterReload = await rawConnect(port, 4, { clientId: 'l2', username: 'later', password: 'two' });
    assert.equal(afterReload.connack.returnCode, 0);
    afterReload.raw.close();
    child.kill('SIGTERM');
  });

  test('a password file with a mistake stops the start: one line naming it, exit code 2', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    const r = spawnSync(process.execPath, [MIDGE_MAIN, '--port', '0', '--persistence', 'memory', '--password-file', file], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr.trim(), /^midge: cannot read the password file .*passwd: ENOENT$/);
  });

  test('wrong passwords in a loop are answered more and more slowly, and other clients are served meanwhile', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    midgePasswd(file, 'u', 'right');
    const broker = await createBroker({ passwordFile: file });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t0 = Date.now();
      const bad = await rawConnect(port, 4, { clientId: `g${i}`, username: 'u', password: 'guess' });
      times.push(Date.now() - t0);
      assert.equal(bad.connack.returnCode, 4);
      bad.raw.close();
    }
    assert.ok(times[3] as number >= 1400 && (times[3] as number) > (times[0] as number), `refusal times ${times.join(', ')} ms`);
    const t0 = Date.now();
    const good = await rawConnect(port, 4, { clientId: 'good', username: 'u', password: 'right' });
    assert.equal(good.connack.returnCode, 0);
    assert.ok(Date.now() - t0 < 1000, 'a right password is not slowed down');
    good.raw.close();
    await broker.close();
  });

  const noTerminal = spawnSync('script', ['-V']).error === undefined ? false : 'util-linux script (for a pseudo-terminal) is not installed';

  test('at a terminal, midge passwd asks for the password twice without showing it, as mosquitto_passwd does; Backspace takes back a character', { skip: noTerminal }, async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    const r = await atTerminal([file, 'tty'], [['Password: ', 's3crex\x7ft\r'], ['Reenter password: ', 's3cret\r']]);
    assert.equal(r.status, 0, r.screen);
    assert.equal(r.screen, 'Password: \r\nReenter password: \r\n');
    const users = new PasswordFile(file);
    assert.ok(users.verify('tty', Buffer.from('s3cret')));
  });

  test('at a terminal, two passwords that differ are refused in one line (exit 2), and Ctrl-C gives up (exit 130) with the echo back on; the file stays as it was', { skip: noTerminal }, async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    const differ = await atTerminal([file, 'tty'], [['Password: ', 'one\r'], ['Reenter password: ', 'two\r']]);
    assert.equal(differ.status, 2, differ.screen);
    assert.equal(differ.screen, 'Password: \r\nReenter password: \r\nmidge: passwd: the passwords do not match\r\n');
    assert.equal(existsSync(file), false);
    const given = await atTerminal([file, 'tty'], [['Password: ', 'hal\x03']], "stty -a | grep -qw -- -echo && echo 'echo is off';");
    assert.equal(given.status, 130, given.screen);
    assert.equal(given.screen, 'Password: \r\n');
    assert.equal(existsSync(file), false);
  });

  test('without a terminal the password is the first line of stdin, read once', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    const r = spawnSync(process.execPath, [MIDGE_MAIN, 'passwd', file, 'piped'], { input: 'from a pipe\nnot this\n', encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.ok(new PasswordFile(file).verify('piped', Buffer.from('from a pipe')));
  });

  const mosquittoPasswd = spawnSync('mosquitto_passwd', ['-h']).error === undefined;
  test('a password file written by mosquitto_passwd is read', { skip: mosquittoPasswd ? false : 'mosquitto_passwd is not installed' }, async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'midge-pw-')), 'passwd');
    const r = spawnSync('mosquitto_passwd', ['-c', '-b', file, 'mosq', 'uitto']);
    assert.equal(r.status, 0, String(r.stderr));
    const broker = await createBroker({ passwordFile: file });
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
    const c = await rawConnect(port, 4, { clientId: 'm', username: 'mosq', password: 'uitto' });
    assert.equal(c.connack.returnCode, 0);
    c.raw.close();
    await broker.close();
  });
});
