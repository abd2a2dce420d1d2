import { Buffer } from 'node:buffer';
import { decodeConnack, decodeConnect } from './decode-connect.js';
import type { AckPacket, Packet, ProtocolVersion, PublishPacket, QoS, SubscribePacket, SubscriptionRequest } from './packets.js';
import { PROTOCOL_ERROR, Reader, malformed } from './primitives.js';
import { readProperties } from './properties.js';
import { ProtocolError } from './protocol-error.js';

/** Valid 5.0 reason codes per packet type (section 2.4 and each packet's table). */
const PUB_ACK_CODES = new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
const PUB_REL_CODES = new Set([0x00, 0x92]);
const SUBACK_CODES = new Set([0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2]);
const UNSUBACK_CODES = new Set([0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91]);
const DISCONNECT_CODES = new Set([
  0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
  0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
]);
const AUTH_CODES = new Set([0x00, 0x18, 0x19]);

const TYPES = ['', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'] as const;

/** The topic of the last PUBLISH a parser decoded, kept per connection for `Reader.utf8`. */
export interface TopicMemo {
  lastTopic: string;
}

/**
 * Decodes one complete packet body. `first` is the fixed header's first byte, the body is
 * buf[start, end). Throws ProtocolError for anything the specification calls malformed.
 */
export function decodePacket(first: number, buf: Buffer, start: number, end: number, version: ProtocolVersion, memo?: TopicMemo): Packet {
  const type = first >> 4;
  const flags = first & 0x0f;
  const r = new Reader(buf, start, end);
  if (type === 3) return decodePublish(r, flags, version, memo);
  // [MQTT-2.2.2-1] [MQTT-2.2.2-2] reserved flag bits: 0010 for PUBREL, SUBSCRIBE, UNSUBSCRIBE, 0000 otherwise
  const expected = type === 6 || type === 8 || type === 10 ? 0x02 : 0x00;
  if (flags !== expected) throw malformed(`invalid fixed header flags for ${TYPES[type]?.toUpperCase() || 'reserved packet type'}`);
  switch (type) {
    case 1:
      return decodeConnect(r);
    case 2:
      return decodeConnack(r, version);
    case 4:
    case 5:
    case 6:
    case 7:
      return decodeAck(r, TYPES[type] as AckPacket['type'], version);
    case 8:
      return decodeSubscribe(r, version);
    case 9:
    case 11:
      return decodeSubackLike(r, type === 9 ? 'suback' : 'unsuback', version);
    case 10:
      return decodeUnsubscribe(r, version);
    case 12:
    case 13:
      if (r.remaining !== 0) throw malformed(`${TYPES[type]?.toUpperCase()} must be empty`);
      return { type: type === 12 ? 'pingreq' : 'pingresp' };
    case 14:
      return decodeDisconnect(r, version);
    case 15:
      if (version !== 5) throw malformed('AUTH exists only in MQTT 5');
      return decodeAuth(r);
    default:
      throw malformed('reserved packet type 0');
  }
}

function decodePublish(r: Reader, flags: number, version: ProtocolVersion, memo: TopicMemo | undefined): PublishPacket {
  const qos = (flags >> 1) & 0x03;
  // [MQTT-3.3.1-4]
  if (qos === 3) throw malformed('PUBLISH with QoS 3');
  const dup = (flags & 0x08) !== 0;
  // [MQTT-3.3.1-2] DUP is 0 for QoS 0
  if (dup && qos === 0) throw malformed('PUBLISH QoS 0 with DUP set');
  const topic = memo === undefined ? r.utf8() : (memo.lastTopic = r.utf8(memo.lastTopic));
  // every PUBLISH has the same fields, set or undefined, so that the code reading packets sees one
  // object shape instead of four (with or without id, with or without properties)
  const packet: PublishPacket = { type: 'publish', topic, payload: EMPTY, qos: qos as QoS, retain: (flags & 0x01) !== 0, dup, packetId: undefined, properties: undefined };
  if (qos > 0) {
    const id = r.u16();
    // [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0)
    if (id === 0) throw malformed('PUBLISH with packet identifier 0');
    packet.packetId = id;
  }
  if (version === 5) {
    const properties = readProperties(r, 'publish');
    if (properties !== undefined) packet.properties = properties;
  }
  packet.payload = r.rest();
  return packet;
}

const EMPTY = Buffer.alloc(0);

/** `type` is the packet's type name, upper-cased only for an error: acks pass through here by the thousand */
function packetId(r: Reader, type: string): number {
  const id = r.u16();
  if (id === 0) throw malformed(`${type.toUpperCase()} with packet identifier 0`);
  return id;
}

function decodeAck(r: Reader, type: AckPacket['type'], version: ProtocolVersion): AckPacket {
  const packet: AckPacket = { type, packetId: packetId(r, type), reasonCode: undefined, properties: undefined };
  if (version === 5) {
    if (r.remaining > 0) {
      const code = r.byte();
      const valid = type === 'puback' || type === 'pubrec' ? PUB_ACK_CODES : PUB_REL_CODES;
      if (!valid.has(code)) throw malformed(`invalid ${type.toUpperCase()} reason code 0x${code.toString(16)}`);
      packet.reasonCode = code;
      if (r.remaining > 0) {
        const properties = readProperties(r, type);
        if (properties !== undefined) packet.properties = properties;
      }
    }
  }
  if (r.remaining !== 0) throw malformed(`bytes after the end of ${type.toUpperCase()}`);
  return packet;
}

function decodeSubscribe(r: Reader, version: ProtocolVersion): SubscribePacket {
  const packet: SubscribePacket = { type: 'subscribe', packetId: packetId(r, 'subscribe'), subscriptions: [] };
  if (version === 5) {
    const properties = readProperties(r, 'subscribe');
    if (properties !== undefined) packet.properties = properties;
  }
  while (r.remaining > 0) {
    const topicFilter = r.utf8();
    const options = r.byte();
    const qos = options & 0x03;
    if (qos === 3) throw malformed('SUBSCRIBE with QoS 3');
    let request: SubscriptionRequest;
    if (version === 5) {
      // [MQTT-3.8.3-5] (5.0) reserved bits 6 and 7; retain handling 3 is not a value
      if ((options & 0xc0) !== 0) throw malformed('SUBSCRIBE options reserved bits are set');
      const retainHandling = (options >> 4) & 0x03;
      if (retainHandling === 3) throw malformed('SUBSCRIBE retain handling 3');
      request = { topicFilter, qos: qos as QoS, noLocal: (options & 0x04) !== 0, retainAsPublished: (options & 0x08) !== 0, retainHandling: retainHandling as 0 | 1 | 2 };
    } else {
      // [MQTT-3.8.3-4] (3.1.1) the upper six bits are reserved
      if ((options & 0xfc) !== 0) throw malformed('SUBSCRIBE QoS byte reserved bits are set');
      request = { topicFilter, qos: qos as QoS, noLocal: false, retainAsPublished: false, retainHandling: 0 };
    }
    packet.subscriptions.push(request);
  }
  // [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0) at least one filter
  if (packet.subscriptions.length === 0) throw new ProtocolError(PROTOCOL_ERROR, 'SUBSCRIBE without any topic filter');
  return packet;
}

function decodeUnsubscribe(r: Reader, version: ProtocolVersion): Packet {
  const id = packetId(r, 'unsubscribe');
  const properties = version === 5 ? readProperties(r, 'unsubscribe') : undefined;
  const topicFilters: string[] = [];
  while (r.remaining > 0) topicFilters.push(r.utf8());
  // [MQTT-3.10.3-2] at least one filter
  if (topicFilters.length === 0) throw new ProtocolError(PROTOCOL_ERROR, 'UNSUBSCRIBE without any topic filter');
  return properties === undefined ? { type: 'unsubscribe', packetId: id, topicFilters } : { type: 'unsubscribe', packetId: id, topicFilters, properties };
}

function decodeSubackLike(r: Reader, type: 'suback' | 'unsuback', version: ProtocolVersion): Packet {
  const id = r.u16();
  const properties = version === 5 ? readProperties(r, type) : undefined;
  const reasonCodes: number[] = [];
  const valid = type === 'suback' ? SUBACK_CODES : UNSUBACK_CODES;
  while (r.remaining > 0) {
    const code = r.byte();
    if (version === 5 ? !valid.has(code) : type === 'suback' && code > 2 && code !== 0x80) {
      throw malformed(`invalid ${type.toUpperCase()} code 0x${code.toString(16)}`);
    }
    reasonCodes.push(code);
  }
  if (type === 'unsuback' && version !== 5 && reasonCodes.length > 0) throw malformed('UNSUBACK has no payload before MQTT 5');
  const packet = { type, packetId: id, reasonCodes } as Packet & { properties?: unknown };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

function decodeDisconnect(r: Reader, version: ProtocolVersion): Packet {
  if (version !== 5) {
    if (r.remaining !== 0) throw malformed('DISCONNECT must be empty before MQTT 5');
    return { type: 'disconnect' };
  }
  if (r.remaining === 0) return { type: 'disconnect' };
  const reasonCode = r.byte();
  if (!DISCONNECT_CODES.has(reasonCode)) throw malformed(`invalid DISCONNECT reason code 0x${reasonCode.toString(16)}`);
  const properties = r.remaining > 0 ? readProperties(r, 'disconnect') : undefined;
  if (r.remaining !== 0) throw malformed('bytes after the end of DISCONNECT');
  return properties === undefined ? { type: 'disconnect', reasonCode } : { type: 'disconnect', reasonCode, properties };
}

function decodeAuth(r: Reader): Packet {
  if (r.remaining === 0) return { type: 'auth', reasonCode: 0 };
  const reasonCode = r.byte();
  if (!AUTH_CODES.has(reasonCode)) throw malformed(`invalid AUTH reason code 0x${reasonCode.toString(16)}`);
  const properties = r.remaining > 0 ? readProperties(r, 'auth') : undefined;
  if (r.remaining !== 0) throw malformed('bytes after the end of AUTH');
  return properties === undefined ? { type: 'auth', reasonCode } : { type: 'auth', reasonCode, properties };
}
