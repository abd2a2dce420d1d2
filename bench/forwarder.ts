// The least a Node program can do for the fan-in scenarios, as a floor to measure brokers against:
// every PUBLISH is passed on unchanged to the last client that subscribed, and a QoS 1 PUBLISH is
// acknowledged. No routing, no sessions, no QoS 2: not a broker. Reads and writes take Midge's own
// paths (directReads, and the WriteBatcher's one write per socket per turn), so what Midge costs
// beyond this is its own handling of each message.
// Usage: node dist/bench/forwarder.js PORT
import { Buffer } from 'node:buffer';
import { createServer, type Socket } from 'node:net';
import { scanFrames } from '../src/bench/frame-scan.js';
import { directReads } from '../src/transport/direct-read.js';
import { WriteBatcher } from '../src/transport/write-batcher.js';

const port = Number(process.argv[2] ?? 1883);
let subscriber: Socket | undefined;
const pending = new WeakMap<Socket, Buffer>();
const v5 = new WeakSet<Socket>();
const batcher = new WriteBatcher();

function onRead(this: Socket, chunk: Buffer): void {
  const rest = pending.get(this);
  const buf = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
  pending.delete(this);
  const forward: Buffer[] = [];
  const acks: number[] = [];
  const pos = scanFrames(buf, (start, i, end) => {
    const first = buf[start] as number;
    const type = first >> 4;
    if (type === 1) {
      // the protocol level follows the 6-byte protocol name "MQTT"
      if (buf[i + 6] === 5) v5.add(this);
      this.write(Buffer.from(v5.has(this) ? [0x20, 3, 0, 0, 0] : [0x20, 2, 0, 0]));
    } else if (type === 8) {
      subscriber = this;
      const id = [buf[i] as number, buf[i + 1] as number];
      const granted = (buf[end - 1] as number) & 3;
      this.write(Buffer.from(v5.has(this) ? [0x90, 4, ...id, 0, granted] : [0x90, 3, ...id, granted]));
    } else if (type === 3) {
      if (((first >> 1) & 3) > 0) {
        const id = i + 2 + buf.readUInt16BE(i);
        acks.push(0x40, 2, buf[id] as number, buf[id + 1] as number);
      }
      forward.push(buf.subarray(start, end));
    }
  });
  if (pos < buf.length) pending.set(this, buf.subarray(pos));
  if (forward.length > 0 && subscriber !== undefined) batcher.write(subscriber, forward.length === 1 ? (forward[0] as Buffer) : Buffer.concat(forward));
  if (acks.length > 0) batcher.write(this, Buffer.from(acks));
  batcher.chunkDone();
}

const readDirectly = directReads(onRead);
const server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
  readDirectly(socket);
  socket.setNoDelay(true);
  // where direct reads are not available the socket reads through 'data'
  socket.on('data', onRead);
  socket.on('error', () => undefined);
  socket.on('close', () => {
    if (subscriber === socket) subscriber = undefined;
  });
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
