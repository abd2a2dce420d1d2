import type { Buffer } from 'node:buffer';

/** Told of each complete frame: where it starts (its first byte), where its body starts, where it ends. */
export type FrameVisitor = (start: number, body: number, end: number) => void;

/**
 * Walks the complete MQTT frames in `buf` without decoding them, for the load generator and the
 * programs it is measured against, which look at a few bytes of each frame and nothing more.
 * Returns where the first incomplete frame starts (`buf.length` when every frame was complete).
 */
export function scanFrames(buf: Buffer, visit: FrameVisitor): number {
  const len = buf.length;
  let pos = 0;
  while (pos + 2 <= len) {
    let remaining = 0;
    let mult = 1;
    let i = pos + 1;
    let complete = false;
    for (let k = 0; k < 4 && i < len; k++, i++) {
      const b = buf[i] as number;
      remaining += (b & 0x7f) * mult;
      mult *= 128;
      if ((b & 0x80) === 0) {
        complete = true;
        i++;
        break;
      }
    }
    if (!complete || i + remaining > len) break;
    visit(pos, i, i + remaining);
    pos = i + remaining;
  }
  return pos;
}
