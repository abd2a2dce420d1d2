import { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { decodePacket } from '../codec/decode.js';
import { encodePacket, type Packet, type ProtocolVersion, type QoS } from '../codec/index.js';
import { scanFrames } from './frame-scan.js';

const NO_BYTES = Buffer.alloc(0);

/** What every client of a run logs in with. */
export interface BenchLogin {
  username?: string;
  password?: string;
}
/** how long a CONNACK or SUBACK may take: a broker busy with thousands of connections answers well within it */
const REPLY_WAIT_MS = 10_000;

/**
 * A lean MQTT client for load generation. Connecting and subscribing go through the broker's own
 * codec; the hot path does not: publishes are stamped into a pre-encoded frame and sent many to a
 * write, incoming frames are scanned in place (no packet objects), and every acknowledgement a
 * chunk calls for leaves in one write. The generator has one core, as the broker does, so it must
 * spend less per message than the broker it measures.
 */
export class BenchClient {
  /** unacknowledged QoS 1/2 publishes */
  inflight = 0;
  /** payload of an incoming PUBLISH: buf[start, end) */
  onMessage: (buf: Buffer, start: number, end: number) => void = () => undefined;
  /** called once per chunk with the number of QoS 1/2 publishes it completed */
  onAcks: (count: number) => void = () => undefined;
  private nextId = 0;
  private rest: Buffer | undefined;
  private acks = Buffer.allocUnsafe(4096);
  private acksLength = 0;
  /** the chunk being scanned, and the QoS 1/2 exchanges it completed */
  private scanned: Buffer = NO_BYTES;
  private completed = 0;
  private waiting: ((p: Packet) => boolean) | undefined;
  private waitDone: ((p: Packet) => void) | undefined;
  private waitFailed: ((err: Error) => void) | undefined;
  /** told once when the broker ends the connection (not when close() did) */
  onBrokerClose: ((err: Error) => void) | undefined = undefined;
  private closing = false;
  private template: Buffer | undefined;
  private qos: QoS = 0;
  /** offsets in the template of the packet id and of the payload */
  private idAt = 0;
  private payloadAt = 0;

  private constructor(
    readonly socket: Socket,
    readonly version: ProtocolVersion,
    /** how errors name this client */
    private readonly label: string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.scan(chunk));
    socket.on('error', () => undefined);
    // a broker that closes the connection while a reply is awaited must not leave the run waiting
    socket.on('close', () => {
      this.waitFailed?.(this.closedError());
      if (!this.closing) this.onBrokerClose?.(this.closedError());
    });
  }

  /**
   * Connects and waits for a CONNACK; rejects with one line when the broker cannot be reached,
   * closes the connection or refuses the client (a run of refused clients measures nothing).
   */
  static async connect(port: number, host: string, clientId: string, version: ProtocolVersion, login?: BenchLogin): Promise<BenchClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ port, host }, () => resolve(s));
      s.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot connect to ${host}:${port}: ${err.code ?? err.message}`)));
    });
    const c = new BenchClient(socket, version, `client ${clientId}`);
    const acked = c.waitFor((p) => p.type === 'connack');
    c.send({
      type: 'connect', protocolName: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, cleanStart: true, keepAlive: 0, clientId: clientId.slice(0, 23),
      ...(login?.username === undefined ? {} : { username: login.username }),
      ...(login?.password === undefined ? {} : { password: Buffer.from(login.password) }),
      ...(version === 5 ? { properties: { receiveMaximum: 65535 } } : {}),
    });
    const connack = await acked;
    const code = connack.type === 'connack' ? connack.reasonCode : 0;
    if (code !== 0) {
      c.close();
      // 3.1.1 0x04/0x05, 5.0 0x86/0x87
      const hint = [0x04, 0x05, 0x86, 0x87].includes(code) ? (login?.username === undefined ? ': it wants a user name and password (--username, --password)' : `: check the user name and password, and what ${login.username} may do`) : '';
      throw new Error(`the broker refused ${c.label} (CONNACK 0x${code.toString(16).padStart(2, '0')})${hint}`);
    }
    return c;
  }

  /** Subscribes and waits for the SUBACK; rejects when the broker refuses the subscription. */
  async subscribe(filter: string, qos: QoS): Promise<void> {
    const done = this.waitFor((p) => p.type === 'suback');
    this.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 }] });
    const suback = await done;
    const granted = suback.type === 'suback' ? (suback.reasonCodes[0] ?? 0x80) : 0x80;
    if (granted >= 0x80) throw new Error(`the broker refused ${this.label}'s subscription to ${filter} (SUBACK 0x${granted.toString(16)})`);
  }

  /** Fixes the topic, QoS and payload size of every publish this client sends. */
  preparePublish(topic: string, size: number, qos: QoS): void {
    const payload = Buffer.alloc(size);
    const frame = encodePacket({ type: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos > 0 ? { packetId: 1 } : {}) }, this.version);
    this.template = frame;
    this.payloadAt = frame.length - size;
    // the packet id sits just before the properties (5.0: one byte, empty) or the payload
    this.idAt = this.payloadAt - 2 - (this.version === 5 ? 1 : 0);
    this.qos = qos;
  }

  /**
   * Sends `count` publishes in one write; `stamp` fills each payload (at `at`) with what the
   * tracker reads back. Returns false when the socket asks to wait for 'drain'.
   */
  publishBatch(count: number, stamp: (buf: Buffer, at: number, i: number) => void): boolean {
    const t = this.template as Buffer;
    const n = t.length;
    const out = Buffer.allocUnsafe(n * count);
    for (let i = 0, at = 0; i < count; i++, at += n) {
      t.copy(out, at);
      if (this.qos > 0) {
        this.nextId = (this.nextId % 65535) + 1;
        out.writeUInt16BE(this.nextId, at + this.idAt);
      }
      stamp(out, at + this.payloadAt, i);
    }
    if (this.qos > 0) this.inflight += count;
    return this.socket.write(out);
  }

  send(p: Packet): void {
    this.socket.write(encodePacket(p, this.version));
  }

  close(): void {
    this.closing = true;
    this.socket.destroy();
  }

  private closedError(): Error {
    return new Error(`${this.label}: the broker closed the connection`);
  }

  /** The next packet `match` accepts; rejects when the connection closes or nothing comes within REPLY_WAIT_MS. */
  private waitFor(match: (p: Packet) => boolean): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.waitFailed?.(new Error(`${this.label}: no reply from the broker within ${REPLY_WAIT_MS / 1000} s: is an MQTT broker listening there?`)), REPLY_WAIT_MS);
      this.waiting = match;
      this.waitDone = (p) => {
        clearTimeout(timer);
        this.waitFailed = undefined;
        resolve(p);
      };
      this.waitFailed = (err) => {
        clearTimeout(timer);
        this.waiting = undefined;
        this.waitFailed = undefined;
        reject(err);
      };
      if (this.socket.destroyed) this.waitFailed(this.closedError());
    });
  }

  private ack(type: number, buf: Buffer, at: number): void {
    if (this.acksLength + 4 > this.acks.length) {
      const grown = Buffer.allocUnsafe(this.acks.length * 2);
      this.acks.copy(grown, 0, 0, this.acksLength);
      this.acks = grown;
    }
    const a = this.acks;
    a[this.acksLength] = type;
    a[this.acksLength + 1] = 2;
    a[this.acksLength + 2] = buf[at] as number;
    a[this.acksLength + 3] = buf[at + 1] as number;
    this.acksLength += 4;
  }

  private scan(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest !== undefined) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    this.scanned = buf;
    this.completed = 0;
    const pos = scanFrames(buf, this.onFrame);
    this.scanned = NO_BYTES;
    if (pos < buf.length) this.rest = buf.subarray(pos);
    if (this.acksLength > 0) {
      this.socket.write(Buffer.from(this.acks.subarray(0, this.acksLength)));
      this.acksLength = 0;
    }
    const completed = this.completed;
    if (completed > 0) {
      this.inflight -= completed;
      this.onAcks(completed);
    }
  }

  /** One frame of the chunk being scanned (`scanned`). */
  private readonly onFrame = (start: number, i: number, end: number): void => {
    const buf = this.scanned;
    const first = buf[start] as number;
    switch (first >> 4) {
      case 3: {
        const qos = (first >> 1) & 3;
        let p = i + 2 + buf.readUInt16BE(i);
        if (qos > 0) {
          this.ack(qos === 1 ? 0x40 : 0x50, buf, p);
          p += 2;
        }
        if (this.version === 5) {
          // property length (a variable byte integer), then the properties
          let plen = 0;
          let m = 1;
          for (;;) {
            const b = buf[p++] as number;
            plen += (b & 0x7f) * m;
            m *= 128;
            if ((b & 0x80) === 0) break;
          }
          p += plen;
        }
        this.onMessage(buf, p, end);
        break;
      }
      case 4: // PUBACK
      case 7: // PUBCOMP
        this.completed++;
        break;
      case 5: // PUBREC
        this.ack(0x62, buf, i);
        break;
      case 6: // PUBREL
        this.ack(0x70, buf, i);
        break;
      default:
        if (this.waiting !== undefined) {
          const p = decodePacket(first, buf, i, end, this.version);
          if (this.waiting(p)) {
            this.waiting = undefined;
            this.waitDone?.(p);
          }
        }
    }
  };
}
