import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WriteBatcher } from '../../../src/transport/write-batcher.js';

/**
 * A writable that records each call that reached it (one entry per syscall a socket would make)
 * and every byte, in the order they arrived.
 */
function recorder(): { stream: Writable; calls: number[]; bytes: number[] } {
  const calls: number[] = [];
  const bytes: number[] = [];
  const stream = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      calls.push(chunk.length);
      bytes.push(...chunk);
      cb();
    },
    writev(chunks, cb) {
      calls.push(chunks.reduce((n, c) => n + (c.chunk as Buffer).length, 0));
      for (const c of chunks) bytes.push(...(c.chunk as Buffer));
      cb();
    },
  });
  return { stream, calls, bytes };
}

/** Writes to `count` new streams, every other one as a reply to its own input; weak references to them. */
function writeToMany(batcher: WriteBatcher, count: number): WeakRef<Writable>[] {
  const refs: WeakRef<Writable>[] = [];
  for (let i = 0; i < count; i++) {
    const { stream } = recorder();
    refs.push(new WeakRef(stream));
    if (i % 2 === 0) batcher.chunkStart(stream);
    write(batcher, stream, 10);
    batcher.chunkDone();
  }
  return refs;
}

function write(batcher: WriteBatcher, stream: Writable, bytes: number): void {
  batcher.write(stream, Buffer.alloc(bytes));
}

