import { Buffer } from 'node:buffer';
import type { ConnectPacket, ConnackPacket, Packet, Properties, ProtocolVersion, PublishPacket, SubscribePacket } from './packets.js';
import { Writer, utf8Length, varintSize } from './primitives.js';
import { propertiesLength, writeProperties } from './properties.js';

const TYPE_CODES: Record<Packet['type'], number> = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
};

/** A body's size and the function that writes it: measured first so the packet is one allocation. */
interface Body {
  size: number;
  write(w: Writer): void;
}

/** Encodes any packet for the given protocol version (5.0 fields are left out for 3.1/3.1.1). */
export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  const v5 = version === 5;
  const body = bodyOf(packet, v5);
  let first = TYPE_CODES[packet.type] << 4;
  if (packet.type === 'publish') first |= (packet.dup && packet.qos > 0 ? 0x08 : 0) | (packet.qos << 1) | (packet.retain ? 1 : 0);
  else if (packet.type === 'pubrel' || packet.type === 'subscribe' || packet.type === 'unsubscribe') first |= 0x02;
  const buf = Buffer.allocUnsafe(1 + varintSize(body.size) + body.size);
  const w = new Writer(buf);
  w.byte(first);
  w.varint(body.size);
  body.write(w);
  return buf;
}

function props(p: Properties | undefined, v5: boolean): { len: number; size: number } {
  if (!v5) return { len: 0, size: 0 };
  const len = propertiesLength(p);
  return { len, size: varintSize(len) + len };
}

function bodyOf(packet: Packet, v5: boolean): Body {
  switch (packet.type) {
    case 'connect':
      return connectBody(packet, v5);
    case 'connack':
      return connackBody(packet, v5);
    case 'publish':
      return publishBody(packet, v5);
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp': {
      const code = packet.reasonCode ?? 0;
      const pr = props(packet.properties, v5);
      // 5.0: reason code and properties may be left out when they are 0 and empty
      const withCode = v5 && (code !== 0 || pr.len > 0);
      const withProps = withCode && pr.len > 0;
      return {
        size: 2 + (withCode ? 1 : 0) + (withProps ? pr.size : 0),
        write(w) {
          w.u16(packet.packetId);
          if (withCode) w.byte(code);
          if (withProps) writeProperties(w, packet.properties, pr.len);
        },
      };
    }
    case 'subscribe':
      return subscribeBody(packet, v5);
    case 'suback':
    case 'unsuback': {
      const pr = props(packet.properties, v5);
      const codes = packet.type === 'unsuback' && !v5 ? [] : packet.reasonCodes;
      return {
        size: 2 + pr.size + codes.length,
        write(w) {
          w.u16(packet.packetId);
          if (v5) writeProperties(w, packet.properties, pr.len);
          for (const c of codes) w.byte(c);
        },
      };
    }
    case 'unsubscribe': {
      const pr = props(packet.properties, v5);
      const lens = packet.topicFilters.map(utf8Length);
      return {
        size: 2 + pr.size + lens.reduce((a, n) => a + 2 + n, 0),
        write(w) {
          w.u16(packet.packetId);
          if (v5) writeProperties(w, packet.properties, pr.len);
          packet.topicFilters.forEach((f, i) => w.utf8(f, lens[i] as number));
        },
      };
    }
    case 'pingreq':
    case 'pingresp':
      return { size: 0, write() {} };
    case 'disconnect':
    case 'auth': {
      if (!v5) return { size: 0, write() {} };
      const code = packet.reasonCode ?? 0;
      const pr = props(packet.properties, v5);
      if (code === 0 && pr.len === 0) return { size: 0, write() {} };
      return {
        size: 1 + pr.size,
        write(w) {
          w.byte(code);
          writeProperties(w, packet.properties, pr.len);
        },
      };
    }
  }
}

function connectBody(p: ConnectPacket, v5: boolean): Body {
  const nameLen = utf8Length(p.protocolName);
  const pr = props(p.properties, v5);
  const idLen = utf8Length(p.clientId);
  const will = p.will;
  const willPr = will === undefined ? { len: 0, size: 0 } : props(will.properties, v5);
  const willTopicLen = will === undefined ? 0 : utf8Length(will.topic);
  const userLen = p.username === undefined ? 0 : utf8Length(p.username);
  let size = 2 + nameLen + 1 + 1 + 2 + pr.size + 2 + idLen;
  if (will !== undefined) size += willPr.size + 2 + willTopicLen + 2 + will.payload.length;
  if (p.username !== undefined) size += 2 + userLen;
  if (p.password !== undefined) size += 2 + p.password.length;
  let flags = p.cleanStart ? 0x02 : 0;
  if (will !== undefined) flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
  if (p.password !== undefined) flags |= 0x40;
  if (p.username !== undefined) flags |= 0x80;
  return {
    size,
    write(w) {
      w.utf8(p.protocolName, nameLen);
      w.byte(p.protocolVersion);
      w.byte(flags);
      w.u16(p.keepAlive);
      if (v5) writeProperties(w, p.properties, pr.len);
      w.utf8(p.clientId, idLen);
      if (will !== undefined) {
        if (v5) writeProperties(w, will.properties, willPr.len);
        w.utf8(will.topic, willTopicLen);
        w.binary(will.payload);
      }
      if (p.username !== undefined) w.utf8(p.username, userLen);
      if (p.password !== undefined) w.binary(p.password);
    },
  };
}

function connackBody(p: ConnackPacket, v5: boolean): Body {
  const pr = props(p.properties, v5);
  return {
    size: 2 + pr.size,
    write(w) {
      w.byte(p.sessionPresent ? 1 : 0);
      w.byte(p.reasonCode);
      if (v5) writeProperties(w, p.properties, pr.len);
    },
  };
}

function publishBody(p: PublishPacket, v5: boolean): Body {
  const topicLen = utf8Length(p.topic);
  const pr = props(p.properties, v5);
  return {
    size: 2 + topicLen + (p.qos > 0 ? 2 : 0) + pr.size + p.payload.length,
    write(w) {
      w.utf8(p.topic, topicLen);
      if (p.qos > 0) w.u16(p.packetId ?? 0);
      if (v5) writeProperties(w, p.properties, pr.len);
      w.bytes(p.payload);
    },
  };
}

function subscribeBody(p: SubscribePacket, v5: boolean): Body {
  const pr = props(p.properties, v5);
  const lens = p.subscriptions.map((s) => utf8Length(s.topicFilter));
  return {
    size: 2 + pr.size + lens.reduce((a, n) => a + 2 + n + 1, 0),
    write(w) {
      w.u16(p.packetId);
      if (v5) writeProperties(w, p.properties, pr.len);
      p.subscriptions.forEach((s, i) => {
        w.utf8(s.topicFilter, lens[i] as number);
        let options = s.qos;
        if (v5) options |= (s.noLocal ? 0x04 : 0) | (s.retainAsPublished ? 0x08 : 0) | (s.retainHandling << 4);
        w.byte(options);
      });
    },
  };
}
