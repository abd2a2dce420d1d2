import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { encodePacket, PacketParser, type Packet, type ProtocolVersion } from '../../../src/codec/index.js';
import { packetOf, VERSIONS } from '../../helpers/packet-arbitraries.js';
import { fromMqttPacket, normalize, toMqttPacket } from '../../helpers/packet-model.js';

const RUNS = 1500;

function decodeOurs(bytes: Buffer, version: ProtocolVersion): Packet {
  const parser = new PacketParser({ maxPacketSize: 268435460, protocolVersion: version });
  const out = parser.push(bytes);
  if (parser.error !== undefined) throw parser.error;
  assert.equal(out.length, 1);
  return out[0] as Packet;
}

function decodeTheirs(bytes: Buffer, version: ProtocolVersion): mqttPacket.Packet {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const out: mqttPacket.Packet[] = [];
  let error: Error | undefined;
  parser.on('packet', (p: mqttPacket.Packet) => out.push(p));
  parser.on('error', (e: Error) => (error = e));
  parser.parse(bytes);
  if (error !== undefined) throw error;
  assert.equal(out.length, 1);
  return out[0] as mqttPacket.Packet;
}

describe('codec: differential against mqtt-packet', () => {
  for (const version of VERSIONS) {
    test(`MQTT ${version === 3 ? '3.1' : version === 4 ? '3.1.1' : '5.0'}: encoded by Midge, decoded by mqtt-packet to the same packet`, () => {
      fc.assert(
        fc.property(packetOf(version), (packet) => {
          // mqtt-packet cannot read the 2-byte AUTH (code 0, no properties) the spec allows;
          // that form is checked on its own below
          fc.pre(!(packet.type === 'auth' && packet.reasonCode === 0 && packet.properties === undefined));
          const bytes = encodePacket(packet, version);
          const theirs = fromMqttPacket(decodeTheirs(bytes, version), version);
          assert.deepEqual(normalize(theirs, version), normalize(packet, version));
        }),
        { numRuns: RUNS },
      );
    });

    test(`MQTT ${version === 3 ? '3.1' : version === 4 ? '3.1.1' : '5.0'}: encoded by mqtt-packet, decoded by Midge to the same packet`, () => {
      fc.assert(
        fc.property(packetOf(version), (packet) => {
          const bytes = mqttPacket.generate(toMqttPacket(packet, version) as unknown as mqttPacket.Packet, { protocolVersion: version });
          const ours = decodeOurs(bytes, version);
          assert.deepEqual(normalize(ours, version), normalize(packet, version));
        }),
        { numRuns: RUNS },
      );
    });
  }

  test('an AUTH with reason 0 and no properties is encoded in its short form and read back', () => {
    const bytes = encodePacket({ type: 'auth', reasonCode: 0 }, 5);
    assert.equal(bytes.toString('hex'), 'f000');
    assert.deepEqual(decodeOurs(bytes, 5), { type: 'auth', reasonCode: 0 });
  });
});
