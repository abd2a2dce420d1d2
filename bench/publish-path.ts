// Midge's own cost per message, without sockets or the kernel: publishers and one subscriber are
// connections over in-memory streams, driven by MQTT bytes as a client would send them, one message
// per event-loop turn (as at a moderate rate, where each read holds one packet). The subscriber
// acknowledges each QoS 1/2 delivery in the next turn. The figure is the broker's parsing,
// handling, routing, encoding and write batching, plus the few lines that play the clients; the
// loop's own turns are timed apart and taken off. Everything here stays in the processor's caches,
// which a broker at a moderate rate does not enjoy (docs/performance.md): use it to compare builds
// of Midge, not brokers.
// Usage: npm run build && node dist/bench/publish-path.js [--messages 200000] [--qos 1] [--version 4] [--publishers 10] [--json]
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { scanFrames } from '../src/bench/frame-scan.js';
import { encodePacket } from '../src/codec/encoder.js';
import type { ProtocolVersion, QoS } from '../src/codec/packets.js';
import { createBroker } from '../src/index.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    qos: { type: 'string', default: '1' },
    version: { type: 'string', default: '4' },
    publishers: { type: 'string', default: '10' },
    json: { type: 'boolean', default: false },
  },
});
const MESSAGES = Math.ceil(Number(values.messages) / 4) * 4;
const QOS = Number(values.qos) as QoS;
const VERSION = Number(values.version) as ProtocolVersion;
const PUBLISHERS = Number(values.publishers);
if (![0, 1, 2].includes(QOS) || ![3, 4, 5].includes(VERSION) || !(MESSAGES > 0) || !(PUBLISHERS > 0)) {
  console.error('usage: publish-path.js [--messages N] [--qos 0|1|2] [--version 3|4|5] [--publishers N]');
  process.exit(2);
}

/** The socket side of a connection: what the broker writes is handed to `received`. */
class MemorySocket extends EventEmitter {
  readonly readableObjectMode = false;
  readonly readableEncoding = null;
  writableNeedDrain = false;
  received: (bytes: Buffer) => void = () => undefined;
  write(bytes: Buffer): boolean {
    this.received(bytes);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): this {
    return this.destroy();
  }
  destroy(): this {
    this.emit('close');
    return this;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
}

const broker = await createBroker({ sysInterval: 0, limits: { maxQueuedMessages: 1_000_000, maxInflight: 1000 } });

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Bytes from the client, as a read of its socket hands them to the broker. */
const feed = (socket: MemorySocket, bytes: Buffer): void => {
  socket.emit('data', bytes);
};

function open(clientId: string): MemorySocket {
  const socket = new MemorySocket();
  broker.handle(socket as unknown as Duplex, { remoteAddress: '127.0.0.1:1' });
  feed(socket, encodePacket({ type: 'connect', protocolName: VERSION === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: VERSION, clientId, cleanStart: true, keepAlive: 60 }, VERSION));
  return socket;
}

const subscriber = open('sub');
const subscription = { topicFilter: 'bench/#', qos: QOS, noLocal: false, retainAsPublished: false, retainHandling: 0 as const };
feed(subscriber, encodePacket({ type: 'subscribe', packetId: 1, subscriptions: [subscription] }, VERSION));
let delivered = 0;
const acks: Buffer[] = [];
subscriber.received = (bytes) => {
  // every PUBLISH in what was written: count it and queue its acknowledgement for the next turn
  scanFrames(bytes, (start, i) => {
    const first = bytes[start] as number;
    if (first >> 4 === 3) {
      delivered++;
      const qos = (first >> 1) & 3;
      if (qos > 0) {
        const id = i + 2 + bytes.readUInt16BE(i);
        acks.push(Buffer.from([qos === 1 ? 0x40 : 0x50, 2, bytes[id] as number, bytes[id + 1] as number]));
      }
    } else if (first >> 4 === 6) {
      acks.push(Buffer.from([0x70, 2, bytes[i] as number, bytes[i + 1] as number]));
    }
  });
};
const publishers = Array.from({ length: PUBLISHERS }, (_, i) => open(`pub${i}`));
await turn();

// one frame per publisher, its packet id rewritten per message (QoS 2 publishers release each id)
const frames = publishers.map((_, i) =>
  encodePacket({ type: 'publish', topic: `bench/${i}`, payload: Buffer.alloc(64, 1), qos: QOS, retain: false, dup: false, ...(QOS > 0 ? { packetId: 1 } : {}) }, VERSION),
);
for (const p of publishers) {
  p.received = (bytes) => {
    // replies held back a turn can leave together: release every PUBREC of the write
    scanFrames(bytes, (start, i) => {
      if ((bytes[start] as number) >> 4 === 5) feed(p, Buffer.from([0x62, 2, bytes[i] as number, bytes[i + 1] as number]));
    });
  };
}

// counts on across runs: a packet id is not used again while its last exchange may be under way
let sent = 0;

async function run(count: number): Promise<void> {
  for (let n = 0; n < count; n++) {
    const k = n % PUBLISHERS;
    const frame = Buffer.from(frames[k] as Buffer);
    if (QOS > 0) frame.writeUInt16BE((sent++ % 60000) + 1, frame.length - 64 - 2 - (VERSION === 5 ? 1 : 0));
    feed(publishers[k] as MemorySocket, frame);
    await turn();
    while (acks.length > 0) feed(subscriber, acks.shift() as Buffer);
  }
  await turn();
}

/** The same turns with no message in them: what the loop costs, taken off the result. */
async function idle(count: number): Promise<void> {
  for (let n = 0; n < count; n++) {
    await turn();
    await turn();
  }
}

/** Nanoseconds per message of `count` messages' worth of `body`. */
async function timed(body: (count: number) => Promise<void>, count: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  await body(count);
  return Number(process.hrtime.bigint() - t0) / count;
}

await run(Math.min(20_000, MESSAGES));
await idle(Math.min(20_000, MESSAGES));
delivered = 0;
// alternated, so that a slow stretch of a shared machine falls on both
let busy = 0;
let empty = 0;
for (let round = 0; round < 4; round++) {
  busy += (await timed(run, MESSAGES / 4)) / 4;
  empty += (await timed(idle, MESSAGES / 4)) / 4;
}
await broker.close();
const result = { messages: MESSAGES, delivered, nsPerMessage: busy - empty, loopNsPerMessage: empty };
if (values.json) console.log(JSON.stringify(result));
else console.log(`QoS ${QOS}, MQTT ${VERSION === 5 ? '5.0' : VERSION === 4 ? '3.1.1' : '3.1'}: ${delivered}/${MESSAGES} delivered, ${result.nsPerMessage.toFixed(0)} ns per message beyond the loop's ${empty.toFixed(0)} ns (${busy.toFixed(0)} in all)`);
if (delivered !== MESSAGES) process.exitCode = 1;
