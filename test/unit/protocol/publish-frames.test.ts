import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodePacket } from '../../../src/codec/encoder.js';
import { encodePublishFrame, frameBytes, type PublishFrame } from '../../../src/codec/publish-frame.js';
import type { ProtocolVersion, QoS } from '../../../src/codec/packets.js';
import { frameFor } from '../../../src/protocol/frame-cache.js';
import { createMessage, type Clock } from '../../../src/session/message.js';

/** A clock stopped at `ms`. */
const at = (ms: number): Clock => ({ now: () => ms });

describe('outgoing PUBLISH frames', () => {
  /** The packet as one delivery of the frame writes it. */
  const written = (frame: PublishFrame, packetId: number, dup: boolean): Buffer => {
    const bytes = frameBytes(frame, packetId, dup);
    return frame.inline ? bytes : Buffer.concat([bytes, frame.payload]);
  };

  test('property: every delivery of a frame (one buffer for small payloads, head + payload for large ones) carries the bytes the encoder writes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ProtocolVersion>(3, 4, 5),
        fc.constantFrom<QoS>(0, 1, 2),
        fc.boolean(),
        fc.array(fc.record({ packetId: fc.integer({ min: 1, max: 65535 }), dup: fc.boolean() }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(0, 1, 16, 1023, 1024, 1025, 4000),
        fc.string({ minLength: 1, maxLength: 40 }).filter((t) => !t.includes('+') && !t.includes('#') && !t.includes('\u0000')),
        (version, qos, retain, sends, size, topic) => {
          const payload = Buffer.alloc(size, 0x5a);
          const frame = encodePublishFrame(topic, payload, qos, retain, version);
          assert.equal(frame.inline, size <= 1024);
          const expected = (packetId: number, dup: boolean): Buffer =>
            encodePacket({ type: 'publish', topic, payload, qos, retain, dup: qos > 0 && dup, ...(qos > 0 ? { packetId } : {}) }, version);
          assert.equal(frame.size, expected(1, false).length);
          if (qos === 0) {
            assert.deepEqual(written(frame, 0, false), expected(0, false));
            assert.equal(frameBytes(frame, 0, false), frameBytes(frame, 0, false), 'built once, shared by every subscriber');
            return;
          }
          // what a send wrote must stay as it was while later sends of the same frame are made
          const out = sends.map(({ packetId, dup }) => {
            const bytes = frameBytes(frame, packetId, dup);
            return { bytes, copy: Buffer.from(bytes), packetId, dup };
          });
          for (const { bytes, copy, packetId, dup } of out) {
            assert.deepEqual(bytes, copy, 'a later send changed bytes already handed out');
            assert.deepEqual(frame.inline ? bytes : Buffer.concat([bytes, payload]), expected(packetId, dup));
          }
          assert.equal(new Set(out.map((o) => o.bytes)).size, out.length, 'each send has its own bytes');
          assert.equal(out[0]?.bytes === frame.bytes, !sends[0]?.dup, 'the first send (not a resend) takes the frame\'s own bytes');
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a message keeps its first shape in one slot and further shapes apart; 5.0 frames follow the remaining expiry', () => {
    const m = createMessage('a/b', Buffer.from('hi'), 1, false, { messageExpiryInterval: 60 }, at(0), undefined);
    const v4q1 = frameFor(m, 4, 1, false, undefined, at(0));
    assert.equal(frameFor(m, 4, 1, false, undefined, at(0)), v4q1);
    assert.equal(m.frames, undefined, 'one shape needs no array');
    const v4q0 = frameFor(m, 4, 0, false, undefined, at(0));
    assert.notEqual(v4q0, v4q1);
    assert.equal(frameFor(m, 4, 0, false, undefined, at(0)), v4q0);
    const v5 = frameFor(m, 5, 1, false, undefined, at(0));
    assert.equal(frameFor(m, 5, 1, false, undefined, at(500)), v5, 'still 60 s left');
    const later = frameFor(m, 5, 1, false, undefined, at(30_000));
    assert.notEqual(later, v5, '[MQTT-3.3.2-6] (5.0) the expiry sent on is what is left of it');
    assert.deepEqual(later.bytes, encodePublishFrame('a/b', Buffer.from('hi'), 1, false, 5, { messageExpiryInterval: 30 }).bytes);
    assert.equal(frameFor(m, 4, 1, false, undefined, at(30_000)), v4q1, '3.1.1 frames carry no expiry and stay');
  });
});
