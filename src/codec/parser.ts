import { Buffer } from 'node:buffer';
import { decodePacket, type TopicMemo } from './decode.js';
import type { Packet, ProtocolVersion } from './packets.js';
import { MALFORMED, malformed } from './primitives.js';
import { ProtocolError } from './protocol-error.js';

const PACKET_TOO_LARGE = 0x95;

export interface ParserOptions {
  maxPacketSize: number;
  /** for a client-side parser that knows the version up front; a server learns it from CONNECT */
  protocolVersion?: ProtocolVersion;
}

/**
 * Incremental MQTT parser: push bytes as they arrive, get every complete packet back. Frames may
 * be split anywhere. The fixed header is checked before the body is buffered, so a packet that
 * claims to be larger than the limit is refused after at most 5 bytes. Payloads of packets that
 * arrive whole are views into the chunk, not copies.
 */
export class PacketParser implements TopicMemo {
  protocolVersion: ProtocolVersion;
  maxPacketSize: number;
  error: ProtocolError | undefined;
  /** a publisher mostly repeats its topic: the last one is reused rather than decoded again */
  lastTopic = '';
  /** chunks of an incomplete frame carried over, joined only once the whole frame is here */
  private pending: Buffer[] | undefined;
  private pendingLength = 0;
  /** size of the frame being collected, once its fixed header has been read (0 = unknown) */
  private needed = 0;

  constructor(options: ParserOptions) {
    this.maxPacketSize = options.maxPacketSize;
    this.protocolVersion = options.protocolVersion ?? 4;
  }

  push(chunk: Buffer): Packet[] {
    const out: Packet[] = [];
    if (this.error !== undefined) return out;
    let buf = chunk;
    if (this.pendingLength > 0) {
      if (this.pendingLength + chunk.length < this.needed) {
        // still short of the frame: keep the chunk, no copying yet
        (this.pending as Buffer[]).push(chunk);
        this.pendingLength += chunk.length;
        return out;
      }
      const parts = this.pending as Buffer[];
      parts.push(chunk);
      buf = Buffer.concat(parts, this.pendingLength + chunk.length);
      this.pending = undefined;
      this.pendingLength = 0;
    }
    this.needed = 0;
    let pos = 0;
    const len = buf.length;
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
          throw new ProtocolError(PACKET_TOO_LARGE, `packet of ${total} bytes is over the maximum packet size ${this.maxPacketSize}`);
        }
        if (i + remaining > len) {
          this.needed = total;
          break;
        }
        const first = buf[pos] as number;
        const packet = decodePacket(first, buf, i, i + remaining, this.protocolVersion, this);
        if (packet.type === 'connect') this.protocolVersion = packet.protocolVersion;
        out.push(packet);
        pos = i + remaining;
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.error = err;
      } else {
        // a decoder bug must not take the process down: report it as malformed, keeping the cause for tests
        this.error = new ProtocolError(MALFORMED, `malformed packet: ${String(err)}`);
        this.error.cause = err;
      }
      this.pending = undefined;
      this.pendingLength = 0;
      return out;
    }
    if (pos < len) {
      // the rest is kept as a view: chunks are never written to after they arrive
      const rest = buf.subarray(pos);
      this.pending = [rest];
      this.pendingLength = rest.length;
    }
    return out;
  }
}
