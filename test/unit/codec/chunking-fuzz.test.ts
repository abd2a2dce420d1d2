import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodePacket, PacketParser, type Packet, type ProtocolVersion } from '../../../src/codec/index.js';
import { packetOf, VERSIONS } from '../../helpers/packet-arbitraries.js';
import { normalize } from '../../helpers/packet-model.js';

/** Fuzz cases per run; CI runs the full count. */
const FUZZ_CASES = 100_000;
const MAX_PACKET = 4096;

/** Feeds `bytes` in the given chunk sizes; returns packets and the error, checking the invariants. */
function feed(parser: PacketParser, bytes: Buffer, cuts: number[]): Packet[] {
  const out: Packet[] = [];
  let pos = 0;
  for (const cut of [...cuts, bytes.length]) {
    const end = Math.min(bytes.length, Math.max(pos, cut));
    out.push(...parser.push(bytes.subarray(pos, end)));
    pos = end;
    const pending = (parser as unknown as { pendingLength: number }).pendingLength;
    assert.ok(pending <= MAX_PACKET + 5, `buffered ${pending} bytes, over the maximum packet size`);
  }
  if (parser.error !== undefined) {
    assert.equal(parser.error.cause, undefined, `an unexpected exception inside the parser: ${String(parser.error.cause)}`);
    assert.ok(parser.error.reasonCode >= 0x80, 'an error reason code');
  }
  return out;
}

describe('codec: chunk boundaries and fuzzing', () => {
  for (const version of VERSIONS) {
    test(`MQTT ${version}: a stream of packets split at arbitrary points parses to the same packets`, () => {
      fc.assert(
        fc.property(
          fc.array(packetOf(version), { minLength: 1, maxLength: 6 }),
          fc.array(fc.nat(), { maxLength: 12 }),
          (packets, rawCuts) => {
            const bytes = Buffer.concat(packets.map((p) => encodePacket(p, version)));
            const cuts = rawCuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b);
            const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: version });
            const out = feed(parser, bytes, cuts);
            assert.equal(parser.error, undefined);
            assert.deepEqual(out.map((p) => normalize(p, version)), packets.map((p) => normalize(p, version)));
          },
        ),
        { numRuns: 300 },
      );
    });

    test(`MQTT ${version}: one byte at a time`, () => {
      fc.assert(
        fc.property(packetOf(version), (packet) => {
          const bytes = encodePacket(packet, version);
          const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: version });
          const out = feed(parser, bytes, Array.from({ length: bytes.length }, (_, i) => i));
          assert.deepEqual(out.map((p) => normalize(p, version)), [normalize(packet, version)]);
        }),
        { numRuns: 200 },
      );
    });
  }

  test(`fuzz: ${FUZZ_CASES} random and mutated inputs give packets or a protocol error, never an exception, and buffer at most one packet`, () => {
    const mutated = fc
      .tuple(
        fc.constantFrom<ProtocolVersion>(3, 4, 5),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 }),
        fc.nat(),
      )
      .chain(([version, edits, cut]) => packetOf(version).map((p) => {
        const bytes = [...encodePacket(p, version)];
        for (const [at, value, kind] of edits) {
          const i = at % (bytes.length + 1);
          if (kind === 'set' && i < bytes.length) bytes[i] = value;
          else if (kind === 'insert') bytes.splice(i, 0, value);
          else if (kind === 'delete' && bytes.length > 0) bytes.splice(i % bytes.length, 1);
        }
        return { version, bytes: Buffer.from(bytes), cuts: [cut % (bytes.length + 1)] };
      }));
    const random = fc.tuple(fc.constantFrom<ProtocolVersion>(3, 4, 5), fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(64), { maxLength: 3 })).map(
      ([version, bytes, cuts]) => ({ version, bytes: Buffer.from(bytes), cuts: cuts.sort((a, b) => a - b) }),
    );
    // a CONNECT first makes the parser read the rest as a server would
    const afterConnect = fc.tuple(fc.uint8Array({ maxLength: 48 })).map(([tail]) => ({
      version: 4 as ProtocolVersion,
      bytes: Buffer.concat([encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: 'f' }, 5), Buffer.from(tail)]),
      cuts: [],
    }));
    fc.assert(
      fc.property(fc.oneof(mutated, random, afterConnect), ({ version, bytes, cuts }) => {
        const parser = new PacketParser({ maxPacketSize: MAX_PACKET, protocolVersion: version });
        feed(parser, bytes, cuts);
      }),
      { numRuns: FUZZ_CASES },
    );
  });

  test('fuzz: a long random stream never makes the parser hold more than one maximum packet', () => {
    let seed = 12345;
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    let parser = new PacketParser({ maxPacketSize: MAX_PACKET, protocolVersion: 5 });
    for (let i = 0; i < 20_000; i++) {
      const chunk = Buffer.alloc(1 + (next() % 300));
      for (let j = 0; j < chunk.length; j++) chunk[j] = next() & 0xff;
      feed(parser, chunk, []);
      if (parser.error !== undefined) parser = new PacketParser({ maxPacketSize: MAX_PACKET, protocolVersion: 5 });
    }
  });
});
