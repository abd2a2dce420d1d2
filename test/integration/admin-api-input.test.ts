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
});
