import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createBroker, type Broker } from '../../src/index.js';
import { drainFor, eventually, expectPacket, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

const TOKEN = 'sekret-token';

/** A metric's value from Prometheus text, summed over label sets that contain `labels`. */
function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels !== '' && !rest.includes(labels)) continue;
    sum += Number(line.split(' ').pop());
  }
  return sum;
}

describe('operations: metrics, health, admin API and $SYS over real HTTP and MQTT', () => {
  let broker: Broker;
  let port: number;
  let http: string;
  before(async () => {
    broker = await createBroker({ sysInterval: 1 });
    port = (await broker.listen({ port: 0, host: '127.0.0.1' })).port;
    const h = await broker.listenHttp({ port: 0, adminToken: TOKEN });
    http = `http://127.0.0.1:${h.port}`;
  });
  after(() => broker.close());

  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${http}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

  test('/healthz and /readyz answer 200; /metrics moves when messages flow', async () => {
    assert.equal((await fetch(`${http}/healthz`)).status, 200);
    assert.equal((await fetch(`${http}/readyz`)).status, 200);
    const before = await (await fetch(`${http}/metrics`)).text();
    const sub = await rawConnect(port, 4, { clientId: 'm-sub' });
    await rawSubscribe(sub.raw, 4, 1, [{ topic: 'm/#', qos: 1 }]);
    const pub = await rawConnect(port, 4, { clientId: 'm-pub' });
    for (let i = 0; i < 5; i++) {
      pub.raw.sendPacket({ cmd: 'publish', topic: 'm/x', payload: Buffer.from('12345'), qos: 1, messageId: i + 1 }, 4);
      await expectPacket(pub.raw, 'puback');
    }
    await drainFor(sub.raw, 200);
    const after = await (await fetch(`${http}/metrics`)).text();
    assert.equal(metric(after, 'midge_messages_received_total', 'qos="1"') - metric(before, 'midge_messages_received_total', 'qos="1"'), 5);
    assert.ok(metric(after, 'midge_messages_sent_total', 'qos="1"') - metric(before, 'midge_messages_sent_total', 'qos="1"') >= 5);
    assert.ok(metric(after, 'midge_bytes_received_total') > metric(before, 'midge_bytes_received_total'));
    assert.equal(metric(after, 'midge_connections'), metric(before, 'midge_connections') + 2);
    assert.ok(metric(after, 'midge_inflight_messages') >= 5, 'the subscriber has not acknowledged');
    assert.match(after, /midge_process_nodejs_eventloop_lag_seconds/);
    sub.raw.close();
    pub.raw.close();
  });

  test('the admin API needs the token, lists and finds clients, and disconnecting one closes a real connection (5.0: DISCONNECT 0x98)', async () => {
    assert.equal((await fetch(`${http}/api/v1/clients`)).status, 401);
    assert.equal((await api('/clients', { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const c = await rawConnect(port, 5, { clientId: 'admin-target', username: 'ops', keepalive: 30 });
    await rawSubscribe(c.raw, 5, 1, [{ topic: 'a/b', qos: 1 }]);
    const list = (await (await api('/clients?q=admin-')).json()) as { total: number; items: Array<Record<string, unknown>> };
    assert.equal(list.total, 1);
    assert.equal(list.items[0]?.id, 'admin-target');
    assert.equal(list.items[0]?.username, 'ops');
    assert.equal(list.items[0]?.protocolVersion, 5);
    const subs = (await (await api('/clients/admin-target/subscriptions')).json()) as { items: Array<{ filter?: string; topicFilter?: string }> };
    assert.equal(subs.items.length, 1);
    const del = await api('/clients/admin-target', { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal((await expectPacket(c.raw, 'disconnect')).reasonCode, 0x98);
    assert.ok(await c.raw.waitClosed());
    assert.equal((await api('/clients/admin-target', { method: 'DELETE' })).status, 404);
  });

  test('admin publish, retained messages read and deleted, sessions listed and deleted; bad input gets a clear 4xx', async () => {
    const pub = await api('/publish', { method: 'POST', body: JSON.stringify({ topic: 'admin/retained', payload: 'aGk=', encoding: 'base64', qos: 1, retain: true }) });
    assert.equal(pub.status, 202);
    const one = (await (await api('/retained/admin/retained')).json()) as { topic: string; payload?: string };
    assert.equal(one.topic, 'admin/retained');
    const listed = (await (await api('/retained?limit=500')).json()) as { items: Array<{ topic: string }> };
    assert.ok(listed.items.some((r) => r.topic === 'admin/retained'));
    assert.equal((await api('/retained/admin/retained', { method: 'DELETE' })).status, 200);
    assert.equal((await api('/retained/admin/retained')).status, 404);

    const s = await rawConnect(port, 4, { clientId: 'offline-admin', clean: false });
    s.raw.close();
    await eventually(() => broker.stats.clientsDisconnected > 0);
    const sessions = (await (await api('/sessions')).json()) as { items: Array<{ clientId?: string; id?: string }> };
    assert.ok(sessions.items.some((x) => (x.clientId ?? x.id) === 'offline-admin'));
    assert.equal((await api('/sessions/offline-admin', { method: 'DELETE' })).status, 200);
    const back = await rawConnect(port, 4, { clientId: 'offline-admin', clean: false });
    assert.equal(back.connack.sessionPresent, false);
    back.raw.close();

    // 5.0 4.8.2: a shared-subscription member's session deleted while it is away hands its
    // messages to the group's other members, as its expiry would
    for (const id of ['share-del-1', 'share-del-2']) {
      const m = await rawConnect(port, 5, { clientId: id, clean: true, properties: { sessionExpiryInterval: 3600 } });
      await rawSubscribe(m.raw, 5, 1, [{ topic: '$share/adm/share-del', qos: 1 }]);
      m.raw.close();
    }
    const away = async (): Promise<boolean> => {
      const list = (await (await api('/sessions?q=share-del')).json()) as { items: Array<{ connected: boolean }> };
      return list.items.length === 2 && list.items.every((x) => !x.connected);
    };
    for (let i = 0; i < 100 && !(await away()); i++) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 6; i++) await broker.publish({ topic: 'share-del', payload: `m${i}`, qos: 1 });
    assert.equal((await api('/sessions/share-del-1', { method: 'DELETE' })).status, 200);
    const other = await rawConnect(port, 5, { clientId: 'share-del-2', clean: false, properties: { sessionExpiryInterval: 3600 } });
    const got = (await drainFor(other.raw, 300)).filter((p) => p.cmd === 'publish').map((p) => p.payload?.toString()).sort();
    assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
    other.raw.close();

    const bad = await api('/publish', { method: 'POST', body: JSON.stringify({ topic: 'x', payload: 'y', qos: 3 }) });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /qos/);
    assert.equal((await api('/clients?limit=0')).status, 400);
    assert.equal((await api('/nothing')).status, 404);
    assert.equal((await api('/clients', { method: 'PATCH' })).status, 405);
    assert.equal((await api('/publish', { method: 'POST', body: JSON.stringify({ topic: 'a/+', payload: 'x' }) })).status, 400);
  });

  test('bad input to the HTTP endpoint gets a 4xx that says what is wrong, never a 500: bad percent-encoding 400, a wrong method 405 with Allow', async () => {
    for (const [method, path] of [['GET', '/clients/%E0%A4'], ['GET', '/retained/%ZZ'], ['DELETE', '/sessions/%E0'], ['GET', '/clients/ok/subscriptions%FF']] as const) {
      const r = await api(path, { method });
      assert.equal(r.status, 400, `${method} ${path}`);
      assert.match(((await r.json()) as { error: string }).error, /percent-encoding/);
    }
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await fetch(`${http}${path}`, { method });
        assert.equal(r.status, 405, `${method} ${path}`);
        assert.equal(r.headers.get('allow'), 'GET, HEAD');
        assert.match(((await r.json()) as { error: string }).error, new RegExp(`${method} is not supported on ${path}`));
      }
      assert.equal((await fetch(`${http}${path}`, { method: 'HEAD' })).status, 200, `HEAD ${path}`);
    }
    const patch = await api('/clients', { method: 'PATCH' });
    assert.equal(patch.status, 405);
    assert.equal(patch.headers.get('allow'), 'GET');
    assert.equal((await api('/retained/some/topic', { method: 'POST', body: '{}' })).headers.get('allow'), 'GET, DELETE');
    assert.equal((await api('/clients/a/b/c')).status, 404, 'no such resource, whatever the method');
    // a request target no URL parser takes: only a raw socket can send one
    const head = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(http).port), '127.0.0.1', () => socket.end('GET http://[bad/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });
    assert.match(head, /^HTTP\/1\.1 400 /);
    assert.match(head, /not a valid URL/);
  });

  test('the admin API finds a retained topic with empty levels by the rest of the path', async () => {
    for (const topic of ['/lead', 'a//b', 'trail/']) {
      assert.equal((await api('/publish', { method: 'POST', body: JSON.stringify({ topic, payload: topic, retain: true }) })).status, 202);
    }
    for (const topic of ['/lead', 'a//b', 'trail/']) {
      const r = await api(`/retained/${topic}`);
      assert.equal(r.status, 200, topic);
      assert.equal(((await r.json()) as { payload: string }).payload, topic);
      assert.equal((await api(`/retained/${topic}`, { method: 'DELETE' })).status, 200);
    }
  });

  test('docs/operations.md lists every metric and every $SYS topic the broker publishes, and no other', async () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/operations.md', import.meta.url)), 'utf8');
    const text = await (await fetch(`${http}/metrics`)).text();
    const served = new Set(text.split('\n').filter((l) => l.startsWith('# TYPE midge_') && !l.startsWith('# TYPE midge_process_')).map((l) => l.split(' ')[2] as string));
    served.delete('midge_scrape_marker');
    const table = doc.slice(doc.indexOf('## Metrics'), doc.indexOf('## Admin API'));
    const documented = new Set([...table.matchAll(/^\| `(midge_[a-z_]+)(?:\{[a-z]+\})?`(?:, `(midge_[a-z_]+)`)?/gm)].flatMap((m) => [m[1], m[2]]).filter((n): n is string => n !== undefined));
    assert.deepEqual([...documented].sort(), [...served].sort());
    const { raw } = await rawConnect(port, 4, { clientId: 'sys-doc' });
    await rawSubscribe(raw, 4, 1, [{ topic: '$SYS/#', qos: 0 }]);
    const topics = new Set((await drainFor(raw, 1500)).filter((p) => p.cmd === 'publish').map((p) => (p.topic as string).slice('$SYS/broker/'.length)));
    raw.close();
    const sys = doc.slice(doc.indexOf('## `$SYS` topics'));
    const named = new Set<string>();
    for (const [, name] of sys.matchAll(/`([a-z][a-z /]*[a-z](?:\/W)?)`/g)) {
      if (name === undefined) continue;
      if (name.endsWith('/W')) for (const w of ['1min', '5min', '15min']) named.add(name.replace(/W$/, w));
      else named.add(name);
    }
    for (const t of topics) assert.ok(named.has(t), `$SYS/broker/${t} is published but not in docs/operations.md`);
    for (const n of named) if (!['1min', '5min', '15min'].includes(n)) assert.ok(topics.has(n), `docs/operations.md names $SYS/broker/${n}, which is not published`);
  });

  test('docs/operations.md describes the cluster view\'s `filters` as the count the API answers, not a list of filters', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/operations.md', import.meta.url)), 'utf8');
    const row = doc.split('\n').find((l) => l.startsWith('| `GET /api/v1/cluster` |')) ?? '';
    const said = /`filters` \(([^)]*)\)/.exec(row)?.[1] ?? '';
    // the cluster tests check the answer itself: `"filters": 2` for a node with two filters
    assert.match(said, /^the number of /, `"${said}"`);
  });

  test('$SYS topics with Mosquitto names are published every interval, messages/* counting packets of every kind; clients cannot publish there', async () => {
    const { raw } = await rawConnect(port, 4, { clientId: 'sys-watch' });
    await rawSubscribe(raw, 4, 1, [{ topic: '$SYS/#', qos: 0 }]);
    const got = (await drainFor(raw, 1500)).filter((p) => p.cmd === 'publish').map((p) => p.topic as string);
    for (const t of ['$SYS/broker/version', '$SYS/broker/uptime', '$SYS/broker/clients/connected', '$SYS/broker/messages/received', '$SYS/broker/load/messages/received/1min', '$SYS/broker/subscriptions/count', '$SYS/broker/heap/current']) {
      assert.ok(got.includes(t), `${t} in ${got.length} topics`);
    }
    // as in Mosquitto, messages/* count packets of every kind (this client's CONNECT, SUBSCRIBE,
    // CONNACK and SUBACK among them), publish/messages/* PUBLISH packets alone
    const latest = new Map<string, number>();
    for (const p of await drainFor(raw, 1500)) if (p.cmd === 'publish') latest.set(p.topic as string, Number(p.payload?.toString()));
    const value = (t: string): number => latest.get(`$SYS/broker/${t}`) ?? Number.NaN;
    assert.ok(value('messages/received') >= value('publish/messages/received') + 2, `received ${value('messages/received')} packets, ${value('publish/messages/received')} publishes`);
    assert.ok(value('messages/sent') >= value('publish/messages/sent') + 2, `sent ${value('messages/sent')} packets, ${value('publish/messages/sent')} publishes`);
    raw.sendPacket({ cmd: 'publish', topic: '$SYS/broker/version', payload: Buffer.from('forged'), qos: 0, retain: true }, 4);
    const again = (await drainFor(raw, 1200)).filter((p) => p.cmd === 'publish' && p.topic === '$SYS/broker/version');
    assert.ok(again.every((p) => p.payload?.toString() !== 'forged'));
    raw.close();
  });
});

