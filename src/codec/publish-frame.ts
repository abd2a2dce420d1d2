import { Buffer } from 'node:buffer';
import type { Properties, ProtocolVersion, QoS } from './packets.js';
import { Writer, utf8Length, varintSize } from './primitives.js';
import { propertiesLength, writeProperties } from './properties.js';

/**
 * A PUBLISH encoded once and shared by every subscriber of the same shape. A small payload is
 * copied in after the head, so that a delivery is one buffer and one write; a large one stays
 * apart and is written by reference after the head, never copied.
 */
export interface PublishFrame {
  /** the whole packet when `inline`, the head alone (fixed header, topic, packet-id slot, properties) otherwise */
  readonly bytes: Buffer;
  readonly payload: Buffer;
  /** the payload is inside `bytes` */
  readonly inline: boolean;
  /** length of the whole packet */
  readonly size: number;
  /** offset of the 2-byte packet identifier in `bytes`, or -1 for QoS 0 */
  readonly pidOffset: number;
  /**
   * A QoS 1/2 frame's `bytes` went to one subscriber with its packet identifier written in: that
   * write owns them, and every later send of the frame is a copy. Most QoS 1/2 messages have one
   * subscriber, which so costs no copy.
   */
  taken: boolean;
}

/**
 * Payloads up to this size are copied next to their head, so that a delivery is one socket write
 * rather than two: below about a kilobyte the copy costs less than the second write.
 */
export const INLINE_PAYLOAD = 1024;

/** The size of the PUBLISH encodePublishFrame would make of these, without making it. */
export function publishFrameSize(topic: string, payloadLength: number, qos: QoS, version: ProtocolVersion, properties?: Properties): number {
  const propsLen = version === 5 ? propertiesLength(properties) : 0;
  const variable = 2 + utf8Length(topic) + (qos > 0 ? 2 : 0) + (version === 5 ? varintSize(propsLen) + propsLen : 0);
  const remaining = variable + payloadLength;
  return 1 + varintSize(remaining) + remaining;
}

export function encodePublishFrame(
  topic: string,
  payload: Buffer,
  qos: QoS,
  retain: boolean,
  version: ProtocolVersion,
  properties?: Properties,
): PublishFrame {
  const topicLen = utf8Length(topic);
  const v5 = version === 5;
  const propsLen = v5 ? propertiesLength(properties) : 0;
  const variable = 2 + topicLen + (qos > 0 ? 2 : 0) + (v5 ? varintSize(propsLen) + propsLen : 0);
  const remaining = variable + payload.length;
  const headLength = 1 + varintSize(remaining) + variable;
  const inline = payload.length <= INLINE_PAYLOAD;
  const bytes = Buffer.allocUnsafe(inline ? headLength + payload.length : headLength);
  const w = new Writer(bytes);
  w.byte(0x30 | (qos << 1) | (retain ? 1 : 0));
  w.varint(remaining);
  w.utf8(topic, topicLen);
  let pidOffset = -1;
  if (qos > 0) {
    pidOffset = w.pos;
    w.u16(0);
  }
  if (v5) writeProperties(w, properties, propsLen);
  if (inline) payload.copy(bytes, headLength);
  return { bytes, payload, inline, size: headLength + payload.length, pidOffset, taken: false };
}

/**
 * What to write for one delivery of the frame: `bytes` (followed by `payload` unless inline) with
 * this packet identifier and DUP flag. QoS 0 shares the frame's bytes with every subscriber; QoS
 * 1/2 gives them to the first send and a copy to every other (see `taken`).
 */
export function frameBytes(frame: PublishFrame, packetId: number, dup: boolean): Buffer {
  if (frame.pidOffset < 0) return frame.bytes;
  let out = frame.bytes;
  if (frame.taken || dup) {
    out = Buffer.allocUnsafe(out.length);
    frame.bytes.copy(out);
    if (dup) out[0] = (out[0] as number) | 0x08;
  } else {
    frame.taken = true;
  }
  out[frame.pidOffset] = packetId >> 8;
  out[frame.pidOffset + 1] = packetId & 0xff;
  return out;
}
