import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { scanFrames } from '../../../src/bench/frame-scan.js';

function frames(buf: Buffer): { seen: Array<[number, number, number]>; rest: number } {
  const seen: Array<[number, number, number]> = [];
  const rest = scanFrames(buf, (start, body, end) => seen.push([start, body, end]));
  return { seen, rest };
}

describe('bench frame scan', () => {
  const puback = Buffer.from([0x40, 2, 0, 1]);
  // a PUBLISH whose remaining length (200) takes two bytes
  const big = Buffer.concat([Buffer.from([0x30, 0xc8, 0x01]), Buffer.alloc(200, 7)]);

  test('finds every whole frame with where its body starts and where it ends', () => {
    const { seen, rest } = frames(Buffer.concat([puback, big, Buffer.from([0xc0, 0])]));
    assert.deepEqual(seen, [
      [0, 2, 4],
      [4, 7, 207],
      [207, 209, 209],
    ]);
    assert.equal(rest, 209);
  });

  test('stops before a frame cut anywhere, header or body, and says where it starts', () => {
    const whole = Buffer.concat([puback, big]);
    for (let cut = puback.length + 1; cut < whole.length; cut++) {
      const { seen, rest } = frames(whole.subarray(0, cut));
      assert.deepEqual(seen, [[0, 2, 4]], `cut at ${cut}`);
      assert.equal(rest, 4, `cut at ${cut}`);
    }
    assert.deepEqual(frames(whole.subarray(0, 3)), { seen: [], rest: 0 });
  });
});
