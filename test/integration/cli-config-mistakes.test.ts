import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createPki } from '../helpers/certs.js';
import { killMidges, runMidge as run, tmpFile } from '../helpers/cli.js';
import { eventually, rawConnect } from '../helpers/raw-session.js';

/** A configuration mistake: exit code 2 and one line on stderr, matching `line`. */
async function refused(args: string[], line: RegExp): Promise<void> {
  const r = run(args);
  // a broker that starts instead fails the test rather than hang it
  const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
  const code = await r.exit;
  clearTimeout(timer);
  assert.equal(code, 2, r.stderr());
  assert.equal(r.stderr().split('\n').filter((l) => l !== '').length, 1, `one line, got: ${r.stderr()}`);
  assert.match(r.stderr().trim(), line);
}

/** `text` as a regular expression matching it alone */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The messages of the warnings (level 40) among the JSON log lines of stdout. */
function loggedWarnings(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((l) => l.level === 40)
    .map((l) => l.msg);
}

/** sun_path, its terminating NUL left out */
const SOCKET_PATH_LIMIT = process.platform === 'linux' ? 107 : 103;

/** An absolute path of exactly `bytes` UTF-8 bytes in a fresh directory, its name made of `fill`. */
function socketPath(bytes: number, fill = 's'): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'midge-sock-'));
  let name = '';
  while (Buffer.byteLength(join(dir, name + fill)) <= bytes) name += fill;
  while (Buffer.byteLength(join(dir, name)) < bytes) name += 's';
  const path = join(dir, name);
  assert.equal(Buffer.byteLength(path), bytes);
  return { dir, path };
}

