import { Buffer } from 'node:buffer';
/**
 * PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy, AWS NLB and others in
 * front of a broker: they carry the real client address. Spec: haproxy.org/download/2.9/doc/proxy-protocol.txt
 */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

export type ProxyHeader =
  /** consumed bytes; address undefined for LOCAL / UNKNOWN (health checks from the proxy itself) */
  | { readonly consumed: number; readonly address: string | undefined }
  | 'incomplete';

/** Parses a header at the start of `buf`; throws on anything that is not a valid header. */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  if (buf.length === 0) return 'incomplete';
  if (buf[0] === 0x0d) return parseV2(buf);
  if (buf[0] === 0x50 /* P */) return parseV1(buf);
  throw new Error('connection did not start with a PROXY protocol header');
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw new Error('PROXY v1 header too long');
    if (!Buffer.from('PROXY ').subarray(0, Math.min(6, buf.length)).equals(buf.subarray(0, Math.min(6, buf.length)))) {
      throw new Error('connection did not start with a PROXY protocol header');
    }
    return 'incomplete';
  }
  const parts = buf.toString('latin1', 0, end).split(' ');
  if (parts[0] !== 'PROXY') throw new Error('connection did not start with a PROXY protocol header');
  if (parts[1] === 'UNKNOWN') return { consumed: end + 2, address: undefined };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) throw new Error('malformed PROXY v1 header');
  const port = Number(parts[4]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('malformed PROXY v1 header');
  return { consumed: end + 2, address: `${parts[2]}:${port}` };
}

function parseV2(buf: Buffer): ProxyHeader {
  if (buf.length < 16) {
    if (!V2_SIGNATURE.subarray(0, Math.min(12, buf.length)).equals(buf.subarray(0, Math.min(12, buf.length)))) {
      throw new Error('connection did not start with a PROXY protocol header');
    }
    return 'incomplete';
  }
  if (!buf.subarray(0, 12).equals(V2_SIGNATURE)) throw new Error('connection did not start with a PROXY protocol header');
  const versionCommand = buf[12] as number;
  if (versionCommand >> 4 !== 2) throw new Error('unsupported PROXY protocol version');
  const length = buf.readUInt16BE(14);
  const total = 16 + length;
  if (buf.length < total) return 'incomplete';
  const command = versionCommand & 0x0f;
  if (command === 0x0) return { consumed: total, address: undefined }; // LOCAL
  if (command !== 0x1) throw new Error('unknown PROXY v2 command');
  const family = (buf[13] as number) >> 4;
  if (family === 0x1 && length >= 12) {
    const ip = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
    return { consumed: total, address: `${ip}:${buf.readUInt16BE(24)}` };
  }
  if (family === 0x2 && length >= 36) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
    return { consumed: total, address: `[${groups.join(':')}]:${buf.readUInt16BE(48)}` };
  }
  return { consumed: total, address: undefined };
}
