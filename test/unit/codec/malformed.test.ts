import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodePacket, PacketParser, ProtocolError, type ProtocolVersion } from '../../../src/codec/index.js';

/** Parses hex bytes; returns the error the parser settled on, or undefined. */
function errorOf(hex: string, version: ProtocolVersion, maxPacketSize = 1 << 20): ProtocolError | undefined {
  const parser = new PacketParser({ maxPacketSize, protocolVersion: version });
  parser.push(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
  if (parser.error !== undefined) assert.equal(parser.error.cause, undefined, `an unexpected exception: ${String(parser.error.cause)}`);
  return parser.error;
}

function rejects(hex: string, version: ProtocolVersion, reasonCode = 0x81): void {
  const err = errorOf(hex, version);
  assert.ok(err instanceof ProtocolError, `${hex} should be refused`);
  assert.equal(err.reasonCode, reasonCode, err.message);
}

function accepts(hex: string, version: ProtocolVersion): void {
  assert.equal(errorOf(hex, version)?.message, undefined);
}

// The topic "a" as a UTF-8 string: 0001 61
const CASES: Array<{ name: string; hex: string; versions: ProtocolVersion[]; code?: number }> = [
  { name: '[MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1) [MQTT-2.1.3-1] (5.0) PUBACK with a reserved flag bit set', hex: '41 02 0001', versions: [4, 5] },
  { name: '[MQTT-3.6.1-1] PUBREL with flags 0000', hex: '60 02 0001', versions: [4, 5] },
  { name: '[MQTT-3.8.1-1] SUBSCRIBE with flags 0000', hex: '80 06 0001 0001 61 00', versions: [4, 5] },
  { name: '[MQTT-3.10.1-1] UNSUBSCRIBE with flags 0000', hex: 'a0 05 0001 0001 61', versions: [4] },
  { name: '[MQTT-3.15.1-1] (5.0) AUTH with a reserved flag bit set', hex: 'f1 00', versions: [5] },
  { name: '[MQTT-3.3.1-4] (3.1.1) PUBLISH with QoS 3', hex: '36 05 0001 61 0001', versions: [4] },
  { name: '[MQTT-3.3.1-4] PUBLISH with QoS 3 (5.0)', hex: '36 06 0001 61 0001 00', versions: [5] },
  { name: '[MQTT-2.3.1-1] (3.1.1) PUBLISH QoS 1 with packet identifier 0', hex: '32 05 0001 61 0000', versions: [4] },
  { name: '[MQTT-2.3.1-1] (3.1.1) SUBSCRIBE with packet identifier 0', hex: '82 06 0000 0001 61 00', versions: [4] },
  { name: '[MQTT-2.3.1-1] (3.1.1) UNSUBSCRIBE with packet identifier 0', hex: 'a2 05 0000 0001 61', versions: [4] },
  { name: 'PUBLISH QoS 2 with packet identifier 0 (5.0)', hex: '34 06 0001 61 0000 00', versions: [5] },
  { name: '[MQTT-1.5.3-1] (3.1.1) [MQTT-1.5.4-1] (5.0) a topic with an overlong UTF-8 encoding', hex: '30 05 0002 c0 80 78', versions: [4] },
  { name: '[MQTT-1.5.3-1] (3.1.1) a topic with an encoded UTF-16 surrogate', hex: '30 06 0003 eda080 78', versions: [4] },
  { name: '[MQTT-1.5.4-1] (5.0) a topic with an encoded UTF-16 surrogate', hex: '30 07 0003 eda080 00 78', versions: [5] },
  { name: '[MQTT-1.5.3-1] (3.1.1) a topic with a truncated multi-byte sequence', hex: '30 04 0001 e2 78', versions: [4] },
  { name: '[MQTT-1.5.3-2] [MQTT-4.7.3-2] (3.1.1) a topic containing U+0000', hex: '30 06 0003 61 00 62 78', versions: [4] },
  { name: '[MQTT-1.5.4-2] [MQTT-4.7.3-2] (5.0) a topic containing U+0000', hex: '30 07 0003 61 00 62 00 78', versions: [5] },
  { name: '[MQTT-3.8.3-3] (3.1.1) SUBSCRIBE without a topic filter', hex: '82 02 0001', versions: [4], code: 0x82 },
  { name: '[MQTT-3.8.3-2] SUBSCRIBE without a topic filter (5.0)', hex: '82 03 0001 00', versions: [5], code: 0x82 },
  { name: '[MQTT-3.10.3-2] (3.1.1) UNSUBSCRIBE without a topic filter', hex: 'a2 02 0001', versions: [4], code: 0x82 },
  { name: '[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter (5.0)', hex: 'a2 03 0001 00', versions: [5], code: 0x82 },
  { name: '[MQTT-3.8.3-4] (3.1.1) SUBSCRIBE with reserved bits in the options byte', hex: '82 06 0001 0001 61 04', versions: [4] },
  { name: '[MQTT-3.8.3-5] (5.0) SUBSCRIBE with reserved bits in the options byte', hex: '82 07 0001 00 0001 61 c0', versions: [5] },
  { name: 'SUBSCRIBE with retain handling 3 (5.0)', hex: '82 07 0001 00 0001 61 30', versions: [5] },
  { name: '[MQTT-3.14.1-1] DISCONNECT with reserved flag bits', hex: 'e1 00', versions: [4, 5] },
  { name: 'a PUBLISH property repeated (5.0)', hex: '30 09 0001 61 04 0101 0101 78', versions: [5], code: 0x82 },
  { name: 'a property not allowed in PUBLISH (Session Expiry Interval) (5.0)', hex: '30 0a 0001 61 05 11 00000001 78', versions: [5] },
  { name: 'an unknown property identifier (5.0)', hex: '30 07 0001 61 02 7f00 78', versions: [5] },
  { name: 'Payload Format Indicator other than 0 or 1 (5.0)', hex: '30 07 0001 61 02 0102 78', versions: [5], code: 0x82 },
  { name: 'a property length beyond the packet (5.0)', hex: '30 05 0001 61 09 01', versions: [5] },
  { name: '[MQTT-1.5.5-1] (5.0) a property length not in its shortest form', hex: '30 07 0001 61 8000 78 78', versions: [5] },
  { name: 'PINGREQ with a body', hex: 'c0 01 00', versions: [4, 5] },
  { name: 'reserved packet type 0', hex: '00 00', versions: [4, 5] },
  { name: 'AUTH in MQTT 3.1.1', hex: 'f0 00', versions: [4] },
  { name: 'a string length beyond the packet', hex: '30 03 0009 61', versions: [4] },
  // MQTT 5.0 CONNECT rules: "10 LL 0004 MQTT 05 flags 003c 00 ..." (properties empty)
  { name: '[MQTT-3.1.2-11] will QoS set without the will flag (5.0)', hex: '10 0e 0004 4d515454 05 0a 003c 00 0001 61', versions: [5] },
  { name: '[MQTT-3.1.2-13] will retain set without the will flag (5.0)', hex: '10 0e 0004 4d515454 05 22 003c 00 0001 61', versions: [5] },
  { name: '[MQTT-3.1.2-12] will QoS 3 (5.0)', hex: '10 14 0004 4d515454 05 1e 003c 00 0001 61 00 0001 77 0000', versions: [5] },
  { name: '[MQTT-3.1.2-9] the will flag without will properties, topic and payload (5.0)', hex: '10 0e 0004 4d515454 05 06 003c 00 0001 61', versions: [5] },
  { name: '[MQTT-3.1.2-17] the user name flag without a user name (5.0)', hex: '10 0e 0004 4d515454 05 82 003c 00 0001 61', versions: [5] },
  { name: '[MQTT-3.1.2-19] the password flag without a password (5.0)', hex: '10 11 0004 4d515454 05 c2 003c 00 0001 61 0001 75', versions: [5] },
  { name: '[MQTT-3.1.2-16] [MQTT-3.1.2-18] a user name present without its flag (5.0)', hex: '10 11 0004 4d515454 05 02 003c 00 0001 61 0001 75', versions: [5] },
  { name: '[MQTT-3.1.3-1] [MQTT-3.1.3-3] a CONNECT without a client id (5.0)', hex: '10 0b 0004 4d515454 05 02 003c 00', versions: [5] },
  { name: '[MQTT-3.1.3-4] a client id that is not UTF-8 (5.0)', hex: '10 0e 0004 4d515454 05 02 003c 00 0001 ff', versions: [5] },
  { name: '[MQTT-3.1.3-11] a will topic that is not UTF-8 (5.0)', hex: '10 14 0004 4d515454 05 06 003c 00 0001 61 00 0001 ff 0000', versions: [5] },
  { name: '[MQTT-3.1.3-12] a user name that is not UTF-8 (5.0)', hex: '10 11 0004 4d515454 05 82 003c 00 0001 61 0001 ff', versions: [5] },
  { name: '[MQTT-1.5.7-1] a user property name that is not UTF-8 (5.0)', hex: '30 0c 0001 61 07 26 0001ff 000161 78', versions: [5] },
  { name: '[MQTT-3.3.2-19] a Content Type that is not UTF-8 (5.0)', hex: '30 09 0001 61 04 03 0001ff 78', versions: [5] },
  { name: '[MQTT-3.3.2-13] a Response Topic that is not UTF-8 (5.0)', hex: '30 09 0001 61 04 08 0001ff 78', versions: [5] },
  { name: '[MQTT-3.3.2-1] a topic name that is not UTF-8 (5.0)', hex: '30 05 0001 ff 00 78', versions: [5] },
  { name: '[MQTT-3.8.3-1] a topic filter that is not UTF-8 (5.0)', hex: '82 07 0001 00 0001 ff 00', versions: [5] },
  { name: '[MQTT-3.10.3-1] an UNSUBSCRIBE topic filter that is not UTF-8 (5.0)', hex: 'a2 06 0001 00 0001 ff', versions: [5] },
];

describe('codec: malformed packets are refused with a protocol error', () => {
  for (const c of CASES) {
    test(c.name, () => {
      for (const v of c.versions) rejects(c.hex, v, c.code ?? 0x81);
    });
  }

  test('[MQTT-1.5.3-3] (3.1.1) [MQTT-1.5.4-3] (5.0) U+FEFF (EF BB BF) in a topic is kept, not stripped', () => {
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    const [p] = parser.push(Buffer.from('3006 0004 efbbbf61 78'.replace(/ /g, ''), 'hex'));
    assert.equal(parser.error, undefined);
    assert.equal((p as { topic: string }).topic, '\ufeffa');
  });

  test('[MQTT-1.5.3-1] (3.1.1) a topic whose bytes are the last topic\'s characters is still checked as UTF-8', () => {
    // "\u00e9" decodes from C3 A9; a lone E9 byte is one char of the same code but not UTF-8
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    const [p] = parser.push(Buffer.from('30050002c3a978', 'hex'));
    assert.equal((p as { topic: string }).topic, '\u00e9');
    assert.deepEqual(parser.push(Buffer.from('30040001e978', 'hex')), []);
    assert.equal(parser.error?.reasonCode, 0x81);
  });

  test('property: a connection\'s topics decode the same whether or not they repeat the last one', () => {
    const topics = fc.constantFrom('a/b', 'a/c', 'b/b', 'a/bc', '\u00e9/b', 'x\u00e9/', 'a/\u00e9', 'caf\u00e9', '\u6771/b');
    fc.assert(
      fc.property(fc.array(topics, { minLength: 1, maxLength: 20 }), fc.constantFrom<ProtocolVersion>(4, 5), (list, version) => {
        const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: version });
        const bytes = Buffer.concat(list.map((topic) => encodePacket({ type: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, version)));
        const got = parser.push(bytes).map((p) => (p as { topic: string }).topic);
        assert.equal(parser.error, undefined);
        assert.deepEqual(got, list);
      }),
      { numRuns: 300 },
    );
  });

  test('a remaining length of more than 4 bytes is malformed', () => {
    rejects('30 ff ff ff ff 01', 4);
  });

  test('a packet that claims 256 MB is refused from its fixed header (0x95), before any body arrives', () => {
    const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: 5 });
    parser.push(Buffer.from('30ffffff7f', 'hex'));
    assert.equal(parser.error?.reasonCode, 0x95);
  });

  test('a packet one byte over the maximum packet size is refused; one at the limit is read', () => {
    // PUBLISH "a" with a payload: 2 + 3 + n bytes in all
    const frame = (n: number): Buffer => Buffer.concat([Buffer.from([0x30, 3 + n, 0, 1, 0x61]), Buffer.alloc(n, 0x78)]);
    const ok = new PacketParser({ maxPacketSize: 20, protocolVersion: 4 });
    assert.equal(ok.push(frame(15)).length, 1);
    assert.equal(ok.error, undefined);
    const over = new PacketParser({ maxPacketSize: 20, protocolVersion: 4 });
    over.push(frame(16));
    assert.equal(over.error?.reasonCode, 0x95);
  });

  test('valid edge cases are accepted: empty payload, QoS 0 without id, 4-byte remaining length', () => {
    accepts('30 03 0001 61', 4);
    accepts('30 04 0001 61 00', 5);
    const big = 2_100_000;
    const len = big + 3;
    const header = Buffer.from([0x30, 0x80 | (len & 0x7f), 0x80 | ((len >> 7) & 0x7f), 0x80 | ((len >> 14) & 0x7f), (len >> 21) & 0x7f]);
    const parser = new PacketParser({ maxPacketSize: 4_000_000, protocolVersion: 4 });
    const out = parser.push(Buffer.concat([header, Buffer.from([0, 1, 0x61]), Buffer.alloc(big)]));
    assert.equal(parser.error, undefined);
    assert.equal(out.length, 1);
  });

  test('after an error the parser yields nothing more', () => {
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    parser.push(Buffer.from('41020001', 'hex'));
    assert.ok(parser.error);
    assert.deepEqual(parser.push(Buffer.from('c000', 'hex')), []);
  });
});