describe('command line: settings that cannot work are refused, and ones that do nothing are warned of', () => {
  after(killMidges);

  test('listeners: [] is refused in one line with exit code 2, at start-up and by check-config', async () => {
    const cfg = tmpFile('none.yaml', 'persistence: memory\nlisteners: []\n');
    const line = /^midge: .*none\.yaml: listeners must name at least one listener \(leave it out for the single host\/port one\)$/;
    await refused(['--config', cfg], line);
    await refused(['check-config', cfg], line);
  });

  test('a Unix socket path longer than the OS takes is refused (exit code 2), from the flag, the config file and check-config; bytes are counted, not characters', async () => {
    const long = socketPath(SOCKET_PATH_LIMIT + 1);
    const why = `is ${SOCKET_PATH_LIMIT + 1} bytes long; a Unix socket path may have at most ${SOCKET_PATH_LIMIT} bytes on this system`;
    await refused(['--persistence', 'memory', '--port', '0', '--socket', long.path], new RegExp(`^midge: command line: --socket ${why}$`));
    const cfg = tmpFile('sock.yaml', `persistence: memory\nlisteners:\n  - port: 0\n  - socket: ${long.path}\n`);
    await refused(['--config', cfg], new RegExp(`sock\\.yaml: listeners\\[1\\]\\.socket ${why}$`));
    await refused(['check-config', cfg], new RegExp(`sock\\.yaml: listeners\\[1\\]\\.socket ${why}$`));
    assert.deepEqual(readdirSync(long.dir), [], 'nothing was bound');
    // fewer characters than the limit, more bytes: the OS counts bytes
    const wide = socketPath(SOCKET_PATH_LIMIT + 2, 'é');
    assert.ok(wide.path.length <= SOCKET_PATH_LIMIT);
    await refused(['--persistence', 'memory', '--port', '0', '--socket', wide.path], /^midge: command line: --socket is \d+ bytes long; /);
  });

  test('a Unix socket path of the longest length the OS takes is served, and a clean stop removes its file, so that the next start succeeds', async () => {
    const { dir, path } = socketPath(SOCKET_PATH_LIMIT);
    for (let start = 0; start < 2; start++) {
      const r = run(['--persistence', 'memory', '--port', '0', '--log-level', 'silent', '--socket', path]);
      assert.ok(await eventually(() => r.stderr().includes(`listening on mqtt over Unix socket ${path}\n`), 10_000), r.stderr());
      const { raw, connack } = await rawConnect(path, 4, { clientId: `long-path-${start}` });
      assert.equal(connack.returnCode, 0);
      raw.close();
      r.child.kill('SIGTERM');
      assert.equal(await r.exit, 0, r.stderr());
      assert.deepEqual(readdirSync(dir), [], 'no socket file is left behind, under its name or a shorter one');
    }
  });

  test('a tls block on a plaintext listener (mqtt, the default, or ws) is refused: whoever wrote it expects encryption', async () => {
    for (const [protocol, article] of [['mqtt', 'an'], ['ws', 'a']]) {
      const cfg = tmpFile('plain.yaml', `persistence: memory\nlisteners:\n  - protocol: ${protocol}\n    port: 0\n    tls: { cert: c.pem, key: k.pem }\n`);
      const line = new RegExp(`plain\\.yaml: listeners\\[0\\]: tls is set on ${article} ${protocol} listener, which does not use it: make it protocol: ${protocol}s for TLS, or remove tls$`);
      await refused(['--config', cfg], line);
      await refused(['check-config', cfg], line);
    }
    await refused(['check-config', tmpFile('noproto.yaml', 'listeners:\n  - port: 8883\n    tls: { cert: c.pem, key: k.pem }\n')], /listeners\[0\]: tls is set on an mqtt listener/);
  });

  test('path on an mqtt or mqtts listener and certificateAsUsername without requireClientCert are warned of, by check-config on stderr and at start-up in the log', async () => {
    const pki = createPki('warned');
    const tls = (more: string): string => `tls: { cert: ${pki.serverCert}, key: ${pki.serverKey}, ca: ${pki.ca}${more} }`;
    const cfg = tmpFile(
      'warn.yaml',
      [
        'persistence: memory',
        'listeners:',
        '  - { protocol: mqtt, port: 0, path: /mqtt }',
        `  - { protocol: mqtts, port: 0, path: /x, ${tls(', certificateAsUsername: true')} }`,
        // neither does nothing: no warning
        '  - { protocol: ws, port: 0, path: /broker }',
        `  - { protocol: wss, port: 0, ${tls(', requireClientCert: true, certificateAsUsername: true')} }`,
      ].join('\n'),
    );
    const expected = [
      'listeners[0].path does nothing on an mqtt listener: only ws and wss listeners serve a path',
      'listeners[1].path does nothing on an mqtts listener: only ws and wss listeners serve a path',
      'listeners[1].tls.certificateAsUsername does nothing without tls.requireClientCert: no client certificate is asked for',
    ];
    const check = run(['check-config', cfg]);
    assert.equal(await check.exit, 0, check.stderr());
    assert.equal(check.stderr(), expected.map((w) => `midge: warning: ${w}\n`).join(''));
    const start = run(['--config', cfg]);
    assert.ok(await eventually(() => /listening on wss:/.test(start.stderr()), 10_000), start.stderr());
    assert.ok(await eventually(() => loggedWarnings(start.stdout()).length >= 3, 5000), start.stdout());
    assert.deepEqual(loggedWarnings(start.stdout()), expected);
    start.child.kill('SIGTERM');
    assert.equal(await start.exit, 0);
  });

  test('an ACL rule with an invalid filter or an unknown access word is refused in one line naming the file and line, exit code 2, at start-up and by check-config', async () => {
    for (const [rule, why] of [
      ['topic read a/#/b', `invalid topic filter "a/#/b": '#' must be the last character`],
      ['topic raed foo/#', 'unknown access "raed": expected read, write, readwrite or deny before the topic filter (a filter with a space needs one)'],
      ['topic read a/# # all of a', `invalid topic filter "a/# # all of a": '#' must be the last character (a comment must be on a line of its own)`],
    ]) {
      const acl = tmpFile('acl', `# sensors\ntopic read sensors/#\n${rule}\n`);
      const line = new RegExp(`^midge: ${literal(`${acl}:3: ${why}`)}$`);
      await refused(['--persistence', 'memory', '--port', '0', '--acl-file', acl], line);
      await refused(['check-config', tmpFile('acl.yaml', `aclFile: ${acl}\n`)], line);
    }
  });

  test('allowAnonymous false with no password file is warned of, by check-config and at start-up, and clients with a user name are refused as clients without one', async () => {
    const warning = 'allowAnonymous is false and there is no passwordFile, so no client can log in (a user name alone is refused) unless an authenticate hook of an embedding application accepts it';
    const check = run(['check-config', tmpFile('closed.yaml', 'persistence: memory\nallowAnonymous: false\n')]);
    assert.equal(await check.exit, 0, check.stderr());
    assert.equal(check.stderr(), `midge: warning: ${warning}\n`);
    const listeners = run(['check-config', tmpFile('per-listener.yaml', 'persistence: memory\nlisteners:\n  - { port: 0 }\n  - { port: 0, allowAnonymous: false }\n')]);
    assert.equal(await listeners.exit, 0, listeners.stderr());
    assert.equal(listeners.stderr(), `midge: warning: listeners[1]: ${warning}\n`);

    const start = run(['--port', '0', '--persistence', 'memory', '--allow-anonymous', 'false']);
    assert.ok(await eventually(() => /listening on mqtt:/.test(start.stderr()), 10_000), start.stderr());
    assert.ok(await eventually(() => loggedWarnings(start.stdout()).length >= 1, 5000), start.stdout());
    assert.deepEqual(loggedWarnings(start.stdout()), [warning]);
    const port = Number(/listening on mqtt:\/\/[^\s]+:(\d+)/.exec(start.stderr())?.[1]);
    const v5 = await rawConnect(port, 5, { clientId: 'c5', username: 'whoever', password: 'anything' });
    assert.equal(v5.connack.reasonCode, 0x86);
    const v4 = await rawConnect(port, 4, { clientId: 'c4', username: 'whoever' });
    assert.equal(v4.connack.returnCode, 4);
    const anonymous = await rawConnect(port, 4, { clientId: 'c0' });
    assert.equal(anonymous.connack.returnCode, 4);
    start.child.kill('SIGTERM');
    assert.equal(await start.exit, 0);
  });

  test('--http-port -1 is "off", as httpPort: -1 is; --port -1 gets the setting\'s own message, not "argument is ambiguous"', async () => {
    const off = run(['--port', '0', '--persistence', 'memory', '--http-port', '-1', '--admin-token', 't0ken']);
    assert.ok(await eventually(() => /listening on mqtt:/.test(off.stderr()), 10_000), off.stderr());
    // taken as httpPort -1: the token then does nothing, and the log says so
    assert.ok(await eventually(() => loggedWarnings(off.stdout()).some((w) => /the admin API is off/.test(w)), 5000), off.stdout());
    off.child.kill('SIGTERM');
    assert.equal(await off.exit, 0);
    assert.doesNotMatch(off.stderr(), /http endpoint on/);
    for (const flag of ['--port', '-p']) {
      await refused(['--persistence', 'memory', flag, '-1'], /^midge: command line: --port must be an integer between 0 and 65535 \(got "-1"\)$/);
    }
    await refused(['--persistence', 'memory', '--ws-port', '-1'], /^midge: command line: --ws-port must be a port between 0 and 65535 \(got "-1"\)$/);
  });

  test('check-config of a file with none of these mistakes says nothing on stderr, and shows the path each WebSocket listener serves', async () => {
    const r = run(['check-config', tmpFile('fine.yaml', 'listeners:\n  - { protocol: ws, port: 0, path: /broker }\n  - { port: 0 }\n  - { protocol: ws, port: 0 }\n')]);
    assert.equal(await r.exit, 0, r.stderr());
    assert.equal(r.stderr(), '');
    const shown = JSON.parse(r.stdout().slice(r.stdout().indexOf('\n') + 1)) as { listeners: Array<{ path?: string }> };
    assert.deepEqual(shown.listeners.map((l) => l.path), ['/broker', undefined, '/mqtt']);
  });
});
