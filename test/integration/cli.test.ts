import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { eventually, expectPacket, rawConnect } from '../helpers/raw-session.js';
import { closeClients, connectClient, nextMessages } from '../helpers/broker.js';
import { createPki } from '../helpers/certs.js';
import { killMidges, runMidge as run, tmpFile, type MidgeRun as Run } from '../helpers/cli.js';
import type { IClientOptions } from 'mqtt';

async function listeningPort(r: Run): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = /listening on mqtt:\/\/[^\s]+:(\d+)/.exec(r.stderr());
    if (m) return Number(m[1]);
    if (Date.now() > deadline) throw new Error(`no listening line; stderr: ${r.stderr()}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function usageError(args: string[], mentions: RegExp): Promise<void> {
  const r = run(args);
  assert.equal(await r.exit, 2, r.stderr());
  const lines = r.stderr().trim().split('\n');
  assert.equal(lines.length, 1, `one line, got: ${r.stderr()}`);
  assert.match(lines[0] ?? '', mentions);
}

describe('command line', () => {
  // a failed assertion must not leave a broker running and the test file waiting on it
  after(killMidges);

  test('with no host it listens on loopback only, says how to open it up, and SIGTERM sends 5.0 clients DISCONNECT 0x8B', async () => {
    const r = run(['--port', '0', '--log-level', 'silent']);
    const port = await listeningPort(r);
    assert.match(r.stderr(), /listening on mqtt:\/\/127\.0\.0\.1:\d+/);
    await eventually(() => /--host 0\.0\.0\.0/.test(r.stderr()));
    assert.match(r.stderr(), /--host 0\.0\.0\.0/);
    const { raw } = await rawConnect(port, 5, { clientId: 'cli-v5' });
    r.child.kill('SIGTERM');
    const d = await expectPacket(raw, 'disconnect', 5000);
    assert.equal(d.reasonCode, 0x8b);
    assert.equal(await r.exit, 0);
  });

  test('stdout holds JSON log lines only; where it listens and the hints go to stderr', async () => {
    const r = run(['--port', '0', '--persistence', 'memory', '--http-port', '0', '--admin-token', 't0ken']);
    const port = await listeningPort(r);
    assert.ok(await eventually(() => /http endpoint on http:\/\/127\.0\.0\.1:\d+/.test(r.stderr()), 5000), r.stderr());
    const { raw } = await rawConnect(port, 5, { clientId: 'log-reader' });
    raw.close();
    assert.ok(await eventually(() => /"msg":"client disconnected"/.test(r.stdout()), 5000), r.stdout());
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
    const lines = r.stdout().split('\n').filter((l) => l !== '');
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not a JSON line on stdout: ${l}`);
    assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'listening'), 'the log says where it listens too');
    assert.match(r.stderr(), /only this machine can connect over MQTT/);
  });

  test('the hints say which endpoint other machines can reach: MQTT and HTTP each by its own host', async () => {
    const open = run(['--config', tmpFile('http.yaml', 'httpHost: 0.0.0.0\nhttpPort: 0\nport: 0\npersistence: memory\nlogLevel: silent\n')]);
    await listeningPort(open);
    assert.ok(await eventually(() => /the HTTP endpoint accepts other machines/.test(open.stderr()), 5000), open.stderr());
    assert.match(open.stderr(), /^only this machine can connect over MQTT; use --host 0\.0\.0\.0/m);
    assert.match(open.stderr(), /^the HTTP endpoint accepts other machines \(httpHost 0\.0\.0\.0\)$/m);
    open.child.kill('SIGTERM');
    assert.equal(await open.exit, 0);
    const mqttOpen = run(['--host', '0.0.0.0', '--port', '0', '--http-port', '0', '--persistence', 'memory', '--log-level', 'silent']);
    await listeningPort(mqttOpen);
    assert.ok(await eventually(() => /HTTP endpoint/.test(mqttOpen.stderr()), 5000), mqttOpen.stderr());
    assert.match(mqttOpen.stderr(), /^only this machine can reach the HTTP endpoint; httpHost: 0\.0\.0\.0 in the config opens it to other machines$/m);
    assert.doesNotMatch(mqttOpen.stderr(), /over MQTT/);
    mqttOpen.child.kill('SIGTERM');
    assert.equal(await mqttOpen.exit, 0);
  });

  test('SIGINT stops it with exit code 0', async () => {
    const r = run(['--port', '0', '--log-level', 'silent']);
    await listeningPort(r);
    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0);
  });

  test('a config file (YAML) sets host, port and limits; a flag overrides the file', async () => {
    const cfg = tmpFile('midge.yaml', 'host: 127.0.0.1\nport: 1\nlogLevel: silent\nlimits:\n  maxClientIdLength: 23\n');
    const r = run(['--config', cfg, '--port', '0']);
    const port = await listeningPort(r);
    const { connack, raw } = await rawConnect(port, 5, { clientId: 'x'.repeat(24) });
    assert.equal(connack.reasonCode, 0x85, 'the limit from the file applies');
    raw.close();
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
  });

  test('a JSON config file is read too', async () => {
    const cfg = tmpFile('midge.json', JSON.stringify({ port: 0, logLevel: 'silent' }));
    const r = run(['-c', cfg]);
    await listeningPort(r);
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
  });

  test('an unknown flag is one line and exit code 2', () => usageError(['--bogus'], /--bogus/));
  test('a port out of range is one line naming the setting and exit code 2', () => usageError(['--port', '70000'], /port/));
  test('an unknown log level is one line naming the flag and exit code 2', () => usageError(['--log-level', 'loud'], /^midge: command line: --log-level must be one of /));
  test('a mistake in a flag names the flag the user typed, not the config key', async () => {
    await usageError(['--allow-anonymous', 'yes'], /^midge: command line: --allow-anonymous must be true or false \(got "yes"\)$/);
    await usageError(['--admin-token', 'T', '--cluster-node-id', 'a b'], /^midge: command line: --cluster-node-id must be 1 to 128 /);
    await usageError(['--tls-port', '0', '--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-require-client-cert'], /^midge: command line: --tls-require-client-cert needs --tls-ca to verify client certificates$/);
    // alone they would set up no listener
    await usageError(['--tls-ca', 'ca.pem'], /^midge: command line: --tls-ca goes with --tls-port or --wss-port$/);
  });
  test('the settings of the wrong type in a config file say which type they take', async () => {
    await usageError(['--config', tmpFile('token.yaml', 'adminToken: 12345\n')], /token\.yaml: adminToken must be a string \(got 12345; quote it in YAML\)$/);
    await usageError(['check-config', tmpFile('id.yaml', 'clusterNodeId: 7\n')], /id\.yaml: clusterNodeId must be a string \(got 7; quote it in YAML\)$/);
    await usageError(['--config', tmpFile('mtls.yaml', 'listeners:\n  - protocol: mqtts\n    port: 0\n    tls: { cert: c.pem, key: k.pem, ca: ca.pem, requireClientCert: "yes" }\n')], /listeners\[0\]\.tls\.requireClientCert must be true or false \(got "yes"\)$/);
  });
  test('a config file holding a list, not a mapping of settings, says so', async () => {
    await usageError(['--config', tmpFile('list.yaml', '- port: 1883\n- host: 0.0.0.0\n')], /list\.yaml must hold a mapping of settings \(name: value\), not a list$/);
    await usageError(['check-config', tmpFile('list.json', '[{"port": 1883}]')], /list\.json must hold a mapping of settings \(name: value\), not a list$/);
  });
  test('-h alone prints the help (the host is --host); -h with an address says so', async () => {
    for (const flag of ['-h', '--help']) {
      const r = run([flag]);
      assert.equal(await r.exit, 0, r.stderr());
      assert.match(r.stdout(), /^usage: midge /);
      assert.match(r.stdout(), /--cluster-redis URL/);
    }
    await usageError(['-h', '0.0.0.0'], /^midge: command line: Unexpected argument '0\.0\.0\.0'.* \(-h is --help; the address to listen on is --host H\)$/);
  });
  test('an unknown setting in the file is one line naming it and exit code 2', () =>
    usageError(['--config', tmpFile('bad.yaml', 'limits:\n  maxInflightz: 5\n')], /limits\.maxInflightz/));
  test('a limit of the wrong type in the file is one line and exit code 2', () =>
    usageError(['--config', tmpFile('bad.yaml', 'limits:\n  maxPacketSize: big\n')], /limits\.maxPacketSize/));
  test('a YAML syntax error is one line and exit code 2', () =>
    usageError(['--config', tmpFile('bad.yaml', 'port: [1\n')], /not valid YAML/));
  test('a missing config file is one line and exit code 2', () => usageError(['--config', '/nonexistent/midge.yaml'], /cannot read/));

  test('a port already in use is one line and exit code 1', async () => {
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = run(['--port', String(port), '--log-level', 'silent']);
      assert.equal(await r.exit, 1);
      assert.match(r.stderr().trim(), /^midge: cannot listen on 127\.0\.0\.1:\d+: address already in use$/);
    } finally {
      blocker.close();
    }
  });

  test("a cluster's Redis that cannot be reached is one line and exit code 1, as a port in use", async () => {
    const probe = createServer();
    await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((res) => probe.close(() => res()));
    const r = run(['--port', '0', '--persistence', 'memory', '--cluster-redis', `redis://:s3cret@127.0.0.1:${port}`]);
    assert.equal(await r.exit, 1);
    assert.equal(r.stderr(), `midge: cluster: cannot reach Redis at redis://***@127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
  });

  test('the default store is on disk: after SIGTERM no acknowledged message is left behind, a persistent session and its queue survive', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-data-'));
    const first = run(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
    const port1 = await listeningPort(first);
    const sub = await rawConnect(port1, 4, { clientId: 'durable', clean: false });
    sub.raw.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'keep', qos: 1 }] }, 4);
    await expectPacket(sub.raw, 'suback');
    sub.raw.close();
    const pub = await rawConnect(port1, 4, { clientId: 'pub' });
    pub.raw.sendPacket({ cmd: 'publish', topic: 'keep', payload: Buffer.from('across restarts'), qos: 1, messageId: 1 }, 4);
    await expectPacket(pub.raw, 'puback');
    pub.raw.close();
    first.child.kill('SIGTERM');
    assert.equal(await first.exit, 0);
    const second = run(['--port', '0', '--data-dir', dataDir, '--log-level', 'silent']);
    const port2 = await listeningPort(second);
    const back = await rawConnect(port2, 4, { clientId: 'durable', clean: false });
    assert.equal(back.connack.sessionPresent, true);
    assert.equal((await expectPacket(back.raw, 'publish')).payload?.toString(), 'across restarts');
    back.raw.close();
    second.child.kill('SIGTERM');
    assert.equal(await second.exit, 0);
  });

  test('a data dir that is not Midge data: one line and exit code 3, never an empty start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'midge-data-'));
    writeFileSync(join(dataDir, 'data.mdb'), Buffer.alloc(8192, 0x5a));
    const r = run(['--port', '0', '--data-dir', dataDir]);
    assert.equal(await r.exit, 3);
    assert.match(r.stderr().trim(), /^midge: .*corrupted or not a Midge data file$/);
  });

  test('--persistence memory keeps nothing on disk', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'midge-cwd-'));
    const r = run(['--port', '0', '--persistence', 'memory', '--log-level', 'silent'], cwd);
    await listeningPort(r);
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
    assert.equal(existsSync(join(cwd, 'data')), false);
  });

  test('--tls-port and --ws-port open more listeners next to the TCP one, each printed', async () => {
    const pki = createPki('cli-client');
    const r = run(['--port', '0', '--persistence', 'memory', '--log-level', 'silent', '--tls-port', '0', '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--ws-port', '0']);
    await listeningPort(r);
    await eventually(() => /listening on ws:/.test(r.stderr()));
    const tlsPort = Number(/listening on mqtts:\/\/[^\s]+:(\d+)/.exec(r.stderr())?.[1]);
    const wsPort = Number(/listening on ws:\/\/[^\s]+:(\d+)\/mqtt/.exec(r.stderr())?.[1]);
    const viaTls = await connectClient(tlsPort, { protocol: 'mqtts', ca: readFileSync(pki.ca), clientId: 'cli-tls' } as IClientOptions);
    const viaWs = await connectClient(wsPort, { protocol: 'ws', path: '/mqtt', clientId: 'cli-ws' } as IClientOptions);
    await viaWs.subscribeAsync('cli/x', { qos: 1 });
    const got = nextMessages(viaWs, 1);
    await viaTls.publishAsync('cli/x', 'across listeners', { qos: 1 });
    assert.equal((await got)[0]?.payload.toString(), 'across listeners');
    await closeClients();
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
  });

  test('listeners from the config file replace the default one; a bad listener is one line and exit code 2', async () => {
    const cfg = tmpFile('listeners.yaml', 'logLevel: silent\npersistence: memory\nlisteners:\n  - protocol: ws\n    port: 0\n    path: /broker\n');
    const r = run(['--config', cfg]);
    await eventually(() => /listening on ws:\/\/127\.0\.0\.1:\d+\/broker/.test(r.stderr()), 5000);
    assert.doesNotMatch(r.stderr(), /listening on mqtt:/);
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
    await usageError(['--config', tmpFile('bad.yaml', 'listeners:\n  - protocol: mqtts\n    port: 8883\n')], /listeners\[0\]: a mqtts listener needs tls.cert and tls.key/);
    await usageError(['--config', tmpFile('bad2.yaml', 'listeners:\n  - port: 1\n    colour: blue\n')], /listeners\[0\]: unknown setting "colour"/);
    await usageError(['--tls-port', '8883'], /--tls-port and --wss-port need --tls-cert and --tls-key/);
  });

  test('a Unix socket listener: printed, served, kept from a live broker, and its stale file from a killed one replaced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-sock-'));
    const socket = join(dir, 'midge.sock');
    const cfg = tmpFile('unix.yaml', `logLevel: silent\npersistence: memory\nlisteners:\n  - socket: ${socket}\n  - port: 0\n`);
    const first = run(['--config', cfg]);
    assert.ok(await eventually(() => first.stderr().includes(`listening on mqtt over Unix socket ${socket}`), 5000), first.stderr());
    // the lines may arrive in separate reads
    assert.ok(await eventually(() => /listening on mqtt:\/\/127\.0\.0\.1:\d+/.test(first.stderr()), 5000), first.stderr());
    const { raw, connack } = await rawConnect(socket, 5, { clientId: 'local' });
    assert.equal(connack.reasonCode, 0);
    raw.close();
    // a second broker on the same path: the live one keeps it
    const second = run(['--config', cfg]);
    assert.equal(await second.exit, 1);
    assert.equal(second.stderr().trim(), `midge: cannot listen on ${socket}: address already in use`);
    // killed, the first leaves its socket file behind; the next start replaces it
    first.child.kill('SIGKILL');
    await first.exit;
    assert.ok(existsSync(socket), 'a killed broker leaves its socket file');
    const third = run(['--config', cfg]);
    assert.ok(await eventually(() => third.stderr().includes(`listening on mqtt over Unix socket ${socket}`), 5000), third.stderr());
    const again = await rawConnect(socket, 4, { clientId: 'local-again' });
    assert.equal(again.connack.returnCode, 0);
    again.raw.close();
    third.child.kill('SIGTERM');
    assert.equal(await third.exit, 0);
    assert.ok(!existsSync(socket), 'a broker that stops removes its socket file');
    await usageError(['--config', tmpFile('rel.yaml', 'listeners:\n  - socket: midge.sock\n')], /listeners\[0\]\.socket must be an absolute file path/);
    await usageError(['--socket', 'midge.sock'], /^midge: command line: --socket must be an absolute path \(got "midge\.sock"\)$/);
    const nowhere = run(['--persistence', 'memory', '--port', '0', '--socket', join(dir, 'missing', 'm.sock')]);
    assert.equal(await nowhere.exit, 1);
    assert.equal(nowhere.stderr().trim(), `midge: cannot listen on ${join(dir, 'missing', 'm.sock')}: no directory ${join(dir, 'missing')}`);
    // --socket adds to the TCP listener
    const flag = run(['--persistence', 'memory', '--port', '0', '--socket', join(dir, 'flag.sock')]);
    assert.ok(await eventually(() => flag.stderr().includes(`listening on mqtt over Unix socket ${join(dir, 'flag.sock')}`), 5000), flag.stderr());
    assert.ok(await eventually(() => /listening on mqtt:\/\/127\.0\.0\.1:\d+/.test(flag.stderr()), 5000), flag.stderr());
    const viaFlag = await rawConnect(join(dir, 'flag.sock'), 4, { clientId: 'flag' });
    assert.equal(viaFlag.connack.returnCode, 0);
    viaFlag.raw.close();
    flag.child.kill('SIGTERM');
    assert.equal(await flag.exit, 0);
    await usageError(['--config', tmpFile('both.yaml', `listeners:\n  - socket: ${socket}\n    port: 1883\n`)], /listeners\[0\]: a listener takes either socket or host and port, not both/);
  });

  test('check-config finds a password or ACL file that cannot be read, with the line start-up gives', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-files-'));
    for (const [setting, path, line] of [
      ['passwordFile', join(dir, 'missing'), `midge: cannot read the password file ${join(dir, 'missing')}: ENOENT`],
      // a directory where a file should be: a file that cannot be read, even as root
      ['aclFile', dir, `midge: cannot read the ACL file ${dir}: EISDIR`],
    ] as const) {
      const cfg = tmpFile('files.yaml', `${setting}: ${path}\nport: 0\npersistence: memory\n`);
      const check = run(['check-config', cfg]);
      assert.equal(await check.exit, 2, check.stdout());
      assert.equal(check.stderr(), `${line}\n`);
      const start = run(['--config', cfg]);
      assert.equal(await start.exit, 2);
      assert.equal(start.stderr(), `${line}\n`);
    }
    const bad = tmpFile('passwords', 'alice:not-a-hash\n');
    await usageError(['check-config', tmpFile('pw.yaml', `passwordFile: ${bad}\n`)], /^midge: .*passwords:1: the password of "alice" is not a \$7\$ or \$6\$ hash$/);
  });

  test('check-config finds TLS files that cannot be read or used, naming the setting and the path', async () => {
    const pki = createPki('check');
    const listener = (tls: string): string => tmpFile('tls.yaml', `listeners:\n  - protocol: mqtts\n    port: 0\n    tls: { ${tls} }\n`);
    await usageError(['check-config', listener(`cert: /nonexistent/c.pem, key: ${pki.serverKey}`)], /tls\.yaml: listeners\[0\]\.tls\.cert: cannot read \/nonexistent\/c\.pem: ENOENT$/);
    await usageError(['check-config', listener(`cert: ${pki.serverCert}, key: ${pki.serverKey}, ca: /nonexistent/ca.pem`)], /listeners\[0\]\.tls\.ca: cannot read \/nonexistent\/ca\.pem: ENOENT$/);
    // the client's key does not go with the server's certificate
    await usageError(['check-config', listener(`cert: ${pki.serverCert}, key: ${pki.clientKey}`)], /listeners\[0\]\.tls\.cert: .* are not a usable certificate and key: /);
    // a CA file with no PEM certificate (DER, a key) would be taken, and every client certificate then refused
    const der = join(pki.dir, 'ca.der');
    execFileSync('openssl', ['x509', '-in', pki.ca, '-outform', 'der', '-out', der]);
    for (const ca of [der, pki.clientKey]) {
      await usageError(['check-config', listener(`cert: ${pki.serverCert}, key: ${pki.serverKey}, ca: ${ca}`)], /listeners\[0\]\.tls\.ca: TLS CA file .* holds no PEM certificate \(a DER file converts with: openssl x509 -inform der -in FILE -out FILE\.pem\)$/);
    }
    await usageError(['--persistence', 'memory', '--port', '0', '--config', listener(`cert: ${pki.serverCert}, key: ${pki.serverKey}, ca: ${der}`)], /listeners\[0\]\.tls\.ca: TLS CA file .* holds no PEM certificate/);
    const good = run(['check-config', listener(`cert: ${pki.serverCert}, key: ${pki.serverKey}, ca: ${pki.ca}`)]);
    assert.equal(await good.exit, 0, good.stderr());
  });

  test('a TLS file that cannot be read at start-up is a configuration mistake: one line naming the setting and the path, exit code 2', async () => {
    const pki = createPki('start');
    await usageError(['--persistence', 'memory', '--port', '0', '--tls-port', '0', '--tls-cert', '/nonexistent/c.pem', '--tls-key', pki.serverKey], /^midge: command line: --tls-cert: cannot read \/nonexistent\/c\.pem: ENOENT$/);
    await usageError(['--persistence', 'memory', '--port', '0', '--wss-port', '0', '--tls-cert', pki.serverCert, '--tls-key', pki.dir], /^midge: command line: --tls-key: cannot read .*: EISDIR$/);
    const cfg = tmpFile('tls.yaml', `persistence: memory\nlisteners:\n  - protocol: mqtts\n    port: 0\n    tls: { cert: ${pki.serverCert}, key: /nonexistent/k.pem }\n`);
    await usageError(['--config', cfg], /^midge: .*tls\.yaml: listeners\[0\]\.tls\.key: cannot read \/nonexistent\/k\.pem: ENOENT$/);
  });

  test('an admin token with no HTTP port: start-up logs a warning that the admin API is off', async () => {
    const r = run(['--port', '0', '--persistence', 'memory', '--admin-token', 't0ken']);
    await listeningPort(r);
    const warned = (): boolean =>
      r.stdout().split('\n').some((l) => l.startsWith('{') && (JSON.parse(l) as { level: number; msg: string }).level === 40 && /the admin API is off/.test((JSON.parse(l) as { msg: string }).msg));
    assert.ok(await eventually(warned, 5000), r.stdout());
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
    // with the port it is on, and nothing is said
    const on = run(['--port', '0', '--persistence', 'memory', '--admin-token', 't0ken', '--http-port', '0']);
    await listeningPort(on);
    await eventually(() => /http endpoint on/.test(on.stderr()), 5000);
    on.child.kill('SIGTERM');
    assert.equal(await on.exit, 0);
    assert.doesNotMatch(on.stdout(), /admin API is off/);
  });

  test('check-config hides the password of the cluster URL, as it does the admin token', async () => {
    const r = run(['check-config', tmpFile('cluster.yaml', 'clusterRedis: "redis://midge:s3cret@redis.internal:6379"\nadminToken: t0ken\nhttpPort: 9090\n')]);
    assert.equal(await r.exit, 0, r.stderr());
    assert.doesNotMatch(r.stdout(), /s3cret|t0ken/);
    assert.match(r.stdout(), /"clusterRedis": "redis:\/\/\*\*\*@redis\.internal:6379"/);
    assert.match(r.stdout(), /"adminToken": "\(set\)"/);
    assert.equal(r.stderr(), '');
  });

  test('check-config --help (or -h) prints its usage', async () => {
    for (const flag of ['--help', '-h']) {
      const r = run(['check-config', flag]);
      assert.equal(await r.exit, 0, r.stderr());
      assert.match(r.stdout(), /^usage: midge check-config FILE\n/);
    }
    await usageError(['check-config'], /^midge: usage: midge check-config FILE$/);
  });

  test('an admin token with no HTTP port: check-config warns that the admin API is off', async () => {
    const r = run(['check-config', tmpFile('admin.yaml', 'adminToken: t0ken\n')]);
    assert.equal(await r.exit, 0);
    assert.equal(r.stderr(), 'midge: warning: adminToken (--admin-token) is set but httpPort (--http-port) is not: the admin API is off\n');
  });

  test('check-config accepts a good file and refuses a bad one with exit code 2', async () => {
    const good = run(['check-config', tmpFile('ok.yaml', 'port: 1884\n')]);
    assert.equal(await good.exit, 0);
    assert.match(good.stdout(), /ok/);
    await usageError(['check-config', tmpFile('bad.yaml', 'port: -1\n')], /port/);
  });
});