describe('write batcher', () => {
  test('what several chunks of input send to one socket in a turn leaves in one write at the end of the turn', async () => {
    const batcher = new WriteBatcher();
    const sub = recorder();
    for (let chunk = 0; chunk < 10; chunk++) {
      write(batcher, sub.stream, 70);
      batcher.chunkDone();
    }
    assert.deepEqual(sub.calls, [], 'nothing leaves before the turn ends');
    await nextTurn();
    assert.deepEqual(sub.calls, [700]);
  });

  test('a reply to the socket whose input is being handled waits one turn more; a delivery leaves at the end of this one', async () => {
    const batcher = new WriteBatcher();
    const publisher = recorder();
    const subscriber = recorder();
    batcher.chunkStart(publisher.stream);
    write(batcher, subscriber.stream, 30); // the message, to its subscriber
    write(batcher, publisher.stream, 4); // PUBACK to its sender
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(subscriber.calls, [30]);
    assert.deepEqual(publisher.calls, [], 'the acknowledgement waits a turn');
    await nextTurn();
    assert.deepEqual(publisher.calls, [4], 'and leaves after it with no further input');
    await nextTurn();
    assert.deepEqual(publisher.calls, [4], 'once');
  });

  test('replies held a turn leave with the next turn\'s replies to the same socket, in one write and in order', async () => {
    const batcher = new WriteBatcher();
    const publisher = recorder();
    const client = recorder();
    batcher.chunkStart(client.stream);
    batcher.write(client.stream, Buffer.from([1]));
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(client.calls, []);
    batcher.chunkStart(client.stream);
    batcher.write(client.stream, Buffer.from([2]));
    batcher.chunkDone();
    batcher.chunkStart(publisher.stream);
    write(batcher, publisher.stream, 4);
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(client.calls, [2], 'one write');
    assert.deepEqual(client.bytes, [1, 2], 'the second reply goes with the first: nothing is reordered');
    assert.deepEqual(publisher.calls, [], 'another socket\'s fresh reply still waits its turn');
    await nextTurn();
    assert.deepEqual(publisher.calls, [4]);
  });

  test('a turn\'s deliveries are written before the replies held from the turn before', async () => {
    const batcher = new WriteBatcher();
    const order: string[] = [];
    const named = (name: string): Writable =>
      new Writable({
        write(_chunk, _enc, cb) {
          order.push(name);
          cb();
        },
      });
    const [first, second, subscriber] = [named('first publisher'), named('second publisher'), named('subscriber')];
    // a burst read over two turns: the first publisher's message, then the second's
    batcher.chunkStart(first);
    write(batcher, subscriber, 30);
    write(batcher, first, 4);
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(order, ['subscriber']);
    batcher.chunkStart(second);
    write(batcher, subscriber, 30);
    write(batcher, second, 4);
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(order, ['subscriber', 'subscriber', 'first publisher'], 'the second message goes out ahead of the first PUBACK');
    await nextTurn();
    assert.deepEqual(order, ['subscriber', 'subscriber', 'first publisher', 'second publisher']);
  });

  test('a delivery to a socket that holds a reply takes the reply with it at the end of the turn', async () => {
    const batcher = new WriteBatcher();
    const client = recorder();
    const other = recorder();
    batcher.chunkStart(client.stream);
    write(batcher, client.stream, 4); // its PUBACK
    batcher.chunkDone();
    batcher.chunkStart(other.stream);
    write(batcher, client.stream, 50); // another client's message to it
    batcher.chunkDone();
    await nextTurn();
    assert.deepEqual(client.calls, [54]);
  });

  test('a reply written outside any chunk of its socket\'s input (after a store commit) is not held', async () => {
    const batcher = new WriteBatcher();
    const client = recorder();
    write(batcher, client.stream, 4);
    await nextTurn();
    assert.deepEqual(client.calls, [4]);
  });

  test('a socket holding a full write (16 KB) is written at once, without waiting for the turn to end', () => {
    const batcher = new WriteBatcher();
    const sub = recorder();
    write(batcher, sub.stream, 10_000);
    assert.deepEqual(sub.calls, []);
    write(batcher, sub.stream, 7_000);
    assert.deepEqual(sub.calls, [17_000]);
  });

  test('once 32 sockets hold output, everything leaves when the chunk of input is done', async () => {
    const batcher = new WriteBatcher();
    const few = Array.from({ length: 31 }, recorder);
    for (const r of few) write(batcher, r.stream, 4);
    batcher.chunkDone();
    assert.ok(few.every((r) => r.calls.length === 0), '31 corked sockets wait for the end of the turn');
    const last = recorder();
    write(batcher, last.stream, 4);
    batcher.chunkDone();
    assert.ok([...few, last].every((r) => r.calls.length === 1 && r.calls[0] === 4));
    await nextTurn();
    assert.ok([...few, last].every((r) => r.calls.length === 1), 'nothing is written twice');
  });

  test('writes after a flush in the same turn are held again and leave at the end of the turn, in order', async () => {
    const batcher = new WriteBatcher();
    const sub = recorder();
    write(batcher, sub.stream, 16_384);
    write(batcher, sub.stream, 10);
    write(batcher, sub.stream, 20);
    assert.deepEqual(sub.calls, [16_384]);
    await nextTurn();
    assert.deepEqual(sub.calls, [16_384, 30]);
  });

  test('release() writes what a socket holds at once, so that ending it right after loses nothing', async () => {
    const batcher = new WriteBatcher();
    const sub = recorder();
    write(batcher, sub.stream, 5);
    write(batcher, sub.stream, 7);
    batcher.release(sub.stream);
    sub.stream.end();
    assert.deepEqual(sub.calls, [12]);
    await nextTurn();
    assert.deepEqual(sub.calls, [12], 'the end of the turn has nothing left to write');
  });

  test('a large payload is handed to the socket as it is, not copied into one buffer with its header', () => {
    const batcher = new WriteBatcher();
    const seen: Buffer[] = [];
    const stream = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _enc, cb) {
        seen.push(chunk);
        cb();
      },
      writev(chunks, cb) {
        for (const c of chunks) seen.push(c.chunk as Buffer);
        cb();
      },
    });
    const head = Buffer.alloc(5);
    const payload = Buffer.alloc(100_000);
    batcher.write(stream, head);
    batcher.write(stream, payload);
    assert.equal(seen.length, 2);
    assert.ok(seen[1] === payload, 'the payload was copied');
  });

  test('the batcher keeps no socket once its output is written: a closed connection can be collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const batcher = new WriteBatcher();
    // deliveries (written at the end of the turn) and replies (held one turn more) alike; made in
    // a function of their own, so that no variable of this one still holds the last of them
    const refs = writeToMany(batcher, 40);
    await nextTurn();
    await nextTurn();
    await nextTurn();
    gc();
    await nextTurn();
    gc();
    assert.deepEqual(refs.flatMap((r, i) => (r.deref() !== undefined ? [i] : [])), []);
  });

  test('a write that re-enters the batcher (an in-process peer answering at once) leaves no socket\'s output behind', async () => {
    const batcher = new WriteBatcher();
    type Fake = Writable & { out: number };
    const fake = (onWrite?: () => void): Fake => {
      const s = { out: 0, write: () => ((s.out++, onWrite?.()), true), cork() {}, uncork() {} };
      return s as unknown as Fake;
    };
    const others = Array.from({ length: 40 }, () => fake());
    const more = Array.from({ length: 5 }, () => fake());
    let nested = false;
    // its write brings a read whose handling writes to 40 sockets (a flush), then another read
    const trigger = fake(() => {
      if (nested) return;
      nested = true;
      batcher.chunkStart(trigger);
      for (const o of others) batcher.write(o, Buffer.from('n'));
      batcher.chunkDone();
      batcher.chunkStart(trigger);
      for (const m of more) batcher.write(m, Buffer.from('m'));
      batcher.chunkDone();
    });
    const first = Array.from({ length: 40 }, () => fake());
    batcher.chunkStart(fake());
    batcher.write(trigger, Buffer.from('t'));
    for (const f of first) batcher.write(f, Buffer.from('f'));
    batcher.chunkDone();
    await nextTurn();
    await nextTurn();
    assert.deepEqual(first.map((f) => f.out), first.map(() => 1), 'every socket of the first turn written once');
    assert.deepEqual(others.map((o) => o.out), others.map(() => 1), 'every socket of the nested read written once');
    assert.deepEqual(more.map((o) => o.out), more.map(() => 1), 'every socket of the second nested read written once');
    // and the batcher still works: a later write leaves
    batcher.write(first[0] as Fake, Buffer.from('later'));
    await nextTurn();
    assert.equal((first[0] as Fake).out, 2);
  });
});
