// The least a Node program can do for the fan-in scenarios, as a floor to measure brokers against:
// every PUBLISH is passed on unchanged to the last client that subscribed, and a QoS 1 PUBLISH is
// acknowledged. No routing, no sessions, no QoS 2: not a broker, only what Node's socket layer costs.
// Usage: node dist/bench/forwarder.js PORT
import { Buffer } from 'node:buffer';
import { createServer, Socket } from 'node:net';

const port = Number(process.argv[2] ?? 1883);
let subscriber: Socket | undefined;
// the read path Midge uses: reads land in one buffer through `onread`, with no stream in between
const shared = Buffer.allocUnsafe(64 * 1024);

function serve(accepted: Socket): void {
  let rest: Buffer | undefined;
  let v5 = false;
  const socket: Socket = new Socket({
    handle: (accepted as unknown as { _handle: object })._handle,
    onread: {
      buffer: shared,
      callback: (n: number, into: Uint8Array): boolean => {
        const read = Buffer.from(into.buffer, into.byteOffset, n);
        const buf = rest === undefined ? read : Buffer.concat([rest, read]);
        rest = undefined;
        const forward: Buffer[] = [];
        const acks: number[] = [];
        let pos = 0;
        while (pos + 2 <= buf.length) {
          let remaining = 0;
          let i = pos + 1;
          let complete = false;
          for (let k = 0, mult = 1; k < 4 && i < buf.length; k++, i++, mult *= 128) {
            remaining += ((buf[i] as number) & 127) * mult;
            if (((buf[i] as number) & 128) === 0) {
              complete = true;
              i++;
              break;
            }
          }
          if (!complete || i + remaining > buf.length) break;
          const first = buf[pos] as number;
          const type = first >> 4;
          if (type === 1) {
            v5 = buf[i + 6] === 5;
            socket.write(Buffer.from(v5 ? [0x20, 3, 0, 0, 0] : [0x20, 2, 0, 0]));
          } else if (type === 8) {
            subscriber = socket;
            const requested = (buf[i + remaining - 1] as number) & 3;
            socket.write(Buffer.from(v5 ? [0x90, 4, buf[i] as number, buf[i + 1] as number, 0, requested] : [0x90, 3, buf[i] as number, buf[i + 1] as number, requested]));
          } else if (type === 3) {
            if (((first >> 1) & 3) > 0) {
              const id = i + 2 + buf.readUInt16BE(i);
              acks.push(0x40, 2, buf[id] as number, buf[id + 1] as number);
            }
            // a copy: the read's buffer is reused by the next read
            forward.push(Buffer.from(buf.subarray(pos, i + remaining)));
          }
          pos = i + remaining;
        }
        if (pos < buf.length) rest = Buffer.from(buf.subarray(pos));
        if (forward.length > 0 && subscriber !== undefined) subscriber.write(forward.length === 1 ? (forward[0] as Buffer) : Buffer.concat(forward));
        if (acks.length > 0) socket.write(Buffer.from(acks));
        return true;
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  socket.on('close', () => {
    if (subscriber === socket) subscriber = undefined;
  });
  (socket as unknown as { _handle: { readStart(): void } })._handle.readStart();
}

const server = createServer({ noDelay: true, pauseOnConnect: true }, serve);
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
