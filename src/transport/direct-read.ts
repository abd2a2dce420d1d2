import { Buffer } from 'node:buffer';
import { Socket, type Server } from 'node:net';

/** Takes each read of a directly read socket; `this` is the socket. */
export type DirectReader = (this: Socket, chunk: Buffer) => void;

/** Moves an accepted socket to direct reads (see directReads). */
export type DirectWrap = (accepted: Socket, server: Server, writeHighWater: number) => Socket;

// One buffer for every socket: reads arrive one at a time on this thread and each is copied out
// before the next can land.
const shared = Buffer.allocUnsafe(64 * 1024);

/**
 * Re-wraps sockets accepted with `pauseOnConnect` so that their reads reach `reader` through
 * net.Socket's `onread` option instead of the Readable stream: Node then allocates no buffer per
 * read and runs no stream machinery before the broker sees the bytes. Node offers `onread` only to
 * sockets it creates, so the accepted socket's handle moves to a new one. Where there is no handle
 * to move (another runtime, a future Node), the accepted socket is resumed and returned, and it
 * emits 'data' as usual, so `reader` must also be what listens for 'data'.
 */
export function directReads(reader: DirectReader): DirectWrap {
  // one set of options for every socket of the listener: nothing per socket to find the reader by
  const onread = {
    buffer: shared,
    callback(this: Socket, n: number, buf: Uint8Array): boolean {
      // a read under 4 KB is carved from Buffer's pool: a copy, not an allocation
      const chunk = Buffer.allocUnsafe(n);
      chunk.set(buf.subarray(0, n));
      reader.call(this, chunk);
      return true;
    },
  };
  return (accepted, server, writeHighWater) => {
    const handle = (accepted as unknown as { _handle?: object | null })._handle;
    if (handle === undefined || handle === null) {
      accepted.resume();
      return accepted;
    }
    const socket = new Socket({ handle, onread, highWaterMark: writeHighWater } as ConstructorParameters<typeof Socket>[0]);
    // the server counts the accepted socket as open until this one closes: its close() waits on that
    (socket as unknown as { _server: Server })._server = server;
    return socket;
  };
}
