// What it costs when many offline sessions expire together: sessions restored after a restart share
// one deadline, and devices cut off by one outage expire within seconds of each other. Reports the
// longest the event loop was held (no client's traffic moves meanwhile) and how long the sessions
// took to go.
// Usage: npm run build && node dist/bench/mass-expiry.js [--sessions 200000] [--spread-ms 1]
import { parseArgs } from 'node:util';
import { createBroker, MemoryStore } from '../src/index.js';
import { watchLoopHold } from './loop-hold.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '200000' },
    'spread-ms': { type: 'string', default: '1' },
  },
});
const SESSIONS = Number(values.sessions);
const SPREAD = Math.max(1, Number(values['spread-ms']));

// offline devices, each subscribed to its own command topic, all due within SPREAD ms
const store = new MemoryStore();
const firstDeadline = Date.now() + 3000 + SESSIONS / 50;
for (let i = 0; i < SESSIONS; i++) {
  const clientId = `device-${i}`;
  store.sessionSaved({ clientId, expiryInterval: 3600, expiresAt: firstDeadline + (i % SPREAD) });
  const filter = `devices/${i}/cmd`;
  store.subscriptionAdded(clientId, { filter, topicFilter: filter, shareGroup: undefined, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
}
const broker = await createBroker({ store, sysInterval: 0, logger: undefined });
const restored = broker.stats.sessions;
if (Date.now() >= firstDeadline) throw new Error('the broker took longer to start than the head start given; the sessions expired while restoring');

// the watch starts shortly before the first deadline, after the collections that follow the restore
await new Promise((r) => setTimeout(r, Math.max(0, firstDeadline - 200 - Date.now())));
const hold = watchLoopHold();
while (broker.stats.sessions > 0 && Date.now() < firstDeadline + SPREAD + 60_000) await new Promise((r) => setTimeout(r, 5));
const longest = hold.stop();
console.log(
  `${restored} sessions due within ${SPREAD} ms: all gone ${((Date.now() - firstDeadline) / 1000).toFixed(2)} s after the first deadline; ` +
    `event loop held at most ${longest.toFixed(1)} ms at a time`,
);
await broker.close();
