import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodePacket, PacketParser, type Packet, type PublishPacket } from '../../../src/codec/index.js';

/** Buffer objects the parser keeps, and the bytes of the memory behind them (a view pins all of it). */
function retained(parser: PacketParser): { buffers: number; bytes: number } {
  const backing = new Set<ArrayBufferLike>();
  let buffers = 0;
  const visit = (v: unknown): void => {
    if (Buffer.isBuffer(v)) {
      buffers++;
      backing.add(v.buffer);
    } else if (Array.isArray(v)) {
      for (const x of v) visit(x);
    }
  };
  for (const v of Object.values(parser)) visit(v);
  let bytes = 0;
  for (const b of backing) bytes += b.byteLength;
  return { buffers, bytes };
}

function publish(topic: string, size: number): Buffer {
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = i % 251;
  return encodePacket({ type: 'publish', topic, payload, qos: 0, retain: false, dup: false }, 4);
}

describe('codec: a frame that arrives in many reads', () => {
  test('a large PUBLISH sent one byte per read is held in memory proportional to what has arrived', () => {
    const frame = publish('t/big', 256 * 1024);
    const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: 4 });
    const out: Packet[] = [];
    for (let i = 0; i < frame.length; i++) {
      // a read of one byte, carved from Buffer's pool as the transport's reads are
      const chunk = Buffer.allocUnsafe(1);
      chunk[0] = frame[i] as number;
      out.push(...parser.push(chunk));
      if (i % 997 === 0 || i === frame.length - 2) {
        const r = retained(parser);
        assert.ok(r.buffers <= 2, `after ${i + 1} bytes the parser keeps ${r.buffers} buffers`);
        // the first read may pin one pool slab; after that at most a few times what has arrived
        const bound = 4 * (i + 1) + Buffer.poolSize + 1024;
        assert.ok(r.bytes <= bound, `after ${i + 1} bytes the parser holds ${r.bytes} bytes (bound ${bound})`);
      }
    }
    assert.equal(parser.error, undefined);
    assert.equal(out.length, 1);
    const p = out[0] as PublishPacket;
    assert.equal(p.topic, 't/big');
    assert.ok(p.payload.equals(frame.subarray(frame.length - 256 * 1024)));
    assert.deepEqual(retained(parser), { buffers: 0, bytes: 0 });
  });

  test('a claimed size alone does not make the parser allocate it', () => {
    const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: 4 });
    // a PUBLISH claiming 1,032,192 bytes, then a few bytes of it in separate reads
    parser.push(Buffer.from([0x30, 0x80, 0x80, 0x3f]));
    for (let i = 0; i < 8; i++) parser.push(Buffer.from([0, 1, 0x74]));
    assert.equal(parser.error, undefined);
    assert.ok(retained(parser).bytes < 16 * 1024, `holds ${retained(parser).bytes} bytes`);
  });

  test('frames split across many reads, with the next frames in the read that completes them, all parse', () => {
    const frames = [publish('a', 5000), publish('b/c', 10), publish('d', 70000), publish('e', 0)];
    const stream = Buffer.concat(frames);
    for (const step of [1, 7, 300, 4096, 65536]) {
      const parser = new PacketParser({ maxPacketSize: 1 << 20, protocolVersion: 4 });
      const out: Packet[] = [];
      for (let pos = 0; pos < stream.length; pos += step) out.push(...parser.push(Buffer.from(stream.subarray(pos, pos + step))));
      assert.equal(parser.error, undefined, `step ${step}`);
      assert.deepEqual(
        out.map((p) => [(p as PublishPacket).topic, (p as PublishPacket).payload.length]),
        [['a', 5000], ['b/c', 10], ['d', 70000], ['e', 0]],
        `step ${step}`,
      );
      assert.ok((out[2] as PublishPacket).payload.equals(frames[2]!.subarray(frames[2]!.length - 70000)), `step ${step}`);
    }
  });
});
