// What a publish costs when the sessions it is routed to are offline with full queues: devices
// away for days whose persistent sessions hold `maxQueuedMessages` QoS 1 messages each, so every
// further message is refused for them (and counted as dropped).
// Usage: npm run build && node dist/bench/offline-queues.js [--sessions 50] [--queued 1000] [--messages 2000]
import { Buffer } from 'node:buffer';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { createBroker } from '../src/index.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '50' },
    queued: { type: 'string', default: '1000' },
    messages: { type: 'string', default: '2000' },
  },
});
const SESSIONS = Number(values.sessions);
const QUEUED = Number(values.queued);
const MESSAGES = Number(values.messages);

const broker = await createBroker({ persistence: 'memory', sysInterval: 0, limits: { maxQueuedMessages: QUEUED } });
const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
for (let i = 0; i < SESSIONS; i++) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `device-${i}`, clean: false, protocolVersion: 4 });
  await client.subscribeAsync('fleet/commands', { qos: 1 });
  await client.endAsync();
}
const payload = Buffer.alloc(16);
const publish = (): Promise<void> => broker.publish({ topic: 'fleet/commands', payload, qos: 1, retain: false });
for (let i = 0; i < QUEUED; i++) await publish();
const queuedBefore = broker.stats.queued;

const start = process.hrtime.bigint();
for (let i = 0; i < MESSAGES; i++) await publish();
const microseconds = Number(process.hrtime.bigint() - start) / 1000 / MESSAGES;

console.log(`${SESSIONS} offline sessions with full queues of ${QUEUED} QoS 1 messages (${queuedBefore} queued in all):`);
console.log(`  ${microseconds.toFixed(1)} µs per further QoS 1 publish, ${broker.stats.droppedByReason.queueFull} deliveries dropped as queue full`);
await broker.close();
