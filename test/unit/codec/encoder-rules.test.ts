import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodePacket } from '../../../src/codec/index.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('codec: what the encoder writes', () => {
  test('[MQTT-2.2.1-2] (5.0) [MQTT-2.3.1-5] (3.1.1) a QoS 0 PUBLISH has no packet identifier', () => {
    for (const v of [4, 5] as const) {
      const bytes = encodePacket({ type: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, packetId: 7 }, v);
      assert.equal(hex(bytes), v === 5 ? '30050001610078' : '3004000161' + '78');
    }
  });

  test('[MQTT-3.3.1-2] [MQTT-4.3.1-1] (5.0) [MQTT-4.3.1-1] (3.1.1) the DUP flag is 0 on every QoS 0 PUBLISH', () => {
    const bytes = encodePacket({ type: 'publish', topic: 'a', payload: Buffer.alloc(0), qos: 0, retain: false, dup: true }, 5);
    assert.equal((bytes[0] as number) & 0x08, 0);
  });

  test('[MQTT-2.2.2-1] (5.0) a packet without properties carries a Property Length of 0', () => {
    assert.equal(hex(encodePacket({ type: 'suback', packetId: 1, reasonCodes: [0] }, 5)), '900400010000');
    assert.equal(hex(encodePacket({ type: 'publish', topic: 'a', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, packetId: 2 }, 5)), '3206000161000200');
  });

  test('[MQTT-3.2.2-1] (5.0) the CONNACK flags byte has only the Session Present bit', () => {
    for (const sp of [true, false]) {
      const bytes = encodePacket({ type: 'connack', sessionPresent: sp, reasonCode: 0 }, 5);
      assert.equal(bytes[2], sp ? 1 : 0);
    }
  });
});
