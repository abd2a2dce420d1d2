// What a SUBSCRIBE matching many retained messages costs: how many reach the subscriber, how long
// they take, and the longest the broker's event loop (every client's traffic) was held meanwhile.
// The broker runs in this process, so the subscriber's own work counts in the hold too.
// Usage: npm run build && node dist/bench/retained-subscribe.js [--retained 100000] [--store lmdb|memory] [--persistent]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { createBroker, LmdbStore } from '../src/index.js';
import { watchLoopHold } from './loop-hold.js';

const { values } = parseArgs({
  options: {
    retained: { type: 'string', default: '100000' },
    store: { type: 'string', default: 'lmdb' },
    persistent: { type: 'boolean', default: false },
  },
});
const RETAINED = Number(values.retained);
const dir = mkdtempSync(join(tmpdir(), 'midge-retained-subscribe-'));
const store = values.store === 'lmdb' ? LmdbStore.open(dir) : undefined;
const broker = await createBroker({ sysInterval: 0, logger: undefined, ...(store === undefined ? {} : { store }) });
const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
for (let i = 0; i < RETAINED; i++) await broker.publish({ topic: `sensors/${i}/temp`, payload: String(i), qos: 1, retain: true });

const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
  protocolVersion: 5,
  clientId: 'dashboard',
  clean: !values.persistent,
  properties: values.persistent ? { sessionExpiryInterval: 3600 } : {},
});
let received = 0;
client.on('message', () => received++);
await new Promise((r) => setTimeout(r, 200));

const hold = watchLoopHold();
const start = performance.now();
await client.subscribeAsync('sensors/#', { qos: 1 });
for (let before = -1; received !== before; ) {
  before = received;
  await new Promise((r) => setTimeout(r, 500));
}
const longest = hold.stop();
const seconds = (performance.now() - start - 500) / 1000;
console.log(
  `${RETAINED} retained, ${values.persistent ? 'persistent' : 'clean'} subscriber, ${values.store} store: ${received} received in ${seconds.toFixed(2)} s, ` +
    `${broker.stats.droppedByReason.queueFull} dropped; event loop held at most ${longest.toFixed(0)} ms at a time`,
);
await client.endAsync();
await broker.close();
rmSync(dir, { recursive: true, force: true });
