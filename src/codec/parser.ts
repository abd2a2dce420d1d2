import { Buffer } from 'node:buffer';
import { decodePacket, type TopicMemo } from './decode.js';
import type { Packet, ProtocolVersion } from './packets.js';
import { MALFORMED, malformed } from './primitives.js';
import { ProtocolError } from './protocol-error.js';

const PACKET_TOO_LARGE = 0x95;
/** CONNECT's type and flags: anything else in a first byte is not a CONNECT to answer */
const CONNECT_BYTE = 0x10;
/** the smallest buffer an incomplete frame is collected in once it takes a third chunk */
const MIN_HOLD = 1024;

/** Takes the packets PacketParser.feed decodes; answers true to stop reading the chunk. */
export interface PacketSink {
  packet(packet: Packet): boolean | void;
}

export interface ParserOptions {
  maxPacketSize: number;
  /** for a client-side parser that knows the version up front; a server learns it from CONNECT */
  protocolVersion?: ProtocolVersion;
}

/**
 * A first CONNECT larger than the maximum packet size. `protocolVersion` is set when the start of
 * its variable header named MQTT 3.1, 3.1.1 or 5.0: only 5.0 has a CONNACK code for it (0x95).
 */
export class OversizedConnect extends ProtocolError {
  readonly size: number;
  readonly limit: number;

  constructor(size: number, limit: number, protocolVersion: ProtocolVersion | undefined) {
    super(PACKET_TOO_LARGE, `CONNECT of ${size} bytes is over the maximum packet size ${limit}`);
    this.size = size;
    this.limit = limit;
    this.inConnect = true;
    if (protocolVersion !== undefined) this.protocolVersion = protocolVersion;
  }
}

/**
 * Incremental MQTT parser: push bytes as they arrive, get every complete packet back. Frames may
 * be split anywhere. The fixed header is checked before the body is buffered, so a packet that
 * claims to be larger than the limit is refused after at most 5 bytes (a first CONNECT after its
 * protocol level, at most 14). Payloads of packets that arrive whole are views into the chunk,
 * not copies.
 */
export class PacketParser implements TopicMemo {
  protocolVersion: ProtocolVersion;
  maxPacketSize: number;
  error: ProtocolError | undefined;
  /** a publisher mostly repeats its topic: the last one is reused rather than decoded again */
  lastTopic = '';
  /**
   * The start of an incomplete frame: a view into the chunk it came in until a further chunk is
   * still not enough, then a buffer of the parser's own that the next chunks are copied into.
   * Keeping every chunk instead cost a Buffer object (and a pinned pool slab) per read, some 90
   * bytes of heap per byte for a client sending one byte per segment.
   */
  private pending: Buffer | undefined;
  private pendingLength = 0;
  /** pending is the parser's own (nothing else views it), so it may be written into */
  private owned = false;
  /** size of the frame being collected, once its fixed header has been read (0 = unknown) */
  private needed = 0;
  /** a server's parser before CONNECT: an oversized CONNECT may still get its CONNACK 0x95 */
  private awaitingConnect: boolean;

  constructor(options: ParserOptions) {
    this.maxPacketSize = options.maxPacketSize;
    this.protocolVersion = options.protocolVersion ?? 4;
    this.awaitingConnect = options.protocolVersion === undefined;
  }

  /** Every complete packet in what has arrived so far, in order (see feed). */
  push(chunk: Buffer): Packet[] {
    const out: Packet[] = [];
    this.feed(chunk, { packet: (p) => void out.push(p) });
    return out;
  }

