import { Buffer } from 'node:buffer';
import type { ConnectPacket, ConnackPacket, ProtocolVersion, QoS, Will } from './packets.js';
import { MALFORMED, Reader, malformed } from './primitives.js';
import { readProperties } from './properties.js';
import { ProtocolError } from './protocol-error.js';

const UNSUPPORTED_PROTOCOL_VERSION = 0x84;

/** CONNECT (section 3.1). Errors carry `inConnect` so the server can answer with a CONNACK code. */
export function decodeConnect(r: Reader): ConnectPacket {
  let version: ProtocolVersion | undefined;
  try {
    const protocolName = r.utf8();
    const level = r.byte();
    if (protocolName === 'MQTT' && (level === 4 || level === 5)) version = level;
    else if (protocolName === 'MQIsdp' && level === 3) version = 3;
    else if (protocolName === 'MQTT' || protocolName === 'MQIsdp') {
      // [MQTT-3.1.2-2] a level we do not speak: CONNACK 0x01 / 0x84
      throw new ProtocolError(UNSUPPORTED_PROTOCOL_VERSION, `unsupported protocol level ${level}`);
    } else {
      // [MQTT-3.1.2-1] not MQTT at all: close without a CONNACK
      throw malformed(`unknown protocol name "${protocolName}"`);
    }
    const flags = r.byte();
    // [MQTT-3.1.2-3] the reserved flag must be 0
    if ((flags & 0x01) !== 0) throw malformed('CONNECT reserved flag is set');
    const cleanStart = (flags & 0x02) !== 0;
    const willFlag = (flags & 0x04) !== 0;
    const willQos = (flags >> 3) & 0x03;
    const willRetain = (flags & 0x20) !== 0;
    const passwordFlag = (flags & 0x40) !== 0;
    const usernameFlag = (flags & 0x80) !== 0;
    if (!willFlag && (willQos !== 0 || willRetain)) {
      // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
      throw malformed('will QoS or will retain set without the will flag');
    }
    // [MQTT-3.1.2-14]
    if (willQos === 3) throw malformed('will QoS 3');
    // [MQTT-3.1.2-22] (3.1.1): a password needs a user name; 5.0 allows it alone
    if (version !== 5 && passwordFlag && !usernameFlag) throw malformed('password flag set without the user name flag');
    const keepAlive = r.u16();
    const properties = version === 5 ? readProperties(r, 'connect') : undefined;
    // [MQTT-3.1.3-1] the payload fields come in this order
    const clientId = r.utf8();
    let will: Will | undefined;
    if (willFlag) {
      const willProperties = version === 5 ? readProperties(r, 'will') : undefined;
      const topic = r.utf8();
      const payload = Buffer.from(r.binary());
      will = { topic, payload, qos: willQos as QoS, retain: willRetain, properties: willProperties };
    }
    const username = usernameFlag ? r.utf8() : undefined;
    const password = passwordFlag ? Buffer.from(r.binary()) : undefined;
    if (r.remaining !== 0) throw malformed('bytes after the last CONNECT field');
    const packet: ConnectPacket = { type: 'connect', protocolName, protocolVersion: version, cleanStart, keepAlive, clientId };
    if (username !== undefined) packet.username = username;
    if (password !== undefined) packet.password = password;
    if (will !== undefined) packet.will = will;
    if (properties !== undefined) packet.properties = properties;
    return packet;
  } catch (err) {
    if (err instanceof ProtocolError) {
      err.inConnect = true;
      if (version !== undefined) err.protocolVersion = version;
    }
    throw err;
  }
}

export function decodeConnack(r: Reader, version: ProtocolVersion): ConnackPacket {
  const flags = r.byte();
  if ((flags & 0xfe) !== 0) throw malformed('CONNACK reserved flags are set');
  const reasonCode = r.byte();
  const packet: ConnackPacket = { type: 'connack', sessionPresent: (flags & 1) === 1, reasonCode };
  if (version === 5) {
    const properties = readProperties(r, 'connack');
    if (properties !== undefined) packet.properties = properties;
  }
  if (r.remaining !== 0) throw new ProtocolError(MALFORMED, 'bytes after the last CONNACK field');
  return packet;
}
