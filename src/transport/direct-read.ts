import { Socket, type Server } from 'node:net';

/** Takes each read of a directly read socket; `this` is the socket. */
export type DirectReader = (this: Socket, chunk: Buffer) => void;

const READER = Symbol('midge.directReader');
type ReadingSocket = Socket & { [READER]: DirectReader };

// One buffer for every socket: reads arrive one at a time on this thread and each is copied out
// before the next can land.
const shared = Buffer.allocUnsafe(64 * 1024);

function onRead(this: Socket, n: number, buf: Uint8Array): boolean {
  // a read under 4 KB is carved from Buffer's pool: a copy, not an allocation
  const chunk = Buffer.allocUnsafe(n);
  chunk.set(buf.subarray(0, n));
  (this as ReadingSocket)[READER](chunk);
  return true;
}

/**
 * Re-wraps a socket accepted with `pauseOnConnect` so that its reads reach `reader` through
 * net.Socket's `onread` option instead of the Readable stream: Node then allocates no buffer per
 * read and runs no stream machinery before the broker sees the bytes. Node offers `onread` only to
 * sockets it creates, so the accepted socket's handle moves to a new one. Where there is no handle
 * to move (another runtime, a future Node), the accepted socket is resumed and returned, and it
 * emits 'data' as usual, so `reader` must also be what listens for 'data'.
 */
export function readDirectly(accepted: Socket, server: Server, reader: DirectReader, writeHighWater: number): Socket {
  const handle = (accepted as unknown as { _handle?: object | null })._handle;
  if (handle === undefined || handle === null) {
    accepted.resume();
    return accepted;
  }
  const options = { handle, onread: { buffer: shared, callback: onRead }, highWaterMark: writeHighWater };
  const socket = new Socket(options as ConstructorParameters<typeof Socket>[0]) as ReadingSocket;
  socket[READER] = reader;
  // the server counts the accepted socket as open until this one closes: its close() waits on that
  (socket as unknown as { _server: Server })._server = server;
  return socket;
}
