import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createBroker, type Broker } from '../../src/index.js';
import { rawConnect } from '../helpers/raw-session.js';

const TOKEN = 'input-token';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

describe('admin API: what a request says is what it acts on', () => {
  let broker: Broker;
  let port: number;
  let httpPort: number;
  before(async () => {
    broker = await createBroker({});
    port = (await broker.listen({ port: 0, host: '127.0.0.1' })).port;
    httpPort = (await broker.listenHttp({ port: 0, adminToken: TOKEN })).port;
  });
  after(() => broker.close());

  /**
   * A request with its target sent exactly as given: fetch() and curl without --path-as-is
   * resolve `.` and `..` segments before they send anything.
   */
  const api = (method: string, path: string, body?: string, authorization = `Bearer ${TOKEN}`, target = `/api/v1${path}`): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: httpPort, method, path: target, headers: { authorization, 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on('error', reject);
      req.end(body);
    });
  const publish = (fields: Record<string, unknown>): Promise<Answer> => api('POST', '/publish', JSON.stringify(fields));
  const retainedPayload = async (path: string): Promise<unknown> => {
    const r = await api('GET', `/retained/${path}`);
    return r.status === 200 ? r.body.payload : r.status;
  };

  test('a base64 payload that is not base64 is refused with 400, and a retained message is left as it was', async () => {
    assert.equal((await publish({ topic: 'b64/t', payload: 'aGk=', encoding: 'base64', retain: true })).status, 202);
    assert.equal(await retainedPayload('b64/t'), 'hi');
    // not base64 at all; base64url; no padding; bits past the last byte; a line break
    for (const payload of ['@@@notbase64', 'hello world!', '%%%%', 'a-_b', 'aGk', 'aGl=', 'aGk=\n', 'aG k=']) {
      const r = await publish({ topic: 'b64/t', payload, encoding: 'base64', retain: true });
      assert.equal(r.status, 400, JSON.stringify(payload));
      assert.match(String(r.body.error), /"payload" is not base64/);
    }
    // '%%%%' would have decoded to no bytes: an empty retained message, which deletes the one there
    assert.equal(await retainedPayload('b64/t'), 'hi');
    assert.equal((await publish({ topic: 'b64/t', payload: 'AP8=', encoding: 'base64', retain: true })).status, 202);
    assert.deepEqual((await api('GET', '/retained/b64/t')).body, { topic: 'b64/t', qos: 0, payloadBytes: 2, payload: 'AP8=', encoding: 'base64' });
    // an empty payload is still the way to delete on purpose
    assert.equal((await publish({ topic: 'b64/t', payload: '', encoding: 'base64', retain: true })).status, 202);
    assert.equal(await retainedPayload('b64/t'), 404);
  });

  test('a publish to a $SYS topic is refused with 400, as a client\'s is; other $ topics are published', async () => {
    for (const topic of ['$SYS/broker/version', '$SYS', '$SYS/forged/new']) {
      const r = await publish({ topic, payload: 'forged', retain: true });
      assert.equal(r.status, 400, topic);
      assert.equal(r.body.error, `"topic" may not be a $SYS topic (got "${topic}"): those are the broker's own`);
      assert.notEqual(await retainedPayload(encodeURIComponent(topic)), 'forged', `nothing forged retained on ${topic}`);
    }
    // the rule is the one a client's PUBLISH meets: `$` topics of device clouds are open to clients too
    for (const topic of ['$aws/things/t1', '$SYSTEM/x']) {
      assert.equal((await publish({ topic, payload: 'ok', retain: true })).status, 202, topic);
      assert.equal(await retainedPayload(encodeURIComponent(topic)), 'ok');
    }
  });

  test('"." and ".." are topic levels under /retained, not path segments to resolve', async () => {
    for (const topic of ['a/../b', 'b', 'x/./y', 'x/y', '..', '.', 'c/..', 'c']) {
      assert.equal((await publish({ topic, payload: topic, retain: true })).status, 202, topic);
    }
    assert.equal(await retainedPayload('a/../b'), 'a/../b');
    assert.equal(await retainedPayload('a/%2E%2E/b'), 'a/../b');
    // what a client that resolves dot segments itself can send instead
    assert.equal(await retainedPayload('a%2F..%2Fb'), 'a/../b');
    assert.equal(await retainedPayload('x/./y'), 'x/./y');
    assert.equal(await retainedPayload('x/y'), 'x/y');
    assert.equal(await retainedPayload('..'), '..');
    assert.equal(await retainedPayload('.'), '.');
    assert.equal(await retainedPayload('c/..'), 'c/..');
    assert.equal((await api('DELETE', '/retained/c/..')).body.deleted, 'c/..');
    assert.equal(await retainedPayload('c'), 'c', 'the topic the path names is deleted, not its "parent"');
    assert.equal(await retainedPayload('c/..'), 404);
    // the absolute form of a request target, as sent to a proxy, names the same path
    const absolute = await api('GET', '', undefined, `Bearer ${TOKEN}`, `http://127.0.0.1:${httpPort}/api/v1/retained/a/../b?limit=5`);
    assert.equal(absolute.body.payload, 'a/../b');
  });

  test('a retained path cannot climb out to another resource: DELETE /retained/x/../../clients/ID leaves the client connected', async () => {
    const { raw } = await rawConnect(port, 5, { clientId: 'dots-victim' });
    try {
      const r = await api('DELETE', '/retained/x/../../clients/dots-victim');
      assert.equal(r.status, 404);
      assert.equal(r.body.error, 'no retained message on "x/../../clients/dots-victim"');
      assert.equal((await api('GET', '/clients/dots-victim')).status, 200, 'still connected');
      // nor out of the API to another endpoint
      assert.equal((await api('GET', '/../../healthz')).status, 404);
    } finally {
      raw.close();
    }
  });

  test('the Bearer scheme is case-insensitive (RFC 9110 11.1); anything else still gets 401', async () => {
    for (const authorization of [`bearer ${TOKEN}`, `BEARER ${TOKEN}`, `Bearer  ${TOKEN}`]) {
      assert.equal((await api('GET', '/clients', undefined, authorization)).status, 200, authorization);
    }
    for (const authorization of [`Basic ${TOKEN}`, `Bearer${TOKEN}`, `bearer ${TOKEN}x`, 'bearer ', TOKEN]) {
      assert.equal((await api('GET', '/clients', undefined, authorization)).status, 401, authorization);
    }
  });

  test('limit and offset take decimal digits only', async () => {
    for (const limit of ['1e2', '0x10', '%2010', '10%20', '+5', '10.0', '', '-1']) {
      const r = await api('GET', `/retained?limit=${limit}`);
      assert.equal(r.status, 400, limit);
      assert.match(String(r.body.error), /^limit must be an integer between 1 and 1000/);
    }
    assert.equal((await api('GET', '/sessions?offset=1e1')).status, 400);
    for (const limit of ['10', '010']) assert.equal((await api('GET', `/retained?limit=${limit}`)).body.limit, 10, limit);
  });

  test('the path and method are checked before the body: an unknown path is 404 and a wrong method 405, whatever the body', async () => {
    const notJson = '{not json';
    assert.equal((await api('POST', '/nothing', notJson)).status, 404);
    const wrongMethod = await api('POST', '/clients', notJson);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, 'GET');
    assert.equal((await api('PUT', '/publish', notJson)).status, 405);
    const bad = await api('POST', '/publish', notJson);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'request body is not valid JSON');
    assert.equal((await api('POST', '/publish', 'x'.repeat(1024 * 1024 + 1))).status, 413);
    // and the token before either
    assert.equal((await api('POST', '/nothing', notJson, 'Bearer wrong')).status, 401);
  });
});
