import { Buffer } from 'node:buffer';
import type { Properties, ProtocolVersion, QoS } from './packets.js';
import { Writer, utf8Length, varintSize } from './primitives.js';
import { propertiesLength, writeProperties } from './properties.js';

/**
 * A PUBLISH split into its head (fixed header, topic, packet-id slot, properties) and its payload,
 * so one encoding serves every subscriber of the same shape: the head is small and the payload
 * is written by reference, never copied.
 */
export interface PublishFrame {
  readonly head: Buffer;
  readonly payload: Buffer;
  /** offset of the 2-byte packet identifier in head, or -1 for QoS 0 */
  readonly pidOffset: number;
  /** head and a small payload in one buffer, made on first use (see `wholeFrame`) */
  whole?: Buffer;
}

/**
 * Payloads up to this size are copied next to their head, so that a delivery is one socket write
 * rather than two: below about a kilobyte the copy costs less than the second write.
 */
export const INLINE_PAYLOAD = 1024;

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
  const head = Buffer.allocUnsafe(1 + varintSize(remaining) + variable);
  const w = new Writer(head);
  w.byte(0x30 | (qos << 1) | (retain ? 1 : 0));
  w.varint(remaining);
  w.utf8(topic, topicLen);
  let pidOffset = -1;
  if (qos > 0) {
    pidOffset = w.pos;
    w.u16(0);
  }
  if (v5) writeProperties(w, properties, propsLen);
  return { head, payload, pidOffset, whole: undefined };
}

/** A copy of the head with this packet identifier and DUP flag; the shared frame is untouched. */
export function headWithPacketId(frame: PublishFrame, packetId: number, dup: boolean): Buffer {
  const head = Buffer.allocUnsafe(frame.head.length);
  frame.head.copy(head);
  return stampPacketId(head, frame, packetId, dup);
}

/** Head and payload in one buffer, built once per frame and written to every subscriber. */
export function wholeFrame(frame: PublishFrame): Buffer {
  let whole = frame.whole;
  if (whole === undefined) {
    whole = Buffer.allocUnsafe(frame.head.length + frame.payload.length);
    frame.head.copy(whole);
    frame.payload.copy(whole, frame.head.length);
    frame.whole = whole;
  }
  return whole;
}

/** Head (with this packet identifier and DUP flag) and payload in one new buffer. */
export function packetWithId(frame: PublishFrame, packetId: number, dup: boolean): Buffer {
  const out = Buffer.allocUnsafe(frame.head.length + frame.payload.length);
  frame.head.copy(out);
  frame.payload.copy(out, frame.head.length);
  return stampPacketId(out, frame, packetId, dup);
}

function stampPacketId(out: Buffer, frame: PublishFrame, packetId: number, dup: boolean): Buffer {
  if (dup) out[0] = (out[0] as number) | 0x08;
  if (frame.pidOffset >= 0) {
    out[frame.pidOffset] = packetId >> 8;
    out[frame.pidOffset + 1] = packetId & 0xff;
  }
  return out;
}
