import { Buffer } from 'node:buffer';
import { Socket } from 'node:net';

/** Takes each read of a directly read socket; `this` is the socket. */
export type DirectReader = (this: Socket, chunk: Buffer) => void;

/** Sets an accepted socket up for direct reads (see directReads) and starts reading it. */
export type DirectWrap = (accepted: Socket) => void;

// One buffer for every socket: reads arrive one at a time on this thread and each is copied out
// before the next can land.
const shared = Buffer.allocUnsafe(64 * 1024);
/** reads up to this size are copied byte by byte (see the callback) */
const SMALL_READ = 32;

/**
 * Sets up sockets accepted with `pauseOnConnect` so that their reads reach `reader` through
 * net.Socket's `onread` option instead of the Readable stream: Node then allocates no buffer per
 * read and runs no stream machinery before the broker sees the bytes. Node offers `onread` only to
 * sockets it creates, so the accepted socket is given the fields that option sets (found once on a
 * socket made with it) and its handle the shared buffer; making a second socket around the handle
 * instead cost some 2.7 KB of garbage per connection, which a reconnect storm of thousands of
 * devices pays at once. Where those fields or the handle are not there (a future Node, another
 * runtime), the socket is read as a stream and emits 'data' as usual, so `reader` must also be
 * what listens for 'data'.
 */
export function directReads(reader: DirectReader): DirectWrap {
  // one set of options for every socket of the listener: nothing per socket to find the reader by
  const onread = {
    buffer: shared,
    callback(this: Socket, n: number, buf: Uint8Array): boolean {
      // a read under 4 KB is carved from Buffer's pool: a copy, not an allocation
      const chunk = Buffer.allocUnsafe(n);
      // a few bytes (acknowledgements, PINGREQ) are copied one by one: the view a bulk copy
      // needs costs more than they do (4 bytes: 26-29 ns against 70-130)
      if (n <= SMALL_READ) for (let i = 0; i < n; i++) chunk[i] = buf[i] as number;
      else chunk.set(buf.subarray(0, n));
      reader.call(this, chunk);
      return true;
    },
  };
  const own = onreadSymbols();
  return (accepted) => {
    const handle = (accepted as unknown as { _handle?: UserBufferHandle | null })._handle;
    if (own !== undefined && typeof handle?.useUserBuffer === 'function') {
      const fields = accepted as unknown as Record<symbol, unknown>;
      fields[own.buffer] = shared;
      fields[own.generator] = null;
      fields[own.callback] = onread.callback;
      handle.useUserBuffer(shared);
    }
    accepted.resume();
  };
}

interface UserBufferHandle {
  useUserBuffer?(buffer: Uint8Array): void;
}

interface OnreadSymbols {
  buffer: symbol;
  generator: symbol;
  callback: symbol;
}

/** The fields under which net.Socket keeps its `onread` option, found on a socket made with one. */
function onreadSymbols(): OnreadSymbols | undefined {
  const callback = (): boolean => true;
  const probe = new Socket({ onread: { buffer: shared, callback } } as ConstructorParameters<typeof Socket>[0]);
  const fields = probe as unknown as Record<symbol, unknown>;
  const symbols = Object.getOwnPropertySymbols(probe);
  const buffer = symbols.find((k) => fields[k] === shared);
  const cb = symbols.find((k) => fields[k] === callback);
  const generator = symbols.find((k) => k.description === 'kBufferGen' && fields[k] === null);
  probe.destroy();
  return buffer === undefined || cb === undefined || generator === undefined ? undefined : { buffer, generator, callback: cb };
}
