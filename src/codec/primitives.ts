import { Buffer, isUtf8 } from 'node:buffer';
import { ProtocolError } from './protocol-error.js';

export const MALFORMED = 0x81;
export const PROTOCOL_ERROR = 0x82;

export function malformed(message: string): ProtocolError {
  return new ProtocolError(MALFORMED, message);
}

/**
 * Reads the fields of one packet body, checking each against the specification as it goes.
 * Every read is bounds-checked: running past the end of the packet is a malformed packet.
 */
export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  byte(): number {
    if (this.pos >= this.end) throw malformed('packet ends too early');
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    if (this.pos + 2 > this.end) throw malformed('packet ends too early');
    const v = ((this.buf[this.pos] as number) << 8) | (this.buf[this.pos + 1] as number);
    this.pos += 2;
    return v;
  }

  u32(): number {
    if (this.pos + 4 > this.end) throw malformed('packet ends too early');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Variable Byte Integer: at most 4 bytes ([MQTT-1.5.5-1] in 5.0). */
  varint(): number {
    let value = 0;
    let mult = 1;
    for (let i = 0; i < 4; i++) {
      const b = this.byte();
      value += (b & 0x7f) * mult;
      if ((b & 0x80) === 0) {
        // the minimum number of bytes: a continuation into a zero byte is not minimal
        if (i > 0 && b === 0) throw malformed('variable byte integer is not minimally encoded');
        return value;
      }
      mult *= 128;
    }
    throw malformed('variable byte integer longer than 4 bytes');
  }

  binary(): Buffer {
    const len = this.u16();
    if (this.pos + len > this.end) throw malformed('length-prefixed field runs past the packet');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /**
   * A UTF-8 string field: well-formed UTF-8 and no U+0000 ([MQTT-1.5.3-1/2], [MQTT-1.5.4-1/2]).
   * `previous` is a string the field is often equal to (a publisher's topic, message after
   * message): when the bytes are that string's, it is returned instead of decoding another copy.
   * Only an all-ASCII `previous` can match, so that bytes of any other shape are always decoded
   * and checked.
   */
  utf8(previous = ''): string {
    const len = this.u16();
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw malformed('string runs past the packet');
    this.pos = end;
    if (len !== previous.length || len === 0) return decodeUtf8(this.buf, start, end);
    const buf = this.buf;
    for (let i = 0; i < len; i++) {
      const b = buf[start + i] as number;
      if (b !== previous.charCodeAt(i) || b >= 0x80) return decodeUtf8(buf, start, end);
    }
    return previous;
  }

  rest(): Buffer {
    const out = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return out;
  }
}

/** Decodes a string field, with a fast path for ASCII; throws on ill-formed UTF-8 or U+0000. */
export function decodeUtf8(buf: Buffer, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const c = buf[i] as number;
    if (c === 0) throw malformed('string contains U+0000');
    if (c >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return buf.toString('latin1', start, end);
  const view = buf.subarray(start, end);
  // isUtf8 rejects overlong forms, surrogates (U+D800..U+DFFF) and code points above U+10FFFF
  if (!isUtf8(view)) throw malformed('string is not well-formed UTF-8');
  if (view.indexOf(0) >= 0) throw malformed('string contains U+0000');
  return view.toString('utf8');
}

// ---- writing ---------------------------------------------------------------------------------

export function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

/** Writes what an encoder has measured; offsets move forward as fields are written. */
export class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  byte(v: number): void {
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.buf[this.pos++] = v >> 8;
    this.buf[this.pos++] = v & 0xff;
  }

  u32(v: number): void {
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
  }

  varint(n: number): void {
    do {
      let b = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      this.buf[this.pos++] = b;
    } while (n > 0);
  }

  /** A string whose UTF-8 byte length the caller measured. */
  utf8(s: string, byteLength: number): void {
    this.u16(byteLength);
    // A short ASCII string (its UTF-8 length is its length) is cheaper copied here than through a
    // call into the runtime's UTF-8 encoder: every outgoing PUBLISH writes its topic this way.
    if (byteLength === s.length && byteLength <= 64) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < byteLength; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
      return;
    }
    this.pos += this.buf.write(s, this.pos, byteLength, 'utf8');
  }

  binary(b: Buffer): void {
    this.u16(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  bytes(b: Buffer): void {
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
}

/** UTF-8 byte length, with the common ASCII case answered by length alone. */
export function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return s.length;
}