  /**
   * Hands each complete packet to `sink` as soon as it is decoded, and stops early once the sink
   * answers true (the connection is closing: what follows is not read). What the broker reads goes
   * through here, not push: an array per read was some 180 bytes of garbage per read.
   */
  feed(chunk: Buffer, sink: PacketSink): void {
    if (this.error !== undefined) return;
    let buf = chunk;
    if (this.pendingLength > 0) {
      const have = this.pendingLength + chunk.length;
      if (have < this.needed) {
        this.hold(chunk, have);
        return;
      }
      const pending = this.pending as Buffer;
      if (this.owned && have <= pending.length) {
        // the frame's last bytes and nothing after them: it is parsed where it was collected
        pending.set(chunk, this.pendingLength);
        buf = pending.subarray(0, have);
      } else {
        buf = Buffer.allocUnsafe(have);
        pending.copy(buf, 0, 0, this.pendingLength);
        buf.set(chunk, this.pendingLength);
      }
      this.pending = undefined;
      this.pendingLength = 0;
      this.owned = false;
    }
    this.needed = 0;
    let pos = 0;
    const len = buf.length;
    // a throw from the sink is the broker's fault, not the bytes': it goes to feed's caller
    let inSink = false;
    try {
      while (pos < len) {
        // fixed header: type/flags byte, then the remaining length (1 to 4 bytes)
        if (pos + 2 > len) break;
        let remaining = 0;
        let mult = 1;
        let i = pos + 1;
        let complete = false;
        for (let n = 0; n < 4; n++, i++) {
          if (i >= len) break;
          const b = buf[i] as number;
          remaining += (b & 0x7f) * mult;
          if ((b & 0x80) === 0) {
            complete = true;
            i++;
            break;
          }
          mult *= 128;
          if (n === 3) throw malformed('remaining length longer than 4 bytes');
        }
        if (!complete) break;
        const total = i - pos + remaining;
        if (total > this.maxPacketSize) {
          if (!this.awaitingConnect || buf[pos] !== CONNECT_BYTE) {
            throw new ProtocolError(PACKET_TOO_LARGE, `packet of ${total} bytes is over the maximum packet size ${this.maxPacketSize}`);
          }
          const missing = oversizedConnectMissing(buf, i, len);
          if (missing > 0) {
            // only the bytes up to the protocol level are collected, never the body
            this.needed = len - pos + missing;
            break;
          }
          throw new OversizedConnect(total, this.maxPacketSize, connectVersion(buf, i, remaining));
        }
        if (i + remaining > len) {
          this.needed = total;
          break;
        }
        const first = buf[pos] as number;
        const packet = decodePacket(first, buf, i, i + remaining, this.protocolVersion, this);
        if (packet.type === 'connect') {
          this.protocolVersion = packet.protocolVersion;
          this.awaitingConnect = false;
        }
        pos = i + remaining;
        inSink = true;
        const stop = sink.packet(packet);
        inSink = false;
        if (stop === true) {
          // the rest is not the connection's concern any more
          this.pending = undefined;
          this.pendingLength = 0;
          this.owned = false;
          return;
        }
      }
    } catch (err) {
      if (inSink) throw err;
      if (err instanceof ProtocolError) {
        this.error = err;
      } else {
        // a decoder bug must not take the process down: report it as malformed, keeping the cause for tests
        this.error = new ProtocolError(MALFORMED, `malformed packet: ${String(err)}`);
        this.error.cause = err;
      }
      this.pending = undefined;
      this.pendingLength = 0;
      this.owned = false;
      return;
    }
    if (pos < len) {
      // the rest is kept as a view: chunks are never written to after they arrive, and a frame
      // that ends in the next chunk is then copied once, as before
      this.pending = buf.subarray(pos);
      this.pendingLength = len - pos;
    }
  }

  /**
   * Adds a chunk that still leaves the frame incomplete. The buffer grows geometrically, so what
   * is held stays within a small multiple of what was received and each byte is copied a bounded
   * number of times; it takes the frame's full size only once a quarter of it is here, so that a
   * header claiming a large frame does not make the broker allocate that much on its own.
   */
  private hold(chunk: Buffer, have: number): void {
    let pending = this.pending as Buffer;
    if (!this.owned || have > pending.length) {
      let size = Math.max(have * 2, MIN_HOLD);
      if (this.needed > 0 && size * 2 >= this.needed) size = this.needed;
      // not from Buffer's shared pool: a small buffer held there would keep a whole slab alive
      const grown = Buffer.allocUnsafeSlow(size);
      pending.copy(grown, 0, 0, this.pendingLength);
      pending = grown;
      this.pending = grown;
      this.owned = true;
    }
    pending.set(chunk, this.pendingLength);
    this.pendingLength = have;
  }
}

/**
 * Bytes still missing before connectVersion can read a CONNECT whose variable header starts at
 * `at`: its protocol name's length, the name, the level. 0 when they are here, or when the length
 * is no MQTT name's (a long one must not make the broker wait for it).
 */
function oversizedConnectMissing(buf: Buffer, at: number, len: number): number {
  if (at + 2 > len) return at + 7 - len;
  const nameLength = buf.readUInt16BE(at);
  if (nameLength !== 4 && nameLength !== 6) return 0;
  return Math.max(0, at + 3 + nameLength - len);
}

/** The version a CONNECT's variable header at `at` names (see oversizedConnectMissing), if it is MQTT's. */
function connectVersion(buf: Buffer, at: number, remaining: number): ProtocolVersion | undefined {
  const nameLength = buf.readUInt16BE(at);
  // a CONNECT too short to hold its level is malformed, and what follows is not its level
  if ((nameLength !== 4 && nameLength !== 6) || 3 + nameLength > remaining) return undefined;
  const name = buf.toString('latin1', at + 2, at + 2 + nameLength);
  const level = buf[at + 2 + nameLength];
  if (name === 'MQTT' && (level === 4 || level === 5)) return level;
  if (name === 'MQIsdp' && level === 3) return 3;
  return undefined;
}
