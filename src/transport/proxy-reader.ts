import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { parseProxyHeader } from './proxy-protocol.js';

/**
 * Reads the PROXY header at the start of an accepted socket, then calls `done` with the client
 * address it names (undefined for LOCAL / UNKNOWN), the socket paused and what followed the header
 * put back to be read first. A socket that does not start with a valid header is destroyed; one
 * whose header never ends waits for the listener's connect deadline.
 */
export function readProxyHeader(socket: Socket, done: (address: string | undefined) => void): void {
  socket.on('error', () => undefined);
  let buffered: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    let header;
    try {
      header = parseProxyHeader(buffered);
    } catch {
      socket.destroy();
      return;
    }
    if (header === 'incomplete') return;
    socket.off('data', onData);
    socket.pause();
    const rest = buffered.subarray(header.consumed);
    if (rest.length > 0) socket.unshift(rest);
    done(header.address);
  };
  socket.on('data', onData);
}
