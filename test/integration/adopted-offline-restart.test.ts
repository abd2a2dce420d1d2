import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBroker, type Broker } from '../../src/app.js';
import type { BrokerCore } from '../../src/broker/broker-core.js';
import { adoptOffline } from '../../src/cluster/session-handover.js';
import { MemoryStore } from '../../src/persistence/memory-store.js';
import { drainFor, rawConnect, rawSubscribe } from '../helpers/raw-session.js';

const NEVER = 0xffffffff;

/** The broker's core, as a cluster node's session take-up reaches it. */
const coreOf = (broker: Broker): BrokerCore => (broker as unknown as { core: BrokerCore }).core;

test('(5.0 4.8.2) a session taken up offline from a gone cluster node, never expiring, keeps its queued shared-group messages across a restart', async () => {
  const store = new MemoryStore();
  const first = await createBroker({ store, sysInterval: 0 });
  const { port } = await first.listen({ port: 0, host: '127.0.0.1' });
  // as when its node is found gone: the session waits here, offline, for its client
  const taken = adoptOffline(coreOf(first), 'adopted', { expiryInterval: NEVER, username: undefined, subscriptions: [{ filter: '$share/g/t', topicFilter: 't', shareGroup: 'g', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined }], expiresAt: null }, Date.now());
  assert.equal(taken, 'adopted');
  for (let i = 1; i <= 6; i++) await first.publish({ topic: 't', payload: String(i), qos: 1 });
  // a second member, offline too, that a hand-over at the restart would give them to
  const other = await rawConnect(port, 5, { clientId: 'other', clean: false, properties: { sessionExpiryInterval: NEVER } });
  await rawSubscribe(other.raw, 5, 1, [{ topic: '$share/g/t', qos: 1 }]);
  other.raw.close();
  await first.close();

  const second = await createBroker({ store, sysInterval: 0 });
  try {
    const again = await second.listen({ port: 0, host: '127.0.0.1' });
    const back = await rawConnect(again.port, 5, { clientId: 'other', clean: false, properties: { sessionExpiryInterval: NEVER } });
    assert.equal(back.connack.sessionPresent, true);
    const got = (await drainFor(back.raw, 500)).filter((p) => p.cmd === 'publish');
    assert.deepEqual(got.map((p) => p.payload?.toString()), [], 'the other member is not given the messages queued for the session taken up');
    back.raw.close();
    const own = await rawConnect(again.port, 5, { clientId: 'adopted', clean: false, properties: { sessionExpiryInterval: NEVER } });
    assert.equal(own.connack.sessionPresent, true);
    const mine = (await drainFor(own.raw, 500)).filter((p) => p.cmd === 'publish');
    assert.deepEqual(mine.map((p) => p.payload?.toString()), ['1', '2', '3', '4', '5', '6']);
    own.raw.close();
  } finally {
    await second.close();
  }
});
