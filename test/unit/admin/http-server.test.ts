import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpEndpoint } from '../../../src/admin/http-server.js';
import type { AdminView } from '../../../src/admin/view.js';
import type { BrokerMetrics } from '../../../src/metrics/prometheus.js';

describe('the HTTP endpoint: a fault of its own', () => {
  const faults: Array<{ err: unknown; task: string }> = [];
  // a view with a bug in it: nothing a client sends should reach a throw like this one
  const view = {
    clients: () => {
      throw new TypeError('a bug in the clients listing');
    },
    reportFault: (err: unknown, task: string) => faults.push({ err, task }),
  } as unknown as AdminView;
  const endpoint = new HttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    adminToken: 'tok',
    metrics: {} as BrokerMetrics,
    ready: () => true,
    api: { view, publish: async () => {}, cluster: () => undefined },
  });
  let base: string;
  before(async () => {
    base = `http://127.0.0.1:${(await endpoint.listen()).port}`;
  });
  after(() => endpoint.close());

  test('an unexpected exception in a handler is answered 500 and reported with the request, the query left out', async () => {
    const r = await fetch(`${base}/api/v1/clients?q=secret`, { headers: { authorization: 'Bearer tok' } });
    assert.equal(r.status, 500);
    assert.deepEqual(await r.json(), { error: 'internal error' });
    assert.equal(faults.length, 1);
    assert.match(String(faults[0]?.err), /a bug in the clients listing/);
    assert.equal(faults[0]?.task, 'answering HTTP GET /api/v1/clients');
  });

  test('an HTTP error (a 4xx) is the client\'s, not a fault: nothing is reported', async () => {
    const before = faults.length;
    assert.equal((await fetch(`${base}/api/v1/clients/%E0`, { headers: { authorization: 'Bearer tok' } })).status, 400);
    assert.equal((await fetch(`${base}/api/v1/clients`)).status, 401);
    assert.equal((await fetch(`${base}/healthz`, { method: 'POST' })).status, 405);
    assert.equal(faults.length, before);
  });
});
