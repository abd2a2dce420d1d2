import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodePacket, PacketParser, type Packet } from '../../../src/codec/index.js';

function frames(...topics: string[]): Buffer {
  return Buffer.concat(topics.map((topic) => encodePacket({ type: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 4)));
}

describe('codec: packets handed over as they are decoded', () => {
  test('each packet of a read reaches the sink in order, before the next one is decoded', () => {
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    const seen: string[] = [];
    // the third frame is malformed (a remaining length of five bytes): the first two are handled before it is read
    const bad = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    parser.feed(Buffer.concat([frames('a', 'b'), bad]), {
      packet(p: Packet) {
        seen.push((p as { topic: string }).topic);
        assert.equal(parser.error, undefined, 'a packet is handled before anything after it is decoded');
      },
    });
    assert.deepEqual(seen, ['a', 'b']);
    assert.equal(parser.error?.reasonCode, 0x81);
  });

  test('a sink that answers true stops the read: what follows is neither handed over nor kept', () => {
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    const seen: string[] = [];
    const chunk = frames('a', 'b', 'c');
    // and a partial fourth frame, which must not be held for a next read
    const tail = frames('d').subarray(0, 3);
    parser.feed(Buffer.concat([chunk, tail]), {
      packet(p: Packet) {
        seen.push((p as { topic: string }).topic);
        return seen.length === 2;
      },
    });
    assert.deepEqual(seen, ['a', 'b']);
    assert.equal(parser.error, undefined);
    // nothing of the stopped read is left: the next read starts at a frame of its own
    assert.deepEqual(
      parser.push(frames('e')).map((p) => (p as { topic: string }).topic),
      ['e'],
    );
  });

  test('a fault of the sink is the caller\'s to handle, not a malformed packet', () => {
    const parser = new PacketParser({ maxPacketSize: 1024, protocolVersion: 4 });
    const fault = new Error('handler fault');
    assert.throws(
      () =>
        parser.feed(frames('a', 'b'), {
          packet() {
            throw fault;
          },
        }),
      (err) => err === fault,
    );
    assert.equal(parser.error, undefined, 'the bytes were well formed');
  });
});
