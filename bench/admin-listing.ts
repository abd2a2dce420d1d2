// What one page of the admin API's listings, and one scrape of /metrics, cost with many sessions:
// the time the request holds the event loop, during which no client's traffic moves.
// Usage: npm run build && node dist/bench/admin-listing.js [--sessions 1000000] [--requests 5]
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { createBroker, MemoryStore } from '../src/index.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1000000' },
    requests: { type: 'string', default: '5' },
  },
});
const SESSIONS = Number(values.sessions);
const REQUESTS = Number(values.requests);

// offline persistent sessions, as a fleet of devices leaves behind
const store = new MemoryStore();
for (let i = 0; i < SESSIONS; i++) store.sessionSaved({ clientId: `device-${(i * 7919) % SESSIONS}`, expiryInterval: 0xffffffff, expiresAt: undefined });
const token = 'bench';
const broker = await createBroker({ store, sysInterval: 0, logger: undefined });
const { port } = await broker.listenHttp({ port: 0, host: '127.0.0.1', adminToken: token });
const mqttAddress = await broker.listen({ port: 0, host: '127.0.0.1' });
// one of them back online
const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttAddress.port}`, { clientId: 'device-1', clean: false, protocolVersion: 4 });

async function timed(path: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const start = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
    await res.arrayBuffer();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b);
}

console.log(`${broker.stats.sessions} sessions, ${REQUESTS} requests each, median ms:`);
for (const path of ['/sessions?limit=100', '/sessions?offset=500000&limit=100', '/clients?limit=100', '/clients/device-1']) {
  const times = await timed(`/api/v1${path}`);
  console.log(`  GET /api/v1${path}: ${(times[Math.floor(times.length / 2)] as number).toFixed(1)}`);
}
const scrapes = await timed('/metrics');
console.log(`  GET /metrics: ${(scrapes[Math.floor(scrapes.length / 2)] as number).toFixed(1)}`);
await device.endAsync();
await broker.close();
