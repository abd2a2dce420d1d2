import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Packr } from 'msgpackr';
import { packWillEntry, unpackWillEntry, type WillEntry } from '../../../src/cluster/wire.js';

describe('a will as kept in Redis for the other nodes', () => {
  test('a connected client\'s 5.0 will comes back whole: properties, binary payload and its delay', () => {
    const entry: WillEntry = {
      username: 'meter',
      will: {
        topic: 'status/meter-7',
        payload: Buffer.from([0, 255, 1]),
        qos: 2,
        retain: true,
        properties: { willDelayInterval: 30, messageExpiryInterval: 600, contentType: 'application/octet-stream', correlationData: Buffer.from('c1'), userProperties: [['site', 'north']] },
      },
      due: { afterS: 30 },
    };
    assert.deepEqual(unpackWillEntry(packWillEntry(entry)), entry);
  });

  test('a will waiting out its delay keeps the instant it is due; one without properties or user name has none', () => {
    const entry: WillEntry = { username: undefined, will: { topic: 'a', payload: Buffer.alloc(0), qos: 0, retain: false }, due: { at: 1_764_561_600_123 } };
    const back = unpackWillEntry(packWillEntry(entry));
    assert.deepEqual(back, entry);
    assert.equal('properties' in back.will, false);
  });

  test('bytes that are not a will entry are refused, not misread', () => {
    const packr = new Packr({ useRecords: false, mapsAsObjects: true });
    assert.throws(() => unpackWillEntry(packr.pack(['M', null, Buffer.from('x'), 1])), /not a will entry/);
    assert.throws(() => unpackWillEntry(packr.pack({ topic: 't' })), /not a will entry/);
  });
});
