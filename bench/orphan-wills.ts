// What it costs when a cluster node dies with many clients: how long until the other nodes have
// published every will it held, whether each went exactly once, how the nodes shared them, and
// how many script calls Redis ran for it; with --persistent, the clients' sessions as well (kept
// in Redis, taken up by the survivors once their clients have not come back); with --publish RATE
// as well, QoS 1 messages for those sessions from the kill on, RATE a second, and whether each
// reached its session once (what the dead node's inbox held, and what was sent there meanwhile).
// Needs redis-server on the PATH.
// Usage: npm run build && node dist/bench/orphan-wills.js [--clients 10000] [--survivors 2] [--persistent [--publish 2000]]
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { encodePacket } from '../src/codec/encoder.js';
import { createBroker, type Broker } from '../src/index.js';
import { spawnNode, startRedis } from './cluster-kit.js';
const { values } = parseArgs({ options: { clients: { type: 'string', default: '10000' }, survivors: { type: 'string', default: '2' }, persistent: { type: 'boolean', default: false }, publish: { type: 'string', default: '0' } } });
const CLIENTS = Number(values.clients);
const SURVIVORS = Number(values.survivors);
const PERSISTENT = values.persistent;
const RATE = PERSISTENT ? Number(values.publish) : 0;

/** A device with a will, over a plain socket (MQTT.js would cost more than the broker here); resolves at its CONNACK. */
async function device(port: number, i: number): Promise<Socket> {
  const socket = createConnection(port, '127.0.0.1');
  const connect = encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanStart: !PERSISTENT, keepAlive: 0, clientId: `device-${i}`, will: { topic: `will/${i}`, payload: Buffer.from('offline'), qos: 1, retain: false } }, 4);
  socket.write(connect);
  await once(socket, 'data');
  // a device's own command topic: what its session is subscribed to
  if (PERSISTENT) socket.write(encodePacket({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: `cmd/${i}`, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }] }, 4));
  socket.on('error', () => undefined);
  return socket;
}

const redis = await startRedis();
const ask = new Redis(redis.url);
const survivors: Broker[] = [];
let doomed: { child: ChildProcess; port: number } | undefined;
try {
  let watchPort = 0;
  for (let i = 0; i < SURVIVORS; i++) {
    const b = await createBroker({ clusterRedis: redis.url, clusterNodeId: `survivor-${i}`, persistence: 'memory', sysInterval: 0 });
    const address = await b.listen({ port: 0 });
    if (i === 0) watchPort = address.port as number;
    survivors.push(b);
  }
  const watcher = await mqtt.connectAsync({ host: '127.0.0.1', port: watchPort, clientId: 'watcher', reconnectPeriod: 0 });
  await watcher.subscribeAsync('will/#', { qos: 0 });
  const seen = new Map<string, number>();
  let last = 0;
  watcher.on('message', (topic) => {
    seen.set(topic, (seen.get(topic) ?? 0) + 1);
    last = Date.now();
  });

  doomed = await spawnNode(redis.url, 'doomed');
  const sockets: Socket[] = [];
  for (let i = 0; i < CLIENTS; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, CLIENTS - i) }, (_, k) => device((doomed as { port: number }).port, i + k)));
    sockets.push(...batch);
  }
  while ((await ask.hlen('midge:wills:doomed')) < CLIENTS || (PERSISTENT && (await ask.hlen('midge:sessions:doomed')) < CLIENTS)) await new Promise((r) => setTimeout(r, 50));
  const stats = async (): Promise<number> => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await ask.info('commandstats'))?.[1] ?? 0);
  const scriptsBefore = await stats();
  await new Promise((r) => setTimeout(r, 2000));
  const heartbeats = (await stats()) - scriptsBefore;

  const publisher = RATE > 0 ? await mqtt.connectAsync({ host: '127.0.0.1', port: watchPort, clientId: 'publisher', reconnectPeriod: 0 }) : undefined;
  let sent = 0;
  let acked = 0;
  const killed = Date.now();
  doomed.child.kill('SIGKILL');
  // every 10 ms what fell due, each to the next device's command topic
  const pacer =
    publisher === undefined
      ? undefined
      : setInterval(() => {
          const due = Math.floor(((Date.now() - killed) * RATE) / 1000);
          for (; sent < due; sent++) publisher.publish(`cmd/${sent % CLIENTS}`, String(sent), { qos: 1 }, (err) => void (err ? undefined : acked++));
        }, 10);
  const evalBefore = await stats();
  for (const s of sockets) s.destroy();
  const adopted = (): number => survivors.reduce((n, b) => n + (b.stats.cluster?.orphanSessionsAdopted ?? 0), 0);
  let allAdopted = 0;
  while ((seen.size < CLIENTS || (PERSISTENT && adopted() < CLIENTS)) && Date.now() - killed < 120_000) {
    await new Promise((r) => setTimeout(r, 20));
    if (PERSISTENT && allAdopted === 0 && adopted() === CLIENTS) allAdopted = Date.now() - killed;
  }
  const allIn = last - killed;
  // published until every session is taken up, and a second more
  if (pacer !== undefined) {
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(pacer);
    while (acked < sent) await new Promise((r) => setTimeout(r, 20));
  }
  // anything sent twice would come within a moment of the rest
  await new Promise((r) => setTimeout(r, 2000));
  const scripts = (await stats()) - evalBefore - Math.round((heartbeats / 2000) * (Date.now() - killed));
  const twice = [...seen.values()].filter((n) => n > 1).length;
  const bySurvivor = survivors.map((b) => b.stats.cluster?.orphanWillsSent ?? 0);
  console.log(
    `${CLIENTS} clients with wills on a node killed outright: ${seen.size} wills published, ${twice} more than once, ` +
      `all in ${(allIn / 1000).toFixed(2)} s after the kill (node timeout 5 s, grace 5 s); ` +
      `sent as orphan wills by the ${SURVIVORS} survivors: ${bySurvivor.join(' / ')}${PERSISTENT ? ' (the rest with the sessions taken up)' : ''}; about ${scripts} script calls beyond heartbeats${RATE > 0 ? " (the publisher's forwards among them)" : ''}` +
      (PERSISTENT ? `; ${adopted()} sessions taken up (${survivors.map((b) => b.stats.cluster?.orphanSessionsAdopted ?? 0).join(' / ')}), all ${(allAdopted / 1000).toFixed(2)} s after the kill` : ''),
  );
  if (publisher !== undefined) {
    // nothing else subscribes to the command topics: what the sessions queue is what reached them
    const queued = survivors.reduce((n, b) => n + b.stats.queued, 0);
    const fromInbox = survivors.reduce((n, b) => n + (b.stats.cluster?.goneInboxMessages ?? 0), 0);
    console.log(`${acked} QoS 1 messages acknowledged for the sessions from the kill on (${RATE}/s); ${queued} queued for them on the survivors (${acked - queued} missing), ${fromInbox} of them read from the dead node's inbox`);
    await publisher.endAsync();
  }
  await watcher.endAsync();
} finally {
  doomed?.child.kill('SIGKILL');
  await Promise.all(survivors.map((b) => b.close()));
  ask.disconnect();
  redis.child.kill('SIGKILL');
}