describe('operations: the command line', () => {
  const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const children = new Set<ChildProcess>();
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  test('SIGHUP applies a changed log level and limits from the config file, and names what needs a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-hup-'));
    const cfg = join(dir, 'midge.yaml');
    writeFileSync(cfg, 'logLevel: silent\npersistence: memory\nport: 0\nlimits:\n  maxClientIdLength: 23\n');
    const child = spawn(process.execPath, [MAIN, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    // the JSON log on stdout, where it listens on stderr
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    assert.ok(await eventually(() => /listening on mqtt:/.test(out), 10_000));
    const port = Number(/listening on mqtt:\/\/[^\s]+:(\d+)/.exec(out)?.[1]);
    const longId = 'x'.repeat(30);
    assert.equal((await rawConnect(port, 5, { clientId: longId })).connack.reasonCode, 0x85);
    writeFileSync(cfg, 'logLevel: info\npersistence: memory\nport: 1\nlimits:\n  maxClientIdLength: 64\n');
    child.kill('SIGHUP');
    assert.ok(await eventually(() => /"msg":"reloaded"/.test(out), 3000), out);
    assert.match(out, /"settings":\["port"\].*only after a restart/);
    const ok = await rawConnect(port, 5, { clientId: longId });
    assert.equal(ok.connack.reasonCode, 0, 'the new limit applies');
    assert.ok(await eventually(() => /"msg":"client connected"/.test(out), 3000), 'info lines are logged now');
    ok.raw.close();
    child.kill('SIGTERM');
  });

  test('SIGHUP with a changed ACL file changes what a connected client may do', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'midge-hup-'));
    const acl = join(dir, 'acl');
    writeFileSync(acl, 'pattern readwrite room/#\n');
    const child = spawn(process.execPath, [MAIN, '--port', '0', '--persistence', 'memory', '--log-level', 'silent', '--acl-file', acl], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    // the JSON log on stdout, where it listens on stderr
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    assert.ok(await eventually(() => /listening on mqtt:/.test(out), 10_000));
    const port = Number(/listening on mqtt:\/\/[^\s]+:(\d+)/.exec(out)?.[1]);
    const c = await rawConnect(port, 5, { clientId: 'hup' });
    await rawSubscribe(c.raw, 5, 1, [{ topic: 'room/#', qos: 0 }]);
    c.raw.sendPacket({ cmd: 'publish', topic: 'room/a', payload: Buffer.from('before'), qos: 1, messageId: 1 }, 5);
    assert.equal((await expectPacket(c.raw, 'publish')).payload?.toString(), 'before');
    assert.equal((await expectPacket(c.raw, 'puback')).reasonCode ?? 0, 0);
    writeFileSync(acl, 'pattern read room/#\n');
    child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    c.raw.sendPacket({ cmd: 'publish', topic: 'room/a', payload: Buffer.from('after'), qos: 1, messageId: 2 }, 5);
    assert.equal((await expectPacket(c.raw, 'puback')).reasonCode, 0x87, 'write access is gone');
    c.raw.close();
    child.kill('SIGTERM');
  });
});
